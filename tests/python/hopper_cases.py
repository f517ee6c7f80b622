"""The wgmma family's correctness cases on a Hopper GPU (sm_90a), run by test_hopper_gpu.py.

Every wgmma variant (op x transpose x dtype x block) runs at a small shape on random data
and a topology that is not block-diagonal, with NaN-poisoned outputs, against a float32
torch reference: first with the heuristic's tile, then with each tile of the other
schedules (SCHEDULE_TILES: pingpong consumers, sdd pairs of blocks of one block column
(tile_m = 2 x block) or of one block row (tile_n = 2 x block), 256-row tiles, dsd
thread-block clusters (.c2, .c4 along N; .c2x1 along M)); named like
sdd_nt_bf16_b128@256x128x64.s3.w8x1, at a larger dense extent so that 256-wide tiles fit,
and for a cluster tile a tile row holds whole clusters (see dense_extent). sdd variants
also run on a topology with a device-side live count (blocks past it must come out as
zeros). Then each variant runs its tile again in a scale case (run_scale_case): ~45.5
tiles per thread block of the persistent grid (45 or 46 on 132 SMs: odd and even counts,
a grid that does not divide the tile count), most tiles with more K steps than the ring
has stages, some with none; the small shapes give every thread block a single tile, which
hides pipelines that lose their barrier phases after a warpgroup's first tile. A wrong
scale result also says which tiles of their thread block's sequence are wrong (turn
parity: the pingpong warpgroup).

Variants run in child processes with a timeout (run_isolated), so a hang (a pipeline
barrier that never completes) is reported as HANG for its variant and the others still
run. A wrong result is described: unwritten elements (NaN), which rows and columns are
wrong (by position within the 64-row warpgroup slice, the 16-row warp slice, the 8-row
swizzle period, the 64-column swizzle chunk and the 16-byte chunk), which 64x64 tiles,
whether a wrong tile equals the reference somewhere else (coordinates) or holds the
right values in the wrong order (swizzle / fragment layout).

Run one variant in this process, for example under compute-sanitizer:

    compute-sanitizer --tool racecheck python tests/python/hopper_cases.py \
        --variant dsd_tn_bf16_b128@128x256x64.s4.w8x1 --no-scale
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

OPS = ("sdd", "dsd", "dds")
TRANSPOSES = ("nn", "nt", "tn", "tt")
DTYPES = ("bf16", "fp16")
BLOCKS = (128, 64)


# The wgmma family's other schedules per (op, block): the same list as
# tests/cpp/test_support.hpp (wgmma_schedule_tiles), which compiles them without a GPU.
SCHEDULE_TILES = {
    ("sdd", 128): ["128x128x64.s5.w8x1.pingpong", "256x128x64.s3.w8x1", "128x128x64.s5.w8x1"],
    ("sdd", 64): ["64x64x64.s6.w8x1.pingpong", "128x64x64.s6.w8x1", "64x128x64.s6.w4x1"],
    ("dsd", 128): ["128x128x64.s5.w8x1.pingpong", "64x256x64.s4.w8x1.pingpong", "128x256x64.s3.w8x1.c2",
                   "128x128x64.s5.w8x1.c4.pingpong", "128x256x64.s4.w8x1", "128x256x64.s4.w8x1.c2x1",
                   "64x256x64.s4.w4x1.c2x1"],
    ("dsd", 64): ["64x128x64.s6.w8x1.pingpong", "64x256x64.s4.w8x1.pingpong", "64x256x64.s4.w8x1.c2.pingpong",
                  "64x256x64.s4.w4x1.c2x1"],
    ("dds", 128): ["128x128x64.s5.w8x1.pingpong", "64x128x64.s6.w8x1.pingpong", "256x128x64.s3.w8x1"],
    ("dds", 64): ["128x64x64.s6.w8x1.pingpong", "64x64x64.s6.w8x1.pingpong"],
}

def variant_names() -> list[str]:
    return [f"{op}_{t}_{d}_b{b}" for op, t, d, b in itertools.product(OPS, TRANSPOSES, DTYPES, BLOCKS)]


def schedule_variant_names() -> list[str]:
    return [f"{op}_{t}_{d}_b{b}@{tile}" for op, t, d, b in itertools.product(OPS, TRANSPOSES, DTYPES, BLOCKS)
            for tile in SCHEDULE_TILES[(op, b)]]


# --- part 1: one variant -------------------------------------------------------------------


def _dense(torch, rows, cols, transposed, dtype, gen):
    if transposed:
        return torch.randn(cols, rows, device="cuda", generator=gen).to(dtype).t()
    return torch.randn(rows, cols, device="cuda", generator=gen).to(dtype)


def _run_dense_output(torch, op, topo, block, dense, trans_a, trans_b, dtype, gen, kw):
    """dsd (C = op(S) @ B) or dds (C = A @ op(S)) on random blocks over `topo` and a random
    dense operand with `dense` columns (dsd) or rows (dds), into a NaN-poisoned C.
    Returns (C, its float32 reference, the spec's m/n/k, the same call into another C)."""
    import moejit
    from moejit import ops

    data = torch.randn(topo.nnz, block, block, device="cuda", generator=gen).to(dtype)
    sparse = moejit.BlockSparseMatrix(data, topo)
    if op == "dsd":
        sparse = sparse.t() if trans_a else sparse
        b = _dense(torch, sparse.shape[1], dense, trans_b, dtype, gen)
        out = torch.full((sparse.shape[0], dense), float("nan"), dtype=dtype, device="cuda")

        def call(c):
            return ops.dsd(sparse, b, out=c, **kw)

        call(out)
        return out, sparse.to_dense().float() @ b.float(), dict(m=sparse.shape[0], n=dense, k=sparse.shape[1]), call
    sparse = sparse.t() if trans_b else sparse
    a = _dense(torch, dense, sparse.shape[0], trans_a, dtype, gen)
    out = torch.full((dense, sparse.shape[1]), float("nan"), dtype=dtype, device="cuda")

    def call(c):
        return ops.dds(a, sparse, out=c, **kw)

    call(out)
    return out, a.float() @ sparse.to_dense().float(), dict(m=dense, n=sparse.shape[1], k=sparse.shape[0]), call


def _topology(torch, Topology, block, gen):
    """6 x 5 blocks, irregular: an empty block row, an empty block column, a full row."""
    mask = torch.rand(6, 5, device="cuda", generator=gen) < 0.5
    mask[1, :] = False
    mask[:, 2] = False
    mask[4, :] = True
    mask[4, 2] = False
    mask[0, 0] = mask[5, 4] = True
    return Topology.from_mask(mask, block)


def _topology_with_capacity(torch, Topology, block, gen):
    """7 x 5 blocks whose last three (rows 4-6 of column 4, the last entries of both orders,
    as moejit.route lays out unused capacity) are past a device-side live count; the live
    ones are irregular, with columns of odd and even counts."""
    mask = torch.rand(7, 5, device="cuda", generator=gen) < 0.6
    mask[0, 0] = mask[1, 0] = mask[2, 0] = True   # column 0: at least three blocks
    mask[:, 4] = False
    mask[4:, :] = False
    mask[4:, 4] = True
    full = Topology.from_mask(mask, block)
    live = full.nnz - 3
    topo = Topology(full.rows, full.cols, block, full.row_indices, full.column_indices, full.offsets,
                    full.column_indices_t, full.offsets_t, full.block_offsets_t,
                    live_nnz=torch.tensor([live], dtype=torch.int32, device="cuda"))
    return full, topo, live


def bad_elements(torch, out, ref):
    """Elements of `out` that are unwritten (NaN) or off the float32 reference `ref`."""
    out = out.float()
    scale = ref.pow(2).mean().sqrt().item() + 1e-6
    return ~torch.isfinite(out) | ((out - ref).abs() > 0.05 * scale + 0.02 * ref.abs())


def describe_errors(torch, out, ref, label, lines):
    """Where `out` differs from `ref` (2-D float tensors of one shape). Vectorised: the scale
    cases compare ~10^8 elements."""
    out = out.float()
    nan = ~torch.isfinite(out)
    diff = (out - ref).abs()
    scale = ref.pow(2).mean().sqrt().item() + 1e-6
    bad = bad_elements(torch, out, ref)
    n_bad = int(bad.sum())
    rel = ((out.nan_to_num() - ref).norm() / (ref.norm() + 1e-12)).item()
    finite_max = diff[~nan].max().item() if bool((~nan).any()) else float("nan")
    lines.append(f"  {label}: shape {tuple(out.shape)}, max abs err {finite_max:.4g}, relative err {rel:.3g}, "
                 f"reference rms {scale:.3g}, NaN (unwritten) {int(nan.sum())}, wrong {n_bad} "
                 f"({100.0 * n_bad / out.numel():.2f}%)")
    if n_bad == 0:
        return True
    rows, cols = bad.nonzero(as_tuple=True)

    def histogram(values, modulus, divisor=1):
        return torch.bincount((values // divisor) % modulus, minlength=modulus).tolist()

    lines.append(f"    wrong rows: {int(rows.unique().numel())} of {out.shape[0]}, "
                 f"wrong cols: {int(cols.unique().numel())} of {out.shape[1]}")
    lines.append(f"    by row % 64 // 16 (warp in warpgroup):   {histogram(rows, 4, 16)}")
    lines.append(f"    by row // 64 % 2 (consumer warpgroup):   {histogram(rows, 2, 64)}")
    lines.append(f"    by row % 8 (swizzle period / lane/4):    {histogram(rows, 8)}")
    lines.append(f"    by row % 16 // 8 (fragment half):        {histogram(rows, 2, 8)}")
    lines.append(f"    by col % 64 // 8 (16-byte chunk):        {histogram(cols, 8, 8)}")
    lines.append(f"    by col // 64 (64-column chunk):          {histogram(cols, max(1, (out.shape[1] + 63) // 64), 64)}")
    lines.append(f"    by col % 8 (within chunk):               {histogram(cols, 8)}")
    first = list(zip(rows[:8].tolist(), cols[:8].tolist()))
    lines.append("    first wrong (row, col): out vs ref: " + ", ".join(
        f"({r},{c}): {out[r, c].item():.3g} vs {ref[r, c].item():.3g}" for r, c in first))
    # 64 x 64 tile map: '#' all wrong, '+' some wrong, '.' right.
    tr, tc = (out.shape[0] + 63) // 64, (out.shape[1] + 63) // 64
    padded = torch.zeros(tr * 64, tc * 64, device=out.device)
    padded[:out.shape[0], :out.shape[1]] = bad.float()
    tile_bad = padded.view(tr, 64, tc, 64).mean(dim=(1, 3))
    wrong_tiles = int((tile_bad > 0).sum())
    lines.append(f"    64x64 tile map (# all wrong, + some, . none): {wrong_tiles} of {tr * tc} tiles wrong"
                 + (f"; the first 40 of {tr} tile rows" if tr > 40 else ""))
    for i in range(min(tr, 40)):
        lines.append("      " + "".join("#" if v >= 0.999 else "+" if v > 0 else "." for v in tile_bad[i].tolist()))
    # For a few wrong tiles: do they hold another tile's reference (wrong coordinates), the
    # right values in another order (swizzle or fragment layout), zeros (missing work)?
    whole = out.shape[0] % 64 == 0 and out.shape[1] % 64 == 0
    ref_tiles = ref.reshape(tr, 64, tc, 64).permute(0, 2, 1, 3) if whole else None
    for flat in (tile_bad.flatten() > 0).nonzero().flatten()[:4].tolist():
        i, j = divmod(flat, tc)
        o = out[64 * i:64 * i + 64, 64 * j:64 * j + 64]
        r = ref[64 * i:64 * i + 64, 64 * j:64 * j + 64]
        if o.shape != (64, 64):
            continue
        notes = []
        if bool(torch.isnan(o).all()):
            notes.append("entirely NaN: never written")
        elif bool((o == 0).all()):
            notes.append("all zeros: written without any product")
        else:
            on = o.nan_to_num()
            same_sorted = torch.allclose(on.flatten().sort().values, r.flatten().sort().values,
                                         atol=0.05 * scale, rtol=0.03)
            if same_sorted:
                notes.append("right values in the wrong places (a permutation: swizzle/layout)")
                rows_match = torch.allclose(on.sort(dim=1).values, r.sort(dim=1).values, atol=0.05 * scale,
                                            rtol=0.03)
                notes.append("rows hold their own values permuted" if rows_match else "values moved across rows")
            if torch.allclose(on, r.t(), atol=0.05 * scale, rtol=0.03):
                notes.append("equals the reference tile transposed")
            if ref_tiles is not None:
                # allclose against every tile of the reference at once
                close = ((ref_tiles - on).abs() <= 0.05 * scale + 0.03 * ref_tiles.abs()).flatten(2).all(dim=2)
                close[i, j] = False
                matches = close.nonzero().tolist()
                for a, b in matches[:4]:
                    notes.append(f"equals the reference tile at ({a}, {b}): wrong coordinates")
                if len(matches) > 4:
                    notes.append(f"... and {len(matches) - 4} more reference tiles")
            ratio = (on * r).sum() / (r * r).sum()
            notes.append(f"projection on the reference {ratio.item():.3f} (0.5: half of K missing, 2: twice)")
        lines.append(f"    tile ({i}, {j}): " + "; ".join(notes))
    return False


def run_variant(name: str, scale: bool = True) -> tuple[bool, list[str]]:
    import torch

    import moejit
    from moejit import Topology, ops

    base, _, tile = name.partition("@")
    tile = tile or None
    op, trans, dtype_name, block_text = base.split("_")
    block = int(block_text[1:])
    trans_a, trans_b = trans[0] == "t", trans[1] == "t"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    gen = torch.Generator(device="cuda").manual_seed(hash(name) % 1000)
    topo = _topology(torch, Topology, block, gen)
    lines = []
    runtime = moejit.default_runtime()
    # Dense extents: several tiles, multiples of 64; 768 also of 256 for the wide tiles
    # (1024 for cluster tiles: whole clusters per tile row).
    size = dense_extent(tile, 768) if tile else 384
    kw = dict(family="wgmma", tile=tile)
    start = time.time()
    if op == "sdd":
        a = _dense(torch, topo.rows, size, trans_a, dtype, gen)
        b = _dense(torch, size, topo.cols, trans_b, dtype, gen)
        out = torch.full((topo.nnz, block, block), float("nan"), dtype=dtype, device="cuda")
        ops.sdd(a, b, topo, out=out, **kw)
        dense_ref = a.float() @ b.float()
        ref = dense_ref.view(topo.block_rows, block, topo.block_cols, block).permute(0, 2, 1, 3)[
            topo.row_indices.long(), topo.column_indices.long()]
        torch.cuda.synchronize()
        spec_args = dict(n=topo.cols, k=size)
        out2d, ref2d = out.reshape(-1, block), ref.reshape(-1, block)
        label = f"sdd blocks stacked [nnz*{block}, {block}] (row = block*{block} + row in block)"
    else:
        out, ref2d, spec_args, rerun = _run_dense_output(torch, op, topo, block, size, trans_a, trans_b, dtype, gen,
                                                         kw)
        torch.cuda.synchronize()
        out2d = out
        label = f"{op} C"
    spec = moejit.kernel_spec(op, trans_a=trans_a, trans_b=trans_b, dtype=dtype_name, block_size=block,
                              target=runtime.target_for(0), family="wgmma", tile=tile, **spec_args)
    lines.append(f"  spec: {spec.text()}")
    lines.append(f"  topology: {topo.block_rows} x {topo.block_cols} blocks, nnz {topo.nnz}; "
                 f"{time.time() - start:.1f} s including compile")
    ok = describe_errors(torch, out2d, ref2d, label, lines)
    # The same call again on the same output: a kernel that depends on stale state (for
    # example barrier phases) can pass once and fail the second time.
    if ok:
        again = out.clone().fill_(float("nan"))
        if op == "sdd":
            ops.sdd(a, b, topo, out=again, **kw)
            again2d = again.reshape(-1, block)
        else:
            rerun(again)
            again2d = again
        torch.cuda.synchronize()
        if not torch.equal(again2d.nan_to_num(123.0), out2d.nan_to_num(123.0)):
            lines.append("  SECOND RUN DIFFERS from the first (nondeterminism or a race)")
            ok = False
    if ok and op == "sdd":
        # Capacity past a device-side live count: those blocks are zeros, the others computed.
        full, capped, live = _topology_with_capacity(torch, Topology, block, gen)
        a = _dense(torch, capped.rows, size, trans_a, dtype, gen)
        b = _dense(torch, size, capped.cols, trans_b, dtype, gen)
        out = torch.full((capped.nnz, block, block), float("nan"), dtype=dtype, device="cuda")
        ops.sdd(a, b, capped, out=out, **kw)
        ref = (a.float() @ b.float()).view(full.block_rows, block, full.block_cols, block).permute(0, 2, 1, 3)[
            full.row_indices.long(), full.column_indices.long()]
        torch.cuda.synchronize()
        lines.append(f"  live count: {capped.block_rows} x {capped.block_cols} blocks, nnz {capped.nnz}, live {live}")
        ok = describe_errors(torch, out[:live].reshape(-1, block), ref[:live].reshape(-1, block),
                             "sdd live blocks", lines)
        dead_zero = bool((out[live:] == 0).all())
        if not dead_zero:
            lines.append(f"  BLOCKS PAST THE LIVE COUNT ARE NOT ZERO: NaN {int(torch.isnan(out[live:]).sum())}, "
                         f"nonzero {int((out[live:].nan_to_num(1.0) != 0).sum())}")
        ok = ok and dead_zero
    if ok and op == "dsd" and trans_a:
        ok = run_live_rows_case(torch, Topology, block, size, trans_b, dtype, gen, kw, lines)
    if ok and op == "dsd" and not trans_a:
        ok = run_expert_rows_case(torch, Topology, block, size, trans_b, dtype, gen, kw, lines)
    if ok and scale:
        # The same tile with many tiles per thread block (see run_scale_case).
        ok = run_scale_case(name, op, trans_a, trans_b, dtype, dtype_name, block, spec.tile.text(), lines)
    return ok, lines


def run_live_rows_case(torch, Topology, block, size, trans_b, dtype, gen, kw, lines) -> bool:
    """dsd with S^T over an MoE topology with live_rows (a weight gradient): each expert's
    reduction ends at its last token's K slice of 16, so the sparse rows past it, NaN here,
    must not reach C (the rows between, padding too, are zeros as the contract asks). The
    experts' last blocks end at every slice of a step and on both sides of a step."""
    import moejit
    from moejit import ops

    ends = [1, 16, 17, 33, 48, 63, 64, 65, block - 1, block] if block == 128 else [1, 16, 17, 33, 48, 63, 64]
    counts = torch.tensor([i * block + end for i, end in enumerate(ends)] + [0], dtype=torch.int32, device="cuda")
    topo = Topology.from_expert_counts(counts, block, 2 * block, zero_padding=True)
    data = torch.randn(topo.nnz, block, block, device="cuda", generator=gen).to(dtype)
    live = topo.live_rows.long()[topo.row_indices.long()]
    row = torch.arange(block, device="cuda")
    data[row[None, :] >= live[:, None]] = 0
    clean = moejit.BlockSparseMatrix(data.clone(), topo).t()
    data[row[None, :] >= ((live + 15) // 16 * 16)[:, None]] = float("nan")
    b = _dense(torch, topo.rows, size, trans_b, dtype, gen)
    out = torch.full((topo.cols, size), float("nan"), dtype=dtype, device="cuda")
    ops.dsd(moejit.BlockSparseMatrix(data, topo).t(), b, out=out, **kw)
    ref = clean.to_dense().float() @ b.float()
    torch.cuda.synchronize()
    lines.append(f"  live rows: {len(ends)} experts ending {ends} rows into their last block, and an empty one")
    return describe_errors(torch, out, ref, "dsd C over padded experts", lines)


def run_expert_rows_case(torch, Topology, block, size, trans_b, dtype, gen, kw, lines) -> bool:
    """dsd over an MoE topology (the layer's second product, y = h @ w2): each block row
    reduces over its expert's block columns. The experts hold 1, 2, 3, 0, 1, 3 and 1 blocks
    (11 block rows), so tile rows paired by a cluster along M (.c2x1) fall within one
    expert (sharing every B tile), across two (sharing none) and, for the last, alone."""
    import moejit
    from moejit import ops

    counts = torch.tensor([1, block + 1, 2 * block + 44, 0, block, 3 * block - 1, 7], dtype=torch.int32,
                          device="cuda")
    topo = Topology.from_expert_counts(counts, block, 2 * block)
    data = torch.randn(topo.nnz, block, block, device="cuda", generator=gen).to(dtype)
    sparse = moejit.BlockSparseMatrix(data, topo)
    b = _dense(torch, topo.cols, size, trans_b, dtype, gen)
    out = torch.full((topo.rows, size), float("nan"), dtype=dtype, device="cuda")
    ops.dsd(sparse, b, out=out, **kw)
    ref = sparse.to_dense().float() @ b.float()
    torch.cuda.synchronize()
    lines.append(f"  expert rows: {topo.block_rows} block rows of 7 experts with 1, 2, 3, 0, 1, 3, 1 blocks")
    return describe_errors(torch, out, ref, "dsd C over expert rows", lines)


# --- part 1: the scale case of one variant ------------------------------------------------
#
# The small shapes above give every thread block of the persistent grid one tile (fewer
# tiles than SMs), so a warpgroup never moves on to a second tile: a pipeline that loses
# its stage phases after many tiles (the pingpong schedule before its order barrier) passes
# them. The scale case runs the same tile on a topology with ~45.5 tiles per thread block
# (grid = one block per SM): the tile count is not a multiple of the grid, so thread blocks
# get an odd and an even number of tiles (45 and 46 on 132 SMs); most tiles reduce over
# more K steps than the ring has stages; there are tiles with no reduction (an empty block
# row or column, sdd blocks past a device-side live count) among them. Still small: about
# 6000 tiles of up to 128 x 256 (12000 blocks for sdd pairs; for sdd row pairs 6000 slots
# of the walk, about 60% of them pairs and the rest empty slots), well under a second of
# GPU.

SCALE_TILES_PER_BLOCK = 45.5   # target tiles per thread block (> 40, and between two counts)
SCALE_DENSE = 768              # dsd/dds dense extent (a multiple of 256: every tile fits; see dense_extent)
SCALE_SDD_K = 512              # sdd reduction: 8 K steps, more than any ring's stages
SCALE_SDD_DEAD = 5             # sdd blocks past the live count (an odd number: a single pair)
ROW_PAIR_WINDOW = 16           # block rows per window of sdd row pairs (SddRowPairTiles::kWindow)


def tile_shape(tile: str) -> tuple[int, int]:
    tm, tn = tile.split("x")[:2]
    return int(tm), int(tn)


def dense_extent(tile: str, at_least: int) -> int:
    """A dense extent (dsd's n, dds's m) of at least `at_least` for `tile`: a multiple of 256,
    so that every tile fits, and of 256 x N for a cluster tile (.cN), so that each tile row
    holds whole clusters of N tiles (validate: n / tile_n a multiple of the cluster)."""
    from moejit import TileConfig

    step = 256 * TileConfig.parse(tile).cluster
    return -(-at_least // step) * step


def scale_mask(torch, long: int, short: int, dead: int, gen):
    """[long, short] bool, 60% random; long line 1 empty, long line 3 full; with `dead`, the
    last `dead` long lines hold only the last short line, which holds nothing else (the live
    count layout of moejit.route: those blocks are the last of both orders)."""
    mask = torch.rand(long, short, generator=gen, device=gen.device) < 0.6
    mask[1, :] = False
    mask[3, :] = True
    if dead:
        mask[:, short - 1] = False
        mask[long - dead:, :] = False
        mask[long - dead:, short - 1] = True
    return mask


def sdd_pair_count(mask, dead: int) -> int:
    """Tiles of the sdd pair schedule for a scale_mask (block rows x block columns): the
    live blocks of each column in pairs, then the dead ones in pairs (SddColumnPairTiles)."""
    live_counts = mask[:mask.shape[0] - dead].sum(dim=0)
    return int(((live_counts + 1) // 2).sum()) + (dead + 1) // 2


def sdd_row_pair_slots(mask, dead: int) -> int:
    """The most pairs of any block row of a scale_mask, over its live blocks (the dead
    rows' only blocks are past the live count): SddRowPairTiles' max_pairs."""
    live_counts = mask[:mask.shape[0] - dead].sum(dim=1)
    return int(((live_counts + 1) // 2).max())


def scale_plan(torch, op: str, trans_a: bool, trans_b: bool, block: int, tile: str, sms: int, gen):
    """The scale case's block mask (block rows x block columns of the stored topology) and
    its tile count for `tile`: about SCALE_TILES_PER_BLOCK * sms tiles, never a multiple of
    sms. Returns (mask, tiles, dead)."""
    tm, tn = tile_shape(tile)
    dense = dense_extent(tile, SCALE_DENSE)
    target = int(SCALE_TILES_PER_BLOCK * sms)
    short = 8 if block == 128 else 16   # dsd/dds: 5-10 blocks per reduction, 7-20 K steps
    if op == "sdd" and tn == 2 * block:
        # Pairs of one block row: max_pairs tiles per block row (empty slots included, the
        # dead rows' too), then the dead blocks in pairs. Row 3 is full: max_pairs is
        # short // 2, and about 60% of the slots hold a pair: enough rows for the target's
        # pairs. Off a multiple of the grid: one more row at a time (each adds max_pairs
        # tiles).
        long = int(target / (0.6 * (short // 2))) + SCALE_SDD_DEAD

        def row_pair_tiles(mask):
            return sdd_row_pair_slots(mask, SCALE_SDD_DEAD) * mask.shape[0] + (SCALE_SDD_DEAD + 1) // 2

        mask = scale_mask(torch, long, short, SCALE_SDD_DEAD, gen)
        while row_pair_tiles(mask) % sms == 0:
            long += 1
            mask = scale_mask(torch, long, short, SCALE_SDD_DEAD, gen)
        return mask, row_pair_tiles(mask), SCALE_SDD_DEAD
    if op == "sdd":
        pairs = tm == 2 * block
        sub = 1 if pairs else (block // tm) * (block // tn)
        per_row = (short - 1) * 0.6 * sub / (2 if pairs else 1)   # the last column holds the dead blocks
        long = int(target / per_row) + SCALE_SDD_DEAD + 4
        mask = scale_mask(torch, long, short, SCALE_SDD_DEAD, gen)

        def count():
            return sdd_pair_count(mask, SCALE_SDD_DEAD) if pairs else int(mask.sum()) * sub

        # Off a multiple of the grid: drop live blocks (past the full row 3) until it is.
        row = 4
        while count() % sms == 0 and row < long - SCALE_SDD_DEAD:
            cols = mask[row, :short - 1].nonzero().flatten().tolist()
            if cols:
                mask[row, cols[0]] = False
            else:
                row += 1
        return mask, count(), SCALE_SDD_DEAD
    # dsd: tiles = (rows / tm) x (dense / tn); dds: tiles = (dense / tm) x (cols / tn), where
    # rows / cols is the sparse operand's extent over `long` blocks.
    # A dsd cluster along M (.c2x1) computes tile rows in pairs, an odd last one with an
    # absent partner (launch_geometry): an odd count of them where a block holds one tile
    # row, so the scale case has one (64-row tiles come two to a block: always pairs).
    from moejit import TileConfig

    pair_rows = 2 if op == "dsd" and TileConfig.parse(tile).cluster_m == 2 else 1
    if op == "dsd":
        tile_rows, tiles_across = block // tm, dense // tn
        long_is_rows = not trans_a   # A stored M x K (blocks along M) or K x M
    else:
        tile_rows, tiles_across = dense // tm, block // tn
        long_is_rows = trans_b       # B stored K x N (blocks along N: columns) or N x K

    def tiles_of(long: int) -> int:
        rows = long * tile_rows if op == "dsd" else tile_rows
        across = tiles_across if op == "dsd" else long * tiles_across
        return -(-rows // pair_rows) * pair_rows * across

    long = -(-target // (tile_rows * tiles_across))
    for extra in range(2 * sms):   # at most sms / gcd(per long line, sms) steps
        if tiles_of(long + extra) % sms and (pair_rows == 1 or tile_rows % 2 == 0 or (long + extra) % 2):
            long += extra
            break
    mask = scale_mask(torch, long, short, 0, gen)
    return (mask if long_is_rows else mask.t().contiguous()), tiles_of(long), 0


def tile_of_region(torch, op, topo, live, block, tile, out_shape):
    """For the scale check: the traversal index t of the C tile that computes each region
    of the output, and the region size (rows, cols). A thread block computes tiles
    t = blockIdx.x + turn * grid (sm90/tile_walks.cuh, SddColumnPairTiles)."""
    from moejit import TileConfig

    tm, tn = tile_shape(tile)
    dev = topo.row_indices.device
    if op == "dsd":   # tile = tile_row * tiles_n + tile_col
        rows, cols = out_shape[0] // tm, out_shape[1] // tn
        row, col = torch.arange(rows, device=dev)[:, None], torch.arange(cols, device=dev)[None, :]
        if TileConfig.parse(tile).cluster_m == 2:   # rows in pairs: 2 (pair row x cols + col) + row % 2
            return 2 * (row // 2 * cols + col) + row % 2, (tm, tn)
        return row * cols + col, (tm, tn)
    if op == "dds":   # tile = tile_col * tiles_m + tile_row
        rows, cols = out_shape[0] // tm, out_shape[1] // tn
        t = torch.arange(cols, device=dev)[None, :] * rows + torch.arange(rows, device=dev)[:, None]
        return t, (tm, tn)
    # sdd: out2d is [nnz * block, block], stored block by stored block. Position j of the
    # column-major order holds stored block block_offsets_t[j] (and j itself past the live
    # count, where both orders agree).
    nnz = topo.nnz
    position = torch.empty(nnz, dtype=torch.long, device=dev)
    position[topo.block_offsets_t.long()] = torch.arange(nnz, device=dev)
    if tn == 2 * block:
        # Row pairs: windows of ROW_PAIR_WINDOW block rows (the last one fewer), pair q of
        # a window's row i its tile q x (its rows) + i; then the dead blocks in pairs.
        rows = topo.block_rows
        row = topo.row_indices.long()
        begin = topo.offsets.long().clamp(max=live)
        counts = begin[1:] - begin[:-1]
        most = int(((counts + 1) // 2).max())
        window_first = row // ROW_PAIR_WINDOW * ROW_PAIR_WINDOW
        window_rows = (rows - window_first).clamp(max=ROW_PAIR_WINDOW)
        stored = torch.arange(nnz, device=dev)
        t_live = window_first * most + (stored - begin[row]) // 2 * window_rows + (row - window_first)
        t = torch.where(stored < live, t_live, most * rows + (stored - live) // 2)
        return t[:, None], (block, block)
    if tm == 2 * block:   # pairs: column c's live positions [begin, end) in pairs, then the dead ones
        col = topo.column_indices.long()
        begin = topo.offsets_t.long().clamp(max=live)
        counts = begin[1:] - begin[:-1]
        first = torch.cumsum((counts + 1) // 2, 0) - (counts + 1) // 2
        live_pairs = int(((counts + 1) // 2).sum())
        t = torch.where(position < live, first[col] + (position - begin[col]) // 2,
                        live_pairs + (position - live) // 2)
        return t[:, None], (block, block)
    sub_m, sub_n = block // tm, block // tn   # column order: sub_m fastest
    t = (position[:, None, None] * (sub_m * sub_n) + torch.arange(sub_n, device=dev)[None, None, :] * sub_m
         + torch.arange(sub_m, device=dev)[None, :, None])
    return t.reshape(nnz * sub_m, sub_n), (tm, tn)


def describe_turns(torch, bad, t, region, tiles, grid, lines):
    """Wrong C tiles by their place in their thread block's sequence (a grid of `grid`
    thread blocks: block i computes tiles i, i + grid, ...)."""
    rows, cols = t.shape
    wrong = bad.reshape(rows, region[0], cols, region[1]).any(dim=3).any(dim=1)
    tw = t[wrong].flatten()
    if tw.numel() == 0:
        return
    turn = tw // grid
    lines.append(f"    wrong C tiles: {tw.numel()} of {tiles}, in {int((tw % grid).unique().numel())} of {grid} "
                 f"thread blocks; by turn (the block's 1st, 2nd, ... tile) % 2 (pingpong: warpgroup 0, 1): "
                 f"{torch.bincount(turn % 2, minlength=2).tolist()}; turn 0: {int((turn == 0).sum())}, "
                 f"first wrong turns {sorted(set(turn.tolist()))[:12]}")


def run_scale_case(name, op, trans_a, trans_b, dtype, dtype_name, block, tile, lines) -> bool:
    import torch

    import moejit
    from moejit import Topology, _core, ops

    runtime = moejit.default_runtime()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    gen = torch.Generator(device="cuda").manual_seed(hash(name + "/scale") % 1000)
    start = time.time()
    mask, tiles, dead = scale_plan(torch, op, trans_a, trans_b, block, tile, sms, gen)
    dense = dense_extent(tile, SCALE_DENSE)
    full = Topology.from_mask(mask, block)
    kw = dict(family="wgmma", tile=tile)
    live = full.nnz - dead
    if op == "sdd":
        topo = Topology(full.rows, full.cols, block, full.row_indices, full.column_indices, full.offsets,
                        full.column_indices_t, full.offsets_t, full.block_offsets_t,
                        live_nnz=torch.tensor([live], dtype=torch.int32, device="cuda"))
        a = _dense(torch, topo.rows, SCALE_SDD_K, trans_a, dtype, gen)
        b = _dense(torch, SCALE_SDD_K, topo.cols, trans_b, dtype, gen)
        out = torch.full((topo.nnz, block, block), float("nan"), dtype=dtype, device="cuda")
        ops.sdd(a, b, topo, out=out, **kw)
        # The reference block by block row chunk: the dense product would not fit comfortably.
        ref = torch.empty(topo.nnz, block, block, device="cuda")
        rows_i, cols_i = full.row_indices.long(), full.column_indices.long()
        bf = b.float()
        chunk = 256
        for r0 in range(0, full.block_rows, chunk):
            sel = ((rows_i >= r0) & (rows_i < r0 + chunk)).nonzero().flatten()
            if sel.numel() == 0:
                continue
            dense = (a[r0 * block:(r0 + chunk) * block].float() @ bf).view(-1, block, full.block_cols, block)
            ref[sel] = dense[rows_i[sel] - r0, :, cols_i[sel], :]
        del a, b, bf
        spec_args = dict(n=topo.cols, k=SCALE_SDD_K)
        out2d, ref2d = out[:live].reshape(-1, block), ref[:live].reshape(-1, block)
        steps = f"{SCALE_SDD_K // 64} K steps per live tile"
    else:
        topo = full
        out, ref2d, spec_args, _ = _run_dense_output(torch, op, topo, block, dense, trans_a, trans_b, dtype, gen,
                                                     kw)
        # Blocks reduced by a tile row (dsd) or a tile column (dds).
        per_tile = mask.sum(dim=(0 if trans_a else 1) if op == "dsd" else (1 if trans_b else 0))
        out2d = out
        k = per_tile * (block // 64)
        steps = f"K steps per tile {int(k.min())}..{int(k.max())} (median {int(k.float().median())})"
    torch.cuda.synchronize()
    spec = moejit.kernel_spec(op, trans_a=trans_a, trans_b=trans_b, dtype=dtype_name, block_size=block,
                              target=runtime.target_for(0), family="wgmma", tile=tile, **spec_args)
    # The runtime's own grid: a cluster tile's is as many whole clusters as the device runs
    # at once, which can be fewer than sms blocks (GPCs whose SM count is no multiple of
    # the cluster).
    grid = runtime.core.persistent_grid(spec, tiles, 0)
    lines.append(f"  scale case: {spec.text()}")
    lines.append(f"    topology {full.block_rows} x {full.block_cols} blocks, nnz {full.nnz}"
                 + (f" (live {live})" if dead else "") + f"; {tiles} tiles on {grid} thread blocks: "
                 f"{tiles // grid} or {tiles // grid + 1} each; {steps}; {time.time() - start:.1f} s")
    ok = True
    if op != "sdd" or 2 * block not in tile_shape(tile):   # pairs: counted on the device
        host = _core.launch_geometry(spec, full.nnz, full.block_rows, full.block_cols).grid_x
        if host != tiles:
            lines.append(f"    SCALE PLAN WRONG: {tiles} tiles planned, the host's launch geometry has {host}")
            ok = False
    # scale_plan aims at sms thread blocks; a cluster tile's grid can be smaller, and then
    # its tiles may divide evenly (reported above as "N or N+1 each").
    if tiles // sms <= 40 or tiles % sms == 0:
        lines.append(f"    SCALE PLAN WRONG: expected > 40 tiles per thread block and a remainder ({sms} SMs)")
        ok = False
    label = "scale: sdd live blocks" if op == "sdd" else f"scale: {op} C"
    if not describe_errors(torch, out2d, ref2d, label, lines):
        ok = False
        bad = bad_elements(torch, out2d, ref2d)
        t, region = tile_of_region(torch, op, full, live, block, tile, tuple(out2d.shape))
        if op == "sdd":
            t = t[:live * (block // region[0])]
        describe_turns(torch, bad, t, region, tiles, grid, lines)
    if op == "sdd" and not bool((out[live:] == 0).all()):
        lines.append(f"    SCALE: BLOCKS PAST THE LIVE COUNT ARE NOT ZERO: NaN {int(torch.isnan(out[live:]).sum())}")
        ok = False
    return ok


# --- part 1: driver ------------------------------------------------------------------------


_MARK = "@@hopper_cases "


def run_isolated(names: list[str], timeout: float, workers: int, scale: bool = True) -> dict[str, tuple[str, str]]:
    """Variants in child processes, those of one op/transpose/dtype/block together (one
    torch start-up for its tiles); returns name -> (PASS / FAIL / HANG / CRASH, the
    variant's report). A child that hangs marks its unfinished variants HANG, the others
    keep their result."""
    results = {}
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.partition("@")[0], []).append(name)

    def one(group):
        t0 = time.time()
        limit = timeout * len(group)
        try:
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", ",".join(group)]
                                  + ([] if scale else ["--no-scale"]), capture_output=True, text=True, timeout=limit)
            out, err, hung = proc.stdout, proc.stderr, False
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            err = (e.stderr or b"").decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
            hung = True
        # The child prints "<mark><status> <name>" after each variant's lines.
        done, text, chunk = {}, {}, []
        for line in out.splitlines():
            if line.startswith(_MARK):
                status, name = line[len(_MARK):].split(" ", 1)
                done[name], text[name], chunk = status, "\n".join(chunk), []
            else:
                chunk.append(line)
        rows = []
        for name in group:
            if name in done:
                rows.append((name, done[name], text[name]))
            elif hung:
                rows.append((name, "HANG", f"  no result after {limit:.0f} s (a barrier wait that never completes?)\n"
                             + "\n".join(chunk)))
                chunk = []
            else:
                rows.append((name, "CRASH", "\n".join(chunk) + (("\n  stderr:\n" + err[-4000:]) if err else "")))
                chunk = []
        return [(n, st, tx + f"\n  ({time.time() - t0:.1f} s for the group)") for n, st, tx in rows]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for rows in pool.map(one, list(groups.values())):
            for name, status, text in rows:
                results[name] = (status, text.rstrip())
                print(f"[{status}] {name}", flush=True)
    return results


def child(names: str, scale: bool = True) -> int:
    failed = False
    for name in names.split(","):
        try:
            ok, lines = run_variant(name, scale)
            status = "PASS" if ok else "FAIL"
        except Exception:
            lines, status = [traceback.format_exc()], "CRASH"
        failed = failed or status != "PASS"
        print("\n".join(lines))
        print(f"{_MARK}{status} {name}", flush=True)
    return 1 if failed else 0


# --- part 2: speed -------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--variant", action="append", required=False,
                        help="run this variant in this process, e.g. dsd_tn_bf16_b128 or "
                             "dsd_nn_bf16_b128@128x256x64.s4.w8x1 (repeatable)")
    parser.add_argument("--no-scale", action="store_true",
                        help="skip each variant's scale case (many tiles per thread block)")
    args = parser.parse_args()
    if args.child:
        return child(args.child, not args.no_scale)
    known = variant_names() + schedule_variant_names()
    names = args.variant or known
    unknown = sorted(set(names) - set(known))
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(known)}")
    failed = 0
    for name in names:
        try:
            ok, lines = run_variant(name, not args.no_scale)
            status = "PASS" if ok else "FAIL"
        except Exception:
            status, lines = "CRASH", [traceback.format_exc()]
        failed += status != "PASS"
        print(f"[{status}] {name}")
        if status != "PASS" or os.environ.get("HOPPER_SMOKE_VERBOSE"):
            print("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
