"""The dMoE layer's parts that need no GPU: routing specs and their NVRTC compiles, the
routing plan's layout, the shapes of every custom op and of a whole forward and backward
under FakeTensorMode (what torch.compile traces), torch.compile capturing the layer in one
graph with no graph break, argument errors, the MegaBlocks-style constructor, and the
reference layer against an independent per-token computation."""

import math
import re

import pytest
import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd
from torch._subclasses.fake_tensor import FakeTensorMode

import moejit
from moejit import _core
from moejit.layer.dmoe import load_balancing_loss
from moejit.jit.specs import routing_kernel_spec

ROUTING_SPECS = [
    ("expert_histogram", dict(experts=128)),
    ("expert_bins", dict(experts=128, block_size=128, n=768)),
    ("expert_slots", dict(experts=1024)),
    ("padded_gather", dict(top_k=8, n=2048, dtype="bf16")),
    ("weighted_scatter", dict(top_k=2, n=4096, dtype="fp16")),
    ("weighted_scatter_grad", dict(top_k=1, n=136, dtype="bf16")),
    ("expert_activation", dict(block_size=128, dtype="bf16", activation="silu", glu=True)),
    ("expert_activation_grad", dict(block_size=64, dtype="fp16", activation="gelu", glu=False)),
]


@pytest.mark.parametrize("op,fields", ROUTING_SPECS)
def test_routing_spec_text_round_trip(op, fields):
    spec = routing_kernel_spec(op, target="sm_90a", **fields)
    text = spec.text()
    assert text.startswith(f"op={op} ") and text.endswith(" target=sm_90a")
    assert "tile=" not in text and "trans=" not in text
    assert _core.KernelSpec.parse(text) == spec
    assert _core.KernelSpec.parse(text).text() == text


@pytest.mark.parametrize("text,message", [
    ("op=expert_histogram experts=2000 target=sm_90a", "experts=2000: expected 1 to 1024"),
    ("op=padded_gather dtype=bf16 topk=64 n=64 target=sm_90a", "topk=64: expected 1 to 32"),
    ("op=padded_gather dtype=bf16 topk=2 n=60 target=sm_90a", "n=60: expected a multiple of 8"),
    ("op=expert_bins block=128 experts=8 n=100 target=sm_90a", "n=100: expected a multiple of block"),
    ("op=expert_bins block=96 experts=8 n=192 target=sm_90a", "block=96: expected 64 or 128"),
    ("op=expert_activation dtype=bf16 block=128 act=tanh glu=0 target=sm_90a", "act=tanh: expected gelu"),
    ("op=expert_activation dtype=bf16 block=128 act=silu glu=2 target=sm_90a", "glu=2: expected 0 or 1"),
])
def test_routing_spec_validation_names_the_field(text, message):
    with pytest.raises(ValueError, match=message):
        _core.KernelSpec.parse(text).validate()


def test_routing_spec_parse_rejects_fields_of_other_ops():
    with pytest.raises(ValueError, match="the fields of op=expert_histogram: op, experts, target"):
        _core.KernelSpec.parse("op=expert_histogram experts=8 topk=2 target=sm_90a")
    with pytest.raises(ValueError, match="experts=missing: expected every field of op=expert_slots"):
        _core.KernelSpec.parse("op=expert_slots target=sm_90a")
    with pytest.raises(ValueError, match="the fields of a product"):
        _core.KernelSpec.parse("op=sdd trans=nt dtype=bf16 block=128 m=dyn n=256 k=256 tile=128x128x32.s4.w2x2 "
                               "family=mma target=sm_90a experts=8")


@pytest.mark.parametrize("target", ["sm_90a", "sm_80"])
def test_every_routing_kernel_compiles_without_spills(target):
    runtime = moejit.Runtime(database=None)
    for op, fields in ROUTING_SPECS:
        kernel = runtime.compile(routing_kernel_spec(op, target=target, **fields))
        assert kernel.resources.spill_store_bytes == 0, op
        assert kernel.resources.stack_bytes == 0, op
        assert f"moejit::{op}<" in kernel.source


@pytest.mark.parametrize("assignments,experts,block,ffn", [
    (131072, 128, 128, 768), (16384, 8, 128, 14336), (0, 4, 64, 64), (1, 1, 128, 128), (10006, 16, 64, 128)])
def test_routing_layout_is_an_upper_bound_with_contiguous_sections(assignments, experts, block, ffn):
    l = moejit.ops.routing.routing_layout(assignments, experts, block, ffn)
    assert l.max_block_rows == (assignments + experts * (block - 1)) // block
    # Routings that pad a lot (one assignment per expert, the rest on one) or at random fit.
    gen = torch.Generator().manual_seed(0)
    routings = [_one_each_then_rest(assignments, experts)]
    routings += [torch.bincount(torch.randint(experts, (assignments,), generator=gen), minlength=experts).tolist()
                 for _ in range(3)]
    for counts in routings:
        assert sum(counts) == assignments
        assert sum(math.ceil(c / block) for c in counts) <= l.max_block_rows
    assert l.rows == l.max_block_rows * block
    assert l.max_nnz == l.max_block_rows * (ffn // block)
    assert l.block_cols == experts * ffn // block
    assert l.chunks == math.ceil(assignments / 4096)
    sizes = [("live_nnz", 1), ("expert_counts", experts), ("bins", experts + 1), ("offsets", l.max_block_rows + 1),
             ("offsets_t", l.block_cols + 1), ("row_indices", l.max_nnz), ("column_indices", l.max_nnz),
             ("column_indices_t", l.max_nnz), ("block_offsets_t", l.max_nnz), ("live_rows", l.max_block_rows),
             ("slots", assignments),
             ("row_assignment", l.rows), ("chunk_counts", l.chunks * experts)]
    at = 0
    for name, size in sizes:
        assert getattr(l, name) == at, name
        at += size
    assert l.total == at


def _one_each_then_rest(assignments, experts):
    """One assignment per expert (a nearly empty padded block each), the rest on expert 0."""
    counts = [min(1, max(assignments - e, 0)) for e in range(experts)]
    counts[0] += assignments - sum(counts)
    return counts


def test_routing_layout_errors_name_the_argument():
    with pytest.raises(ValueError, match="ffn_hidden_size=100: expected a positive multiple of block_size"):
        moejit.ops.routing.routing_layout(10, 4, 128, 100)
    with pytest.raises(ValueError, match="block_size=32"):
        moejit.ops.routing.routing_layout(10, 4, 32, 128)


def test_fake_shapes_of_every_op_and_a_whole_forward():
    """What torch.compile and CUDA graphs see: static shapes from the layout alone. (The
    backward needs a CUDA device even on fake CUDA tensors; the meta-device tests below and
    the GPU tests run it.)"""
    with FakeTensorMode():
        layer = moejit.dMoE(64, 128, 8, 2, activation="silu", glu=True, bias=True, device="cuda")
        x = torch.empty(100, 64, dtype=torch.bfloat16, device="cuda", requires_grad=True)
        y = layer(x)
        assert y.shape == (100, 64) and y.dtype == torch.bfloat16
        assert y.grad_fn is not None and layer.load_balancing_loss.shape == ()
        layout = moejit.ops.routing.routing_layout(200, 8, 128, 128)
        plan = torch.ops.moejit.route(torch.empty(100, 2, dtype=torch.long, device="cuda"), 8, 128, 128)
        assert plan.shape == (layout.total,) and plan.dtype == torch.int32


def test_constructor_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"top_k=3: expected at most the number of experts \(num_experts=2\)"):
        moejit.dMoE(64, 128, 2, 3)
    with pytest.raises(ValueError, match=r"ffn_hidden_size=100: expected a multiple of block \(128\)"):
        moejit.dMoE(64, 100, 4, 2)
    with pytest.raises(ValueError, match="hidden_size=60: expected a multiple of 8"):
        moejit.dMoE(60, 128, 4, 2)
    with pytest.raises(ValueError, match="activation='tanh'"):
        moejit.dMoE(64, 128, 4, 2, activation="tanh")
    with pytest.raises(ValueError, match="dtype=torch.float32"):
        moejit.dMoE(64, 128, 4, 2, dtype=torch.float32)
    with pytest.raises(ValueError, match="num_experts=0"):
        moejit.dMoE(64, 128, 0, 1)
    with pytest.raises(ValueError, match="block_size=32"):
        moejit.dMoE(64, 128, 4, 1, block_size=32)


def test_cpu_input_is_refused_with_a_clear_error():
    layer = moejit.dMoE(64, 128, 4, 2)
    with pytest.raises(ValueError, match="x.device=cpu: expected a CUDA device"):
        layer(torch.randn(3, 64, dtype=torch.bfloat16))


def test_from_megablocks_maps_argument_names():
    layer = moejit.dMoE.from_megablocks(hidden_size=64, ffn_hidden_size=256, moe_num_experts=4, moe_top_k=2,
                                        mlp_type="glu", activation_fn="silu", moe_jitter_eps=0.01,
                                        moe_normalize_expert_weights=1.0, moe_loss_weight=0.05, fp16=True,
                                        bf16=False)
    assert (layer.hidden_size, layer.ffn_hidden_size, layer.num_experts, layer.top_k) == (64, 256, 4, 2)
    assert layer.glu and layer.v1 is not None and layer.activation == "silu"
    assert layer.router_jitter == 0.01 and layer.normalize_expert_weights == 1.0
    assert layer.load_balancing_loss_weight == 0.05 and layer.w1.dtype == torch.float16
    assert tuple(layer.w1.shape) == (4 * 256, 64) and tuple(layer.router.weight.shape) == (4, 64)
    with pytest.raises(ValueError, match="mlp_type='moe'"):
        moejit.dMoE.from_megablocks(hidden_size=64, ffn_hidden_size=256, moe_num_experts=4, mlp_type="moe")


def test_reference_layer_matches_a_per_token_computation():
    torch.manual_seed(0)
    ref = moejit.ReferenceMoE(16, 8, 4, 2, activation="silu", glu=True, bias=True, normalize_expert_weights=1.0,
                              dtype=torch.float64)
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_()
    x = torch.randn(7, 16, dtype=torch.float64)
    y = ref(x)
    scores = (x @ ref.router.weight.t()).softmax(-1)
    for t in range(7):
        w, e = scores[t].topk(2)
        w = w / w.sum()
        expected = ref.bias.clone()
        for weight, expert in zip(w, e.tolist()):
            sl = slice(expert * 8, (expert + 1) * 8)
            h = torch.nn.functional.silu(ref.w1[sl] @ x[t]) * (ref.v1[sl] @ x[t])
            expected += weight * (h @ ref.w2[sl])
        assert torch.allclose(y[t], expected, atol=1e-10)


def test_load_balancing_loss_is_its_weight_for_uniform_routing():
    scores = torch.full((8, 4), 0.25)
    counts = torch.tensor([4, 4, 4, 4])
    assert load_balancing_loss(scores, counts, 2, 0.1).item() == pytest.approx(0.1)
    skewed = torch.tensor([[1.0, 0, 0, 0]] * 8)
    assert load_balancing_loss(skewed, torch.tensor([16, 0, 0, 0]), 2, 0.1).item() == pytest.approx(0.4)


@pytest.mark.parametrize("assignments,experts,block,ffn", [
    (0, 1, 128, 128), (1, 1, 64, 64), (131072, 128, 128, 768), (16384, 8, 128, 14336), (10006, 16, 64, 128),
    (4097, 3, 64, 192), (2 * 4096, 1024, 128, 256)])
def test_python_plan_layout_equals_the_cpp_layout(assignments, experts, block, ffn):
    """plan_layout (plain arithmetic, what torch.compile traces and the fake implementations
    size outputs with) against compiler/routing_layout.cpp, field by field."""
    layout = moejit.ops.routing.routing_layout(assignments, experts, block, ffn)
    mirror = moejit.ops.routing.plan_layout(assignments, experts, block, ffn)
    assert mirror._asdict() == {field: getattr(layout, field) for field in moejit.ops.routing.PlanLayout._fields}


@pytest.mark.parametrize("args", [(10, 4, 128, 100), (10, 4, 32, 128), (10, 0, 128, 128), (-1, 4, 128, 128),
                                  (2**31, 4, 128, 128), (2**31 - 1, 4, 128, 128)])
def test_python_plan_layout_raises_the_cpp_layouts_errors(args):
    with pytest.raises(_core.SpecError) as cpp:
        moejit.ops.routing.routing_layout(*args)
    with pytest.raises(_core.SpecError, match=re.escape(str(cpp.value))):
        moejit.ops.routing.plan_layout(*args)


class _GraphRecorder:
    """A torch.compile backend that keeps the graphs it is given and runs them uncompiled:
    Dynamo's graph, and with aot=True AOTAutograd's forward and backward graphs."""

    def __init__(self, aot: bool = False):
        self.dynamo, self.forward, self.backward = [], [], []
        self._aot = aot

    def __call__(self, gm, example_inputs):
        self.dynamo.append(gm)
        if not self._aot:
            return gm.forward
        return aot_autograd(fw_compiler=self._keep(self.forward), bw_compiler=self._keep(self.backward))(
            gm, example_inputs)

    @staticmethod
    def _keep(graphs):
        def compiler(gm, example_inputs):
            graphs.append(gm)
            return make_boxed_func(gm.forward)
        return compiler


def _moejit_ops(gm: torch.fx.GraphModule) -> set:
    """The moejit custom ops a graph calls ("route", ...), from Dynamo's packets
    (moejit.route) or AOTAutograd's overloads (moejit.route.default)."""
    names = set()
    for node in gm.graph.nodes:
        if node.op == "call_function" and isinstance(node.target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
            namespace, name = str(node.target).split(".")[:2]
            if namespace == "moejit":
                names.add(name)
    return names


FORWARD_OPS = {"route", "padded_gather", "expert_sdd", "expert_activation", "expert_dsd", "weighted_scatter"}


def test_torch_compile_captures_the_whole_forward_in_one_graph_for_every_token_count():
    """fullgraph=True fails on any graph break (the routing plan's layout must be plain
    arithmetic, not the pybind11 RoutingLayout); a dynamic token count must not recompile.
    Fake CUDA tensors: the same device checks and ops as on a GPU, without one."""
    torch._dynamo.reset()
    recorder = _GraphRecorder()
    with FakeTensorMode():
        layer = moejit.dMoE(64, 128, 8, 2, activation="silu", glu=True, bias=True, device="cuda")
        compiled = torch.compile(layer, fullgraph=True, backend=recorder)
        for tokens in (100, 37, 300):
            x = torch.empty(tokens, 64, dtype=torch.bfloat16, device="cuda")
            torch._dynamo.mark_dynamic(x, 0)
            y = compiled(x)
            assert y.shape == (tokens, 64) and y.device.type == "cuda"
            assert layer.load_balancing_loss.shape == ()
    assert len(recorder.dynamo) == 1, "one graph for every token count (no recompilation)"
    assert _moejit_ops(recorder.dynamo[0]) == FORWARD_OPS


def test_torch_compile_captures_forward_and_backward_in_one_graph_each_on_meta():
    """The same through AOTAutograd, which traces the backward too. On the meta device: the
    autograd engine needs a real CUDA device for CUDA tensors, fake or not; meta tensors
    reach the same fake implementations."""
    torch._dynamo.reset()
    recorder = _GraphRecorder(aot=True)
    layer = moejit.dMoE(64, 128, 8, 2, activation="gelu", glu=True, bias=True, device="meta")
    compiled = torch.compile(layer, fullgraph=True, backend=recorder)
    for tokens in (100, 37, 300):
        x = torch.empty(tokens, 64, dtype=torch.bfloat16, device="meta", requires_grad=True)
        torch._dynamo.mark_dynamic(x, 0)
        y = compiled(x)
        (y.float().sum() + layer.load_balancing_loss).backward()
        assert y.shape == x.grad.shape == (tokens, 64)
        for p in layer.parameters():
            assert p.grad is not None and p.grad.shape == p.shape
            p.grad = None
    assert (len(recorder.dynamo), len(recorder.forward), len(recorder.backward)) == (1, 1, 1)
    assert _moejit_ops(recorder.forward[0]) == FORWARD_OPS
    assert _moejit_ops(recorder.backward[0]) == {"weighted_scatter_grad", "expert_sdd", "expert_dsd_t",
                                                  "expert_activation_grad", "expert_dsd", "weighted_scatter"}


def test_a_meta_layer_runs_forward_and_backward_eagerly_as_shapes():
    layer = moejit.dMoE(64, 128, 4, 2, device="meta")
    x = torch.empty(10, 3, 64, dtype=torch.bfloat16, device="meta", requires_grad=True)
    forced = torch.zeros(30, 2, dtype=torch.long, device="meta")
    y = layer(x, expert_indices=forced)
    y.sum().backward()
    assert y.shape == x.grad.shape == (10, 3, 64) and layer.w2.grad.shape == layer.w2.shape


def test_collect_averages_the_layers_losses_like_megablocks():
    model = torch.nn.Sequential(moejit.dMoE(64, 128, 4, 2), moejit.dMoE(64, 128, 4, 2), moejit.dMoE(64, 128, 4, 2))
    assert moejit.collect_load_balancing_loss(model) is None
    model[0].load_balancing_loss = torch.tensor(0.3)
    model[2].load_balancing_loss = torch.tensor(0.1)
    assert moejit.collect_load_balancing_loss(model).item() == pytest.approx(0.2)


def test_load_balancing_loss_of_an_empty_batch_is_zero_not_nan():
    loss = load_balancing_loss(torch.empty(0, 4), torch.zeros(4, dtype=torch.int32), 2, 0.1)
    assert loss.item() == 0.0
