"""The routing kernels (histogram, bins, slots) and the permutation kernels (gather,
scatter and their gradients) against plain-PyTorch references: skewed and empty experts,
token counts that are multiples of nothing, several chunks, and a topology that must
equal Topology.from_expert_counts on the live part. Outputs start NaN-poisoned where the
ops accept an output, and every plan element is checked, so unwritten ones show."""

import pytest
import torch

import moejit
from moejit import Topology
from moejit.ops.reference import relative_error

from conftest import requires_gpu

pytestmark = [pytest.mark.gpu, requires_gpu]


def _indices(kind: str, tokens: int, experts: int, top_k: int, gen: torch.Generator) -> torch.Tensor:
    if kind == "random":
        return torch.rand(tokens, experts, device="cuda", generator=gen).topk(top_k, dim=1).indices
    if kind == "one expert takes all":   # top_k distinct experts, the same for every token
        return torch.arange(experts - top_k, experts, device="cuda").repeat(tokens, 1)
    if kind == "skewed":   # most tokens to expert 1, a few elsewhere, several experts empty
        scores = torch.rand(tokens, experts, device="cuda", generator=gen)
        scores[:, 1] += 2.0
        scores[:, experts // 2:] -= 5.0
        return scores.topk(top_k, dim=1).indices
    raise ValueError(kind)


def _expected(indices: torch.Tensor, experts: int, block: int):
    flat = indices.flatten().cpu().long()
    counts = torch.bincount(flat, minlength=experts)
    padded = (counts + block - 1) // block * block
    bins = torch.cat([torch.zeros(1, dtype=torch.long), padded.cumsum(0)])
    order = torch.sort(flat, stable=True).indices
    first_sorted = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    slots = torch.empty_like(flat)
    position = torch.arange(flat.numel())
    sorted_experts = flat[order]
    slots[order] = bins[sorted_experts] + position - first_sorted[sorted_experts]
    return counts, bins, slots


CASES = [
    # kind, tokens, experts, top_k, block, ffn
    ("random", 1000, 8, 2, 128, 256),
    ("random", 5003, 16, 2, 64, 128),          # 10006 assignments: three chunks of 4096
    ("random", 1, 4, 1, 128, 128),
    ("random", 0, 4, 2, 128, 128),              # no tokens at all
    ("random", 2049, 128, 8, 128, 768),         # qwen3-like: many experts, top-8
    ("one expert takes all", 777, 8, 1, 128, 384),
    ("one expert takes all", 4500, 6, 2, 64, 64),
    ("skewed", 3000, 32, 4, 128, 128),
    # At scale: 128k tokens x top-8 (256 chunks: expert_bins' chunk scan, expert_slots' grid
    # spreading the block entries), qwen3-like and mixtral-like ffn, and one routing that
    # puts every token on the same eight experts.
    ("random", 131072, 128, 8, 128, 768),
    ("one expert takes all", 131072, 128, 8, 128, 768),
    ("skewed", 131072, 8, 2, 128, 14336),
    ("random", 131071, 1024, 8, 64, 128),        # the most experts a spec allows
]


@pytest.mark.parametrize("kind,tokens,experts,top_k,block,ffn", CASES)
def test_route(kind, tokens, experts, top_k, block, ffn):
    gen = torch.Generator(device="cuda").manual_seed(tokens)
    indices = _indices(kind, tokens, experts, top_k, gen)
    plan = moejit.route(indices, experts, block, ffn)
    torch.cuda.synchronize()
    counts, bins, slots = _expected(indices, experts, block)
    assert torch.equal(plan.expert_counts.cpu().long(), counts)
    assert torch.equal(plan.bins.cpu().long(), bins)
    assert torch.equal(plan.slots.cpu().long(), slots)
    # Every row: its assignment, or -1 for padding and for the capacity past the used rows.
    expected_rows = torch.full((plan.layout.rows,), -1, dtype=torch.long)
    expected_rows[slots] = torch.arange(slots.numel())
    assert torch.equal(plan.row_assignment.cpu().long(), expected_rows)
    # The live topology is exactly the one built from the counts, and valid.
    live = plan.topology.live()
    live.validate()
    if counts.sum() > 0:
        ref = Topology.from_expert_counts(counts.to("cuda", torch.int32), block, ffn)
        assert (live.rows, live.cols) == (ref.rows, ref.cols)
        for field in ("row_indices", "column_indices", "offsets", "column_indices_t", "offsets_t",
                      "block_offsets_t"):
            assert torch.equal(getattr(live, field), getattr(ref, field)), field
        # Each block row's tokens, as the weight gradients read them.
        padded = Topology.from_expert_counts(counts.to("cuda", torch.int32), block, ffn, zero_padding=True)
        assert torch.equal(live.live_rows, padded.live_rows)
    # Capacity: unused block rows are empty, unused entries in range.
    topo = plan.topology
    assert int(topo.live_nnz.item()) == live.nnz
    assert (topo.offsets[live.block_rows:] == live.nnz).all()
    unused = torch.arange(live.nnz, topo.nnz, device="cuda", dtype=torch.int32)
    assert torch.equal(topo.block_offsets_t[live.nnz:], unused)
    assert int(topo.offsets_t[-1].item()) == live.nnz
    assert (topo.live_rows[live.block_rows:] == 0).all()


def test_route_accepts_int32_and_rejects_bad_arguments():
    indices = torch.tensor([[0, 1], [1, 2], [2, 0]], device="cuda", dtype=torch.int32)
    plan = moejit.route(indices, 3, 128, 128)
    assert plan.expert_counts.tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match="top_k=4: expected at most num_experts=3"):
        moejit.route(torch.zeros(5, 4, dtype=torch.long, device="cuda"), 3, 128, 128)
    with pytest.raises(ValueError, match="ffn_hidden_size"):
        moejit.route(indices, 3, 128, 100)
    with pytest.raises(ValueError, match="expected a CUDA device"):
        moejit.route(indices.cpu(), 3, 128, 128)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind,tokens,experts,top_k,block,hidden", [
    ("random", 1000, 8, 2, 128, 256),
    ("skewed", 3001, 16, 4, 64, 136),
    ("one expert takes all", 300, 4, 1, 128, 64),
])
def test_gather_scatter_and_gradients(dtype, kind, tokens, experts, top_k, block, hidden):
    gen = torch.Generator(device="cuda").manual_seed(7)
    indices = _indices(kind, tokens, experts, top_k, gen)
    plan = moejit.route(indices, experts, block, 128)
    slots = plan.slots.long()
    x = torch.randn(tokens, hidden, device="cuda", generator=gen).to(dtype).requires_grad_()
    rows = moejit.padded_gather(x, plan, top_k)
    # Gather copies exactly; padding and unused capacity are zeros.
    token_of = torch.arange(tokens * top_k, device="cuda") // top_k
    assert torch.equal(rows[slots], x.detach()[token_of])
    padding = plan.row_assignment < 0
    assert (rows[padding] == 0).all()

    weights = torch.rand(tokens, top_k, device="cuda", generator=gen).requires_grad_()
    y_rows = torch.randn(plan.layout.rows, hidden, device="cuda", generator=gen).to(dtype).requires_grad_()
    y = moejit.weighted_scatter(y_rows, plan, weights)
    ref_rows = y_rows.detach().float().requires_grad_()
    ref_weights = weights.detach().clone().requires_grad_()
    ref = (ref_rows[slots].view(tokens, top_k, hidden) * ref_weights.unsqueeze(-1)).sum(1)
    tol = 1e-2 if dtype == torch.bfloat16 else 2e-3
    assert relative_error(y, ref) < tol

    grad = torch.randn(tokens, hidden, device="cuda", generator=gen).to(dtype)
    y.backward(grad)
    ref.backward(grad.float())
    assert relative_error(y_rows.grad, ref_rows.grad) < tol
    assert relative_error(weights.grad, ref_weights.grad) < tol
    assert (y_rows.grad[padding] == 0).all()

    # Gather's backward sums each token's top_k copies.
    grad_rows = torch.randn(plan.layout.rows, hidden, device="cuda", generator=gen).to(dtype)
    rows.backward(grad_rows)
    ref_x = grad_rows.float()[slots].view(tokens, top_k, hidden).sum(1)
    assert relative_error(x.grad, ref_x) < tol


def test_permutation_rejects_mismatched_plans():
    indices = torch.tensor([[0, 1], [1, 2]], device="cuda")
    plan = moejit.route(indices, 3, 128, 128)
    x = torch.randn(2, 64, device="cuda", dtype=torch.bfloat16)
    with pytest.raises(ValueError, match=r"tokens \* top_k = 3 \* 2: expected the plan's 4 assignments"):
        moejit.padded_gather(torch.randn(3, 64, device="cuda", dtype=torch.bfloat16), plan, 2)
    with pytest.raises(ValueError, match="multiple of 8"):
        moejit.padded_gather(torch.randn(2, 60, device="cuda", dtype=torch.bfloat16), plan, 2)
    with pytest.raises(ValueError, match="dtype"):
        moejit.padded_gather(x.float(), plan, 2)
    rows = moejit.padded_gather(x, plan, 2)
    with pytest.raises(ValueError, match="top_k=None"):
        moejit.weighted_scatter(rows, plan)
    with pytest.raises(ValueError, match="expected the plan's"):
        moejit.weighted_scatter(rows[:-8], plan, top_k=2)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("activation", ["gelu", "gelu_exact", "silu", "relu"])
@pytest.mark.parametrize("glu", [False, True])
def test_expert_activation_and_its_gradient(dtype, activation, glu):
    """The generated activation kernels against PyTorch's functions on the live blocks;
    the unused capacity gets zeros."""
    from moejit.ops.activation import expert_activation
    from moejit.layer.dmoe import activation_function

    gen = torch.Generator(device="cuda").manual_seed(11)
    indices = _indices("skewed", 700, 8, 2, gen)
    plan = moejit.route(indices, 8, 64, 128)
    l = plan.layout
    live = int(plan.live_nnz.item())
    assert live < l.max_nnz, "the test needs unused capacity"
    h = (2 * torch.randn(l.max_nnz, 64, 64, device="cuda", generator=gen)).to(dtype).requires_grad_()
    gate = torch.randn(l.max_nnz, 64, 64, device="cuda", generator=gen).to(dtype).requires_grad_() if glu else None
    out = expert_activation(h, gate, plan, activation)
    fn = activation_function(activation)
    h32 = h.detach().float().requires_grad_()
    g32 = gate.detach().float().requires_grad_() if glu else None
    ref = fn(h32) * g32 if glu else fn(h32)
    tol = 1e-2 if dtype == torch.bfloat16 else 2e-3
    assert relative_error(out[:live], ref[:live]) < tol
    assert (out[live:] == 0).all()
    grad = torch.randn(l.max_nnz, 64, 64, device="cuda", generator=gen).to(dtype)
    out.backward(grad)
    ref[:live].backward(grad[:live].float())
    assert relative_error(h.grad[:live], h32.grad[:live]) < tol
    assert (h.grad[live:] == 0).all()
    if glu:
        assert relative_error(gate.grad[:live], g32.grad[:live]) < tol
        assert (gate.grad[live:] == 0).all()
