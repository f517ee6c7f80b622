"""Tests for moejit.ops.topology, checked against a simple loop-based reference."""

import dataclasses
import math
import re

import pytest
import torch

from moejit.ops.topology import Topology, TopologyError

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
    ),
]
FIELDS = (
    "row_indices",
    "column_indices",
    "offsets",
    "column_indices_t",
    "offsets_t",
    "block_offsets_t",
)


# ----------------------------------------------------------------------
# Reference implementation (plain Python loops over a list-of-lists mask)


def reference_fields(mask, block_cols):
    """All metadata fields, as Python lists, of a list-of-lists 0/1 mask
    (block_cols is passed separately so that masks without rows work)."""
    block_rows = len(mask)
    blocks = [(r, c) for r in range(block_rows) for c in range(block_cols) if mask[r][c]]
    storage_index = {block: i for i, block in enumerate(blocks)}
    blocks_t = [(r, c) for c in range(block_cols) for r in range(block_rows) if mask[r][c]]

    offsets = [0]
    for r in range(block_rows):
        offsets.append(offsets[-1] + sum(1 for c in range(block_cols) if mask[r][c]))
    offsets_t = [0]
    for c in range(block_cols):
        offsets_t.append(offsets_t[-1] + sum(1 for r in range(block_rows) if mask[r][c]))

    return {
        "row_indices": [r for r, _ in blocks],
        "column_indices": [c for _, c in blocks],
        "offsets": offsets,
        "column_indices_t": [r for r, _ in blocks_t],
        "offsets_t": offsets_t,
        "block_offsets_t": [storage_index[block] for block in blocks_t],
    }


def reference_expert_mask(counts, block_size, ffn_hidden_size):
    """List-of-lists block mask of the dMoE block-diagonal layout."""
    ffn_blocks = ffn_hidden_size // block_size
    block_cols = len(counts) * ffn_blocks
    mask = []
    for expert, count in enumerate(counts):
        for _ in range(math.ceil(count / block_size)):
            row = [0] * block_cols
            for c in range(expert * ffn_blocks, (expert + 1) * ffn_blocks):
                row[c] = 1
            mask.append(row)
    return mask


def assert_matches_reference(topo, mask, block_cols, block_size, device):
    block_rows = len(mask)
    assert topo.block_size == block_size
    assert topo.shape == (block_rows * block_size, block_cols * block_size)
    assert (topo.block_rows, topo.block_cols) == (block_rows, block_cols)
    assert topo.device.type == torch.device(device).type
    expected = reference_fields(mask, block_cols)
    assert topo.nnz == len(expected["row_indices"])
    for name in FIELDS:
        tensor = getattr(topo, name)
        assert tensor.dtype == torch.int32, name
        assert tensor.dim() == 1 and tensor.is_contiguous(), name
        assert tensor.device == topo.device, name
        assert tensor.tolist() == expected[name], name
    topo.validate()


def random_mask(shape, density, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator) < density


# ----------------------------------------------------------------------
# from_mask


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (8, 8), (16, 4), (5, 17), (32, 32)])
@pytest.mark.parametrize("density", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("block_size", [64, 128])
def test_from_mask_random(device, shape, density, block_size):
    mask = random_mask(shape, density, seed=100 * shape[0] + shape[1] + int(1000 * density))
    topo = Topology.from_mask(mask.to(device), block_size)
    assert_matches_reference(topo, mask.tolist(), shape[1], block_size, device)
    assert torch.equal(topo.to_mask().cpu(), mask)


SPECIAL_MASKS = {
    "empty_rows_and_columns": [
        [0, 0, 0, 0, 0],
        [0, 1, 0, 1, 0],
        [0, 0, 0, 0, 0],
        [1, 0, 0, 1, 0],
    ],
    "anti_diagonal": [[1 if r + c == 5 else 0 for c in range(6)] for r in range(6)],
    "lower_triangular": [[1 if c <= r else 0 for c in range(4)] for r in range(4)],
    "single_column": [[1], [0], [1], [1]],
    "single_row": [[0, 1, 1, 0, 1]],
    "single_block_in_corner": [[0, 0, 0], [0, 0, 0], [0, 0, 1]],
    "all_empty": [[0] * 3 for _ in range(4)],
    "full": [[1] * 3 for _ in range(4)],
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(SPECIAL_MASKS))
def test_from_mask_special_patterns(device, name):
    mask = SPECIAL_MASKS[name]
    topo = Topology.from_mask(torch.tensor(mask, dtype=torch.bool, device=device), 64)
    assert_matches_reference(topo, mask, len(mask[0]), 64, device)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
def test_from_mask_integer_mask(dtype):
    mask = SPECIAL_MASKS["empty_rows_and_columns"]
    topo = Topology.from_mask(torch.tensor(mask, dtype=dtype), 128)
    assert_matches_reference(topo, mask, len(mask[0]), 128, "cpu")


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 0)])
def test_from_mask_without_rows_or_columns(shape):
    topo = Topology.from_mask(torch.zeros(shape, dtype=torch.bool), 64)
    assert_matches_reference(topo, [[0] * shape[1]] * shape[0], shape[1], 64, "cpu")


def test_from_mask_non_contiguous_mask():
    mask = random_mask((6, 9), 0.5, seed=7).t()
    topo = Topology.from_mask(mask, 64)
    assert_matches_reference(topo, mask.tolist(), 6, 64, "cpu")


# ----------------------------------------------------------------------
# from_expert_counts and padded_counts


EXPERT_COUNTS = {
    "random": None,  # filled in by the test with a seeded generator
    "with_zeros": [0, 5, 0, 0, 200, 0],
    "one_expert_takes_all": [0, 0, 1000, 0],
    "single_expert": [77],
    "all_zero": [0, 0, 0],
    "around_block_boundaries": [1, 63, 64, 65, 127, 128, 129, 255, 256, 257],
    "odd_counts": [3, 17, 101, 997],
}


def counts_for(name, seed):
    if name == "random":
        generator = torch.Generator().manual_seed(seed)
        return torch.randint(0, 700, (8,), generator=generator).tolist()
    return EXPERT_COUNTS[name]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(EXPERT_COUNTS))
@pytest.mark.parametrize("block_size,ffn_hidden_size", [(64, 64), (64, 192), (128, 256), (128, 384)])
def test_from_expert_counts(device, name, block_size, ffn_hidden_size):
    counts = counts_for(name, seed=block_size + ffn_hidden_size)
    topo = Topology.from_expert_counts(
        torch.tensor(counts, dtype=torch.int64, device=device), block_size, ffn_hidden_size
    )
    mask = reference_expert_mask(counts, block_size, ffn_hidden_size)
    assert topo.rows == sum(math.ceil(c / block_size) * block_size for c in counts)
    assert topo.cols == len(counts) * ffn_hidden_size
    assert_matches_reference(topo, mask, len(counts) * ffn_hidden_size // block_size, block_size, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(EXPERT_COUNTS))
@pytest.mark.parametrize("block_size", [64, 128])
def test_from_expert_counts_live_rows(device, name, block_size):
    """With zero_padding, live_rows has each block row's tokens: block_size for all but
    each expert's last block, which holds the rest; without it, no live_rows."""
    counts = counts_for(name, seed=block_size)
    tensor = torch.tensor(counts, dtype=torch.int64, device=device)
    assert Topology.from_expert_counts(tensor, block_size, 2 * block_size).live_rows is None
    topo = Topology.from_expert_counts(tensor, block_size, 2 * block_size, zero_padding=True)
    expected = []
    for count in counts:
        full, rest = divmod(count, block_size)
        expected += [block_size] * full + ([rest] if rest else [])
    assert topo.live_rows.dtype == torch.int32 and topo.live_rows.device.type == torch.device(device).type
    assert topo.live_rows.tolist() == expected
    assert sum(expected) == sum(counts)
    topo.validate()
    assert torch.equal(topo.to("cpu").live_rows.cpu(), topo.live_rows.cpu())


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32, torch.int64])
def test_from_expert_counts_integer_dtypes(dtype):
    counts = [3, 0, 130, 64]
    topo = Topology.from_expert_counts(torch.tensor(counts, dtype=dtype), 64, 128)
    assert_matches_reference(topo, reference_expert_mask(counts, 64, 128), 8, 64, "cpu")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("block_size", [64, 128])
def test_padded_counts(device, block_size):
    counts = [0, 1, 63, 64, 65, 127, 128, 129, 1000]
    padded = Topology.padded_counts(torch.tensor(counts, device=device), block_size)
    assert padded.dtype == torch.int32
    assert padded.device.type == torch.device(device).type
    assert padded.tolist() == [math.ceil(c / block_size) * block_size for c in counts]


# ----------------------------------------------------------------------
# Conversions, properties and repr


def test_to_mask_round_trip_and_to_device():
    mask = random_mask((7, 5), 0.4, seed=3)
    topo = Topology.from_mask(mask, 64)
    moved = topo.to("cpu")
    assert moved is not topo
    assert moved.shape == topo.shape and moved.block_size == topo.block_size
    for name in FIELDS:
        assert torch.equal(getattr(moved, name), getattr(topo, name))
    assert torch.equal(moved.to_mask(), mask)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_to_cuda_and_back():
    topo = Topology.from_expert_counts(torch.tensor([10, 0, 300]), 128, 256)
    on_gpu = topo.to("cuda")
    assert on_gpu.device.type == "cuda"
    on_gpu.validate()
    back = on_gpu.to("cpu")
    for name in FIELDS:
        assert torch.equal(getattr(back, name), getattr(topo, name))


def test_repr_and_frozen():
    topo = Topology.from_expert_counts(torch.tensor([10, 0, 300]), 128, 256)
    assert repr(topo) == "Topology(rows=512, cols=768, block_size=128, nnz=8, device=cpu)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        topo.rows = 0


def test_error_is_value_error():
    assert issubclass(TopologyError, ValueError)


# ----------------------------------------------------------------------
# validate(): every kind of corruption is rejected, naming the field

# 4 x 5 block mask with an empty row and an empty column:
# row-major blocks (0,1) (0,3) (1,0) (1,1) (1,4) (3,0) (3,3) (3,4)
BASE_MASK = [
    [0, 1, 0, 1, 0],
    [1, 1, 0, 0, 1],
    [0, 0, 0, 0, 0],
    [1, 0, 0, 1, 1],
]


def base_topology():
    return Topology.from_mask(torch.tensor(BASE_MASK, dtype=torch.bool), 64)


def swapped(tensor, i, j):
    out = tensor.clone()
    out[i], out[j] = tensor[j], tensor[i]
    return out


def with_value(tensor, index, value):
    out = tensor.clone()
    out[index] = value
    return out


def non_contiguous(tensor):
    return torch.stack([tensor, tensor], dim=1)[:, 0]


# (field named in the error, corruption as a function of the base topology)
CORRUPTIONS = {
    # swapped entries
    "swap_row_indices": ("row_indices", lambda t: {"row_indices": swapped(t.row_indices, 1, 2)}),
    "swap_column_indices": (
        "column_indices", lambda t: {"column_indices": swapped(t.column_indices, 0, 1)}
    ),
    "swap_offsets": ("offsets", lambda t: {"offsets": swapped(t.offsets, 1, 2)}),
    "swap_column_indices_t": (
        "column_indices_t", lambda t: {"column_indices_t": swapped(t.column_indices_t, 0, 1)}
    ),
    "swap_offsets_t": ("offsets_t", lambda t: {"offsets_t": swapped(t.offsets_t, 1, 3)}),
    "swap_block_offsets_t": (
        "block_offsets_t", lambda t: {"block_offsets_t": swapped(t.block_offsets_t, 2, 5)}
    ),
    # duplicate block in row-major order
    "duplicate_block": (
        "column_indices", lambda t: {"column_indices": with_value(t.column_indices, 1, 1)}
    ),
    "repeated_block_offsets_t": (
        "block_offsets_t", lambda t: {"block_offsets_t": with_value(t.block_offsets_t, 1, 2)}
    ),
    # out-of-range indices
    "row_index_too_large": ("row_indices", lambda t: {"row_indices": with_value(t.row_indices, -1, 4)}),
    "negative_column_index": (
        "column_indices", lambda t: {"column_indices": with_value(t.column_indices, 0, -1)}
    ),
    "column_index_too_large": (
        "column_indices", lambda t: {"column_indices": with_value(t.column_indices, -1, 5)}
    ),
    "column_index_t_too_large": (
        "column_indices_t", lambda t: {"column_indices_t": with_value(t.column_indices_t, 0, 4)}
    ),
    "block_offset_t_too_large": (
        "block_offsets_t", lambda t: {"block_offsets_t": with_value(t.block_offsets_t, 0, 8)}
    ),
    # offsets wrong but still monotone with correct ends
    "offsets_inconsistent": ("offsets", lambda t: {"offsets": with_value(t.offsets, 1, 1)}),
    "offsets_wrong_total": ("offsets", lambda t: {"offsets": with_value(t.offsets, -1, 9)}),
    "offsets_nonzero_start": ("offsets", lambda t: {"offsets": with_value(t.offsets, 0, 1)}),
    "offsets_t_inconsistent": ("offsets_t", lambda t: {"offsets_t": with_value(t.offsets_t, 1, 1)}),
    # transpose describing a different (but in-range) set of rows
    "column_indices_t_wrong_row": (
        "column_indices_t", lambda t: {"column_indices_t": with_value(t.column_indices_t, 0, 2)}
    ),
    # wrong dtypes, shapes, layouts, lengths, devices
    **{
        f"int64_{name}": (name, lambda t, name=name: {name: getattr(t, name).long()})
        for name in FIELDS
    },
    **{
        f"non_contiguous_{name}": (name, lambda t, name=name: {name: non_contiguous(getattr(t, name))})
        for name in FIELDS
    },
    **{
        f"short_{name}": (name, lambda t, name=name: {name: getattr(t, name)[:-1].contiguous()})
        for name in FIELDS
        if name != "row_indices"  # row_indices defines nnz
    },
    **{
        f"two_dim_{name}": (name, lambda t, name=name: {name: getattr(t, name).view(1, -1)})
        for name in FIELDS
    },
    **{
        f"meta_device_{name}": (name, lambda t, name=name: {name: getattr(t, name).to("meta")})
        for name in FIELDS
        if name != "row_indices"  # row_indices defines the device
    },
    "list_instead_of_tensor": ("offsets", lambda t: {"offsets": t.offsets.tolist()}),
    # scalar fields
    "rows_not_multiple": ("rows", lambda t: {"rows": t.rows + 1}),
    "cols_negative": ("cols", lambda t: {"cols": -64}),
    "rows_mismatch_offsets": ("offsets", lambda t: {"rows": t.rows + 64}),
    "cols_mismatch_offsets_t": ("offsets_t", lambda t: {"cols": t.cols - 64}),
    "block_size_invalid": ("block_size", lambda t: {"block_size": 32}),
    # the optional per-block-row rows in use
    "live_rows_short": ("live_rows", lambda t: {"live_rows": torch.full((t.block_rows - 1,), 1, dtype=torch.int32)}),
    "live_rows_past_block": ("live_rows", lambda t: {"live_rows": torch.full((t.block_rows,), 65, dtype=torch.int32)}),
    "live_rows_negative": ("live_rows", lambda t: {"live_rows": torch.full((t.block_rows,), -1, dtype=torch.int32)}),
    "live_rows_int64": ("live_rows", lambda t: {"live_rows": torch.full((t.block_rows,), 1, dtype=torch.int64)}),
    "live_nnz_int64": ("live_nnz", lambda t: {"live_nnz": torch.tensor([1])}),
}


def test_validate_accepts_base():
    base_topology().validate()


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_validate_rejects_corruption(name):
    field, corrupt = CORRUPTIONS[name]
    topo = base_topology()
    bad = dataclasses.replace(topo, **corrupt(topo))
    with pytest.raises(TopologyError, match=rf"\b{field}\b"):
        bad.validate()


# ----------------------------------------------------------------------
# Bad arguments


@pytest.mark.parametrize("block_size", [0, 32, 96, 256, -64, 64.0, "64", True, None])
def test_bad_block_size(block_size):
    mask = torch.ones(2, 2, dtype=torch.bool)
    with pytest.raises(TopologyError, match=re.escape(f"block_size={block_size!r}: expected 64 or 128")):
        Topology.from_mask(mask, block_size)
    with pytest.raises(TopologyError, match="block_size"):
        Topology.from_expert_counts(torch.tensor([1, 2]), block_size, 128)
    with pytest.raises(TopologyError, match="block_size"):
        Topology.padded_counts(torch.tensor([1, 2]), block_size)


@pytest.mark.parametrize(
    "mask,expected",
    [
        (torch.ones(4, dtype=torch.bool), "2-D"),
        (torch.ones(2, 2, 2, dtype=torch.bool), "2-D"),
        (torch.ones(2, 2), "dtype"),
        (torch.tensor([[0, 2], [1, 0]]), "0 or 1"),
        (torch.tensor([[0, -1], [1, 0]], dtype=torch.int8), "0 or 1"),
        ([[1, 0], [0, 1]], "torch.Tensor"),
    ],
)
def test_bad_mask(mask, expected):
    with pytest.raises(TopologyError, match=rf"^mask=.*{re.escape(expected)}"):
        Topology.from_mask(mask, 64)


@pytest.mark.parametrize(
    "counts,expected",
    [
        (torch.tensor([[1, 2]]), "1-D integer"),
        (torch.tensor([1.0, 2.0]), "1-D integer"),
        (torch.tensor([True, False]), "1-D integer"),
        (torch.tensor([], dtype=torch.int64), "at least one expert"),
        ([1, 2], "torch.Tensor"),
    ],
)
def test_bad_counts(counts, expected):
    with pytest.raises(TopologyError, match=rf"^tokens_per_expert.*{re.escape(expected)}"):
        Topology.from_expert_counts(counts, 64, 128)
    with pytest.raises(TopologyError, match=rf"^tokens_per_expert.*{re.escape(expected)}"):
        Topology.padded_counts(counts, 64)


def test_negative_counts():
    with pytest.raises(TopologyError, match=re.escape("tokens_per_expert[2]=-3: expected non-negative")):
        Topology.from_expert_counts(torch.tensor([4, 0, -3, -5]), 64, 128)


@pytest.mark.parametrize("ffn_hidden_size", [0, -128, 96, 100, 128.0, "128", True])
def test_bad_ffn_hidden_size(ffn_hidden_size):
    with pytest.raises(
        TopologyError,
        match=re.escape(f"ffn_hidden_size={ffn_hidden_size!r}: expected a positive multiple of block_size=64"),
    ):
        Topology.from_expert_counts(torch.tensor([1, 2]), 64, ffn_hidden_size)


def test_ffn_hidden_size_must_match_block_size():
    with pytest.raises(TopologyError, match="ffn_hidden_size=192: .*block_size=128"):
        Topology.from_expert_counts(torch.tensor([1, 2]), 128, 192)
