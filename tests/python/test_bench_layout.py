"""Where routed tokens live in each system's layout (moejit.tools.bench.token_layout), and the
kernel-level peers computing the layer's products on the same work (on the CPU)."""

import pytest
import torch

from moejit.tools.bench.kernel_peers import DenseKernels, GroupedMMKernels, KernelOperands, PaddedBmmKernels
from moejit.tools.bench.token_layout import TokenLayout
from moejit.ops.reference import relative_error


def test_layout_rows_by_hand():
    layout = TokenLayout.from_counts(torch.tensor([2, 0, 3]), block_size=4)
    assert layout.padded_rows.tolist() == [0, 1, 4, 5, 6]      # expert 2 starts after expert 0's 4 rows
    assert layout.batched_rows.tolist() == [0, 1, 6, 7, 8]     # [E=3, max 3]: expert 2 at rows 6..8
    assert layout.expert_of.tolist() == [0, 0, 2, 2, 2]
    assert (layout.rows, layout.max_count, layout.routed, layout.experts) == (8, 3, 5, 3)
    assert layout.offsets().tolist() == [2, 2, 5] and layout.offsets().dtype == torch.int32
    stats = layout.describe()
    assert stats["routed_tokens"] == 5 and stats["empty_experts"] == 1
    assert stats["max_over_mean"] == pytest.approx(3 / (5 / 3), abs=1e-4)
    assert stats["block_padded_rows"] == 8 and stats["bmm_padded_rows"] == 9


def test_layout_round_trips_and_zero_padding():
    layout = TokenLayout.from_counts(torch.tensor([5, 1, 0, 7]), block_size=4)
    rows = torch.randn(layout.routed, 3)
    padded = layout.to_padded(rows)
    assert padded.shape == (layout.rows, 3)
    assert torch.equal(layout.from_padded(padded), rows)
    assert padded.abs().sum() == pytest.approx(rows.abs().sum().item())   # the rest is zero
    batched = layout.to_batched(rows)
    assert batched.shape == (4, 7, 3)
    assert torch.equal(layout.from_batched(batched), rows)
    assert torch.equal(batched[2], torch.zeros(7, 3))


def test_layout_errors():
    with pytest.raises(ValueError, match="non-negative token counts"):
        TokenLayout.from_counts(torch.tensor([1, -1]), 4)
    with pytest.raises(ValueError, match="block_size=0"):
        TokenLayout.from_counts(torch.tensor([1]), 0)


def _operands(counts, hidden=16, ffn=8, copies=2, dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    layout = TokenLayout.from_counts(torch.tensor(counts), block_size=4)
    e, r = len(counts), layout.routed

    def randn(*size):
        return torch.randn(*size, generator=gen).to(dtype)

    sets = [dict(x=randn(r, hidden), dy=randn(r, hidden), h=randn(r, ffn), w1=randn(e * ffn, hidden),
                 w2=randn(e * ffn, hidden)) for _ in range(copies)]
    return KernelOperands(layout, hidden, ffn, sets)


def _reference(operands, case):
    """Expert by expert, in float32, on the first operand set."""
    d, f, layout = operands.copies[0], operands.ffn, operands.layout
    outs, start = [], 0
    dw = torch.zeros(layout.experts * f, operands.hidden)
    for e, count in enumerate(layout.counts.tolist()):
        rows, w = slice(start, start + count), slice(e * f, (e + 1) * f)
        if case == "sdd":
            outs.append(d["x"][rows].float() @ d["w1"][w].float().t())
        elif case == "dsd":
            outs.append(d["h"][rows].float() @ d["w2"][w].float())
        else:
            dw[w] = d["h"][rows].float().t() @ d["dy"][rows].float()
        start += count
    return dw if case == "dsd_t" else torch.cat(outs)


@pytest.mark.parametrize("peer", [GroupedMMKernels, PaddedBmmKernels])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernel_peers_compute_the_layer_products(peer, dtype):
    operands = _operands([5, 0, 9, 2], dtype=dtype)
    system = peer(operands)
    for case in ("sdd", "dsd", "dsd_t"):
        out = system.output(case)
        ref = _reference(operands, case)
        assert out.shape == ref.shape
        assert relative_error(out, ref) < (1e-5 if dtype == torch.float32 else 1e-2), (peer.name, case)
        # run() rotates through the copies: the second call computes on the second set.
        first, second = system.run(case), system.run(case)
        assert not torch.equal(first, second)


def test_dense_peer_has_the_same_extents():
    operands = _operands([5, 0, 9, 2])
    dense = DenseKernels(operands)
    r, h, f = operands.layout.routed, operands.hidden, operands.ffn
    assert dense.run("sdd").shape == (r, f)
    assert dense.run("dsd").shape == (r, h)
    assert dense.run("dsd_t").shape == (f, h)
    assert dense.output("sdd") is None   # another function: not checked
    with pytest.raises(ValueError, match="case='dds'"):
        dense.run("dds")


def test_operands_are_checked():
    operands = _operands([3, 1])
    bad = dict(operands.copies[0], h=torch.zeros(4, 5))
    with pytest.raises(ValueError, match=r"copies\[0\]\['h'\].shape=\(4, 5\): expected \(4, 8\)"):
        KernelOperands(operands.layout, operands.hidden, operands.ffn, [bad])
