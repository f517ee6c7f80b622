"""The PyTorch dMoE layer on torch._grouped_mm and the dense MLP that `moejit bench layer`
times, checked on the CPU against the float32 reference; and the layer benchmark's
logic end to end on the CPU with a fake timer (moejit.dMoE or not)."""

import pytest
import torch

from moejit.tools.bench.flops import layer_flops
from moejit.tools.bench.layer_bench import bench_layer
from moejit.tools.bench.layer_peers import DenseMLP, GroupedMMMoE, activation_fn
from moejit.tools.bench.routing import load_balancing_loss, route
from moejit.ops.reference import moe_layer_reference, relative_error
from moejit.zoo import ModelShape


def _layer(glu, activation, dtype=torch.float32, experts=6, top_k=2, normalize=None):
    gen = torch.Generator().manual_seed(1)
    return GroupedMMMoE(32, 16, experts, top_k, activation=activation, glu=glu, normalize_expert_weights=normalize,
                        dtype=dtype, device="cpu", generator=gen)


def _naive(layer, x):
    """Token by token, in float64: y[t] = sum_j w_tj * mlp_e(x_t)."""
    layer64 = {n: p.detach().double() for n, p in layer.named_parameters()}
    logits = x.double() @ layer64["router.weight"].t()
    probabilities = torch.softmax(logits, dim=-1)
    weights, experts = probabilities.topk(layer.top_k, dim=-1)
    if layer.normalize_expert_weights is not None:
        weights = weights / weights.norm(p=layer.normalize_expert_weights, dim=-1, keepdim=True)
    f = layer.ffn_hidden_size
    y = torch.zeros(x.shape[0], layer.hidden_size, dtype=torch.float64)
    for t in range(x.shape[0]):
        for j in range(layer.top_k):
            e = int(experts[t, j])
            w = slice(e * f, (e + 1) * f)
            h = layer.act(x[t].double() @ layer64["w1"][w].t())
            if layer.glu:
                h = h * (x[t].double() @ layer64["v1"][w].t())
            y[t] += weights[t, j] * (h @ layer64["w2"][w])
    return y


@pytest.mark.parametrize("glu,activation", [(False, "gelu"), (True, "silu")])
@pytest.mark.parametrize("normalize", [None, 1.0])
def test_grouped_mm_layer_matches_a_token_by_token_computation(glu, activation, normalize):
    layer = _layer(glu, activation, normalize=normalize)
    x = torch.randn(40, 32, generator=torch.Generator().manual_seed(2))
    y = layer(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert relative_error(y.detach(), _naive(layer, x)) < 1e-5
    # Training mode leaves the load-balancing loss; ~1 for near-uniform routing.
    assert 0.5 < float(layer.load_balancing_loss.detach()) < 2.0


def test_grouped_mm_layer_gradients_match_the_float32_reference():
    layer = _layer(True, "silu")
    x = torch.randn(50, 32, generator=torch.Generator().manual_seed(3)).requires_grad_()
    dy = torch.randn(50, 32, generator=torch.Generator().manual_seed(4))
    layer(x).backward(dy)
    routing = route(layer.router(x.detach()), layer.top_k)
    x32 = x.detach().clone().requires_grad_()
    w1 = layer.w1.detach().clone().requires_grad_()
    probabilities = torch.softmax(x32 @ layer.router.weight.detach().t(), dim=-1)
    y = moe_layer_reference(x32, routing.experts, probabilities.gather(1, routing.experts), w1, layer.w2.detach(),
                            layer.v1.detach(), layer.act, layer.num_experts)
    y.backward(dy)
    assert relative_error(x.grad, x32.grad) < 1e-5
    assert relative_error(layer.w1.grad, w1.grad) < 1e-5


def test_grouped_mm_layer_in_bf16_is_close_to_float32():
    # On the routing the bf16 router chooses (float32 logits may order near-ties otherwise).
    layer = _layer(True, "silu", dtype=torch.bfloat16)
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(5)).to(torch.bfloat16)
    routing = route(layer.router(x), layer.top_k)
    w = {n: p.detach().float() for n, p in layer.named_parameters()}
    ref = moe_layer_reference(x.float(), routing.experts, routing.weights.float(), w["w1"], w["w2"], w["v1"],
                              layer.act, layer.num_experts)
    assert relative_error(layer(x).detach(), ref) < 2e-2


def test_from_parameters_shares_the_tensors():
    source = _layer(True, "silu")
    shared = GroupedMMMoE.from_parameters(source.router.weight, source.w1, source.w2, source.v1, top_k=2,
                                          activation="silu")
    assert shared.w1 is source.w1 and shared.router.weight is source.router.weight
    assert (shared.num_experts, shared.ffn_hidden_size, shared.hidden_size) == (6, 16, 32)
    x = torch.randn(8, 32)
    assert torch.equal(shared(x), source(x))
    shared(x).sum().backward()
    assert source.w1.grad is not None        # gradients land in the source's parameters
    with pytest.raises(ValueError, match=r"w2.shape=\(48, 32\): expected w1's shape \(96, 32\)"):
        GroupedMMMoE.from_parameters(source.router.weight, source.w1, torch.zeros(48, 32), top_k=2)
    with pytest.raises(ValueError, match="w1.shape=\\(50, 32\\): expected \\[experts\\*ffn, 32\\] with experts=6"):
        GroupedMMMoE.from_parameters(source.router.weight, torch.zeros(50, 32), torch.zeros(50, 32), top_k=2)


def test_layer_argument_errors():
    with pytest.raises(ValueError, match="top_k=7: expected at most num_experts=6"):
        GroupedMMMoE(32, 16, 6, 7, device="cpu")
    with pytest.raises(ValueError, match="activation='relu': expected one of gelu, silu"):
        activation_fn("relu")
    with pytest.raises(ValueError, match=r"x.shape=\(4, 5\): expected \[..., 32\]"):
        _layer(False, "gelu")(torch.zeros(4, 5))


def test_routing_counts_and_balance_loss():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [5.0, 0.0, 4.0]])
    r = route(logits, 2)
    assert r.experts.tolist() == [[0, 1], [1, 2], [0, 2]]
    assert r.counts().tolist() == [2, 2, 2]
    assert torch.allclose(r.weights.sum(-1), torch.softmax(logits, -1).topk(2).values.sum(-1))
    assert torch.allclose(route(logits, 2, 1.0).weights.sum(-1), torch.ones(3))
    # Balanced counts: the loss is E/(T*k) * sum_e (T*k/E) * mean p_e = sum_e mean p_e = 1.
    assert float(load_balancing_loss(r)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="top_k=4: expected 1 <= top_k <= 3 experts"):
        route(logits, 4)


def test_dense_mlp_has_the_layers_width():
    mlp = DenseMLP(32, 2 * 16, activation="silu", glu=True, dtype=torch.float32, device="cpu")
    assert mlp.w1.shape == mlp.v1.shape == mlp.w2.shape == (32, 32)
    assert mlp(torch.randn(5, 32)).shape == (5, 32)


class FakeMeasurer:
    """Runs each call once and reports a fixed time: the logic, not the GPU."""

    def __init__(self):
        self.calls = []

    def time_ms(self, fn):
        fn()
        self.calls.append(fn)
        return 2.0

    def peak_bytes(self, fn):
        fn()
        return 1 << 20

    def settings(self):
        return {"timer": "fake"}


def test_layer_bench_on_the_cpu_checks_then_times_each_peer():
    shape = ModelShape("tiny", 32, 16, 4, 2, 64, "silu", True)
    measurer = FakeMeasurer()
    logs = []
    cases, notes = bench_layer(shape, ["dense", "grouped_mm", "megablocks"], measurer=measurer, device="cpu",
                               log=logs.append)
    assert [c.case for c in cases] == ["forward", "forward+backward"]
    assert any("no moejit.dMoE" in n or n.startswith("moejit:") for n in notes)
    assert any(n.startswith("megablocks: not installed (pip install megablocks)") for n in notes)
    for c in cases:
        assert c.useful_flops == layer_flops(shape, c.case)
        assert c.routing["routed_tokens"] == 128
        grouped, dense = c.result("grouped_mm"), c.result("dense")
        assert grouped.passed and grouped.rel_error < 2e-2
        assert dense.rel_error is None and dense.passed is None     # another function: timed only
        assert grouped.ms == 2.0 and grouped.tflops == pytest.approx(c.useful_flops / 2e-3 / 1e12)
        assert grouped.ratio_to_dense == 1.0 and grouped.peak_memory_bytes == 1 << 20
    assert set(cases[1].result("grouped_mm").checks) == {"y", "dx", "dw1"}
    assert len(measurer.calls) == 4
    assert any("forward+backward" in line for line in logs)


def test_layer_bench_times_moejit_dmoe_when_there_is_one(monkeypatch):
    """With a moejit.dMoE (here a stand-in built on the grouped_mm layer), the benchmark
    shares its parameters with the PyTorch layer, checks both and reports speedups."""
    import moejit

    class StandIn(GroupedMMMoE):
        def __init__(self, hidden, ffn, experts, top_k, *, activation, glu, bias, block_size, dtype, device):
            assert bias is False and block_size == 128
            super().__init__(hidden, ffn, experts, top_k, activation=activation, glu=glu, dtype=dtype, device=device)

    monkeypatch.setattr(moejit, "dMoE", StandIn, raising=False)
    shape = ModelShape("tiny", 32, 16, 4, 2, 64, "gelu", False)
    cases, notes = bench_layer(shape, ["grouped_mm"], measurer=FakeMeasurer(), device="cpu", log=lambda s: None)
    assert notes == []
    for c in cases:
        assert [r.system for r in c.results] == ["moejit", "grouped_mm"]
        assert c.result("moejit").passed and c.result("grouped_mm").passed
        assert c.speedups == {"grouped_mm": 1.0}


def test_layer_bench_rounds_time_every_peer_once_per_round():
    shape = ModelShape("tiny", 32, 16, 4, 2, 64, "silu", True)
    measurer = FakeMeasurer()
    cases, _ = bench_layer(shape, ["dense", "grouped_mm"], measurer=measurer, device="cpu", rounds=3,
                           log=lambda s: None)
    assert len(measurer.calls) == 2 * 2 * 3   # two cases, two systems, three rounds
    for c in cases:
        assert c.result("grouped_mm").round_ms == [2.0, 2.0, 2.0] and c.result("grouped_mm").ms == 2.0
