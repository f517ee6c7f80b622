"""Every block-sparse op against a float32 torch reference, on random data and random
topologies: not only the block-diagonal MoE ones, with empty block rows and columns,
experts with no tokens and one expert taking every token. Outputs are poisoned with NaN
before each run, so an element the kernel fails to write shows up.

Each op runs in every kernel family the GPU has: mma everywhere, wgmma (TMA + wgmma,
persistent) on Hopper (compute capability 9.0) only."""

import dataclasses
import itertools

import pytest
import torch

import moejit
from moejit import Topology, ops
from moejit.ops.reference import relative_error

from conftest import requires_gpu

pytestmark = [pytest.mark.gpu, requires_gpu]

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _is_hopper() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability(0) == (9, 0)


# The wgmma family exists on sm_90a only: elsewhere its cases skip, they do not fail.
FAMILIES = [
    "mma",
    pytest.param("wgmma", marks=pytest.mark.skipif(not _is_hopper(), reason="wgmma needs a Hopper GPU (sm_90a)")),
]
# Rounding the fp32 result to 16 bits costs ~2^-9 (bf16) / 2^-12 (fp16) relative error.
TOLERANCE = {"bf16": 1e-2, "fp16": 2e-3}
TRANSPOSES = list(itertools.product([False, True], repeat=2))


def _dense(rows, cols, transposed, dtype, gen):
    """A random [rows, cols] operand, stored transposed (a .t() view) if asked."""
    if transposed:
        return torch.randn(cols, rows, device="cuda", generator=gen).to(dtype).t()
    return torch.randn(rows, cols, device="cuda", generator=gen).to(dtype)


def _topologies(block, gen):
    """Named topologies of 5 x 3 to 6 blocks: irregular masks and MoE ones."""
    mask = torch.rand(5, 4, device="cuda", generator=gen) < 0.5
    mask[1, :] = False          # an empty block row
    mask[:, 2] = False          # an empty block column
    mask[3, 0] = mask[4, 3] = True
    yield "random mask", Topology.from_mask(mask, block)
    yield "lower triangular", Topology.from_mask(torch.ones(5, 5, device="cuda").tril().bool(), block)
    # MoE: 4 experts, 2 blocks of ffn each; an expert with no tokens, counts of no pattern.
    counts = torch.tensor([block + 3, 0, 2 * block - 1, 7], device="cuda", dtype=torch.int32)
    yield "moe with an empty expert", Topology.from_expert_counts(counts, block, 2 * block)
    counts = torch.tensor([0, 3 * block + 5, 0], device="cuda", dtype=torch.int32)
    yield "moe one expert takes all", Topology.from_expert_counts(counts, block, 2 * block)


def _ref_blocks(dense, topo):
    b = topo.block_size
    blocks = dense.view(topo.block_rows, b, topo.block_cols, b).permute(0, 2, 1, 3)
    return blocks[topo.row_indices.long(), topo.column_indices.long()]


def _random_sparse(topo, dtype, gen):
    b = topo.block_size
    data = torch.randn(topo.nnz, b, b, device="cuda", generator=gen).to(dtype)
    return moejit.BlockSparseMatrix(data, topo)


@pytest.mark.parametrize("block", [64, 128])
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@pytest.mark.parametrize("family", FAMILIES)
def test_sdd(block, dtype, trans_a, trans_b, family):
    gen = torch.Generator(device="cuda").manual_seed(1)
    k = 192
    for name, topo in _topologies(block, gen):
        a = _dense(topo.rows, k, trans_a, DTYPES[dtype], gen)
        b = _dense(k, topo.cols, trans_b, DTYPES[dtype], gen)
        out = torch.full((topo.nnz, block, block), float("nan"), dtype=DTYPES[dtype], device="cuda")
        result = ops.sdd(a, b, topo, out=out, family=family)
        torch.cuda.synchronize()
        assert result.data is out
        ref = _ref_blocks(a.float() @ b.float(), topo)
        err = relative_error(out, ref)
        assert err < TOLERANCE[dtype], f"{name}: relative error {err}"


@pytest.mark.parametrize("block", [64, 128])
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@pytest.mark.parametrize("family", FAMILIES)
def test_dsd(block, dtype, trans_a, trans_b, family):
    gen = torch.Generator(device="cuda").manual_seed(2)
    n = 320
    for name, topo in _topologies(block, gen):
        sparse = _random_sparse(topo, DTYPES[dtype], gen)
        if trans_a:
            sparse = sparse.t()
        m, k = sparse.shape
        b = _dense(k, n, trans_b, DTYPES[dtype], gen)
        out = torch.full((m, n), float("nan"), dtype=DTYPES[dtype], device="cuda")
        ops.dsd(sparse, b, out=out, family=family)
        torch.cuda.synchronize()
        err = relative_error(out, sparse.to_dense().float() @ b.float())
        assert err < TOLERANCE[dtype], f"{name}: relative error {err}"


@pytest.mark.parametrize("block", [64, 128])
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@pytest.mark.parametrize("family", FAMILIES)
def test_dds(block, dtype, trans_a, trans_b, family):
    gen = torch.Generator(device="cuda").manual_seed(3)
    m = 192
    for name, topo in _topologies(block, gen):
        sparse = _random_sparse(topo, DTYPES[dtype], gen)
        if trans_b:
            sparse = sparse.t()
        k, n = sparse.shape
        a = _dense(m, k, trans_a, DTYPES[dtype], gen)
        out = torch.full((m, n), float("nan"), dtype=DTYPES[dtype], device="cuda")
        ops.dds(a, sparse, out=out, family=family)
        torch.cuda.synchronize()
        err = relative_error(out, a.float() @ sparse.to_dense().float())
        assert err < TOLERANCE[dtype], f"{name}: relative error {err}"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("block", [64, 128])
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
def test_sdd_writes_zeros_past_the_live_block_count(block, trans_a, trans_b, family):
    """A topology with capacity (live_nnz on the device, as moejit.route builds): blocks
    past the live count are zeros, the others computed."""
    gen = torch.Generator(device="cuda").manual_seed(4)
    mask = torch.rand(4, 5, device="cuda", generator=gen) < 0.7
    mask[0, 0] = mask[3, 4] = True
    full = Topology.from_mask(mask, block)
    live = full.nnz - 3
    topo = Topology(full.rows, full.cols, block, full.row_indices, full.column_indices, full.offsets,
                    full.column_indices_t, full.offsets_t, full.block_offsets_t,
                    live_nnz=torch.tensor([live], dtype=torch.int32, device="cuda"))
    a = _dense(topo.rows, 128, trans_a, torch.bfloat16, gen)
    b = _dense(128, topo.cols, trans_b, torch.bfloat16, gen)
    out = torch.full((topo.nnz, block, block), float("nan"), dtype=torch.bfloat16, device="cuda")
    ops.sdd(a, b, topo, out=out, family=family)
    ref = _ref_blocks(a.float() @ b.float(), full)
    assert relative_error(out[:live], ref[:live]) < TOLERANCE["bf16"]
    assert (out[live:] == 0).all()


# Non-default tiles reach other code paths: 8-chunk swizzled rows (tile_k 64), more warps
# than 2x2, two-stage pipelines, tiles smaller than the block.
TILES = ["64x64x64.s3.w2x2", "128x64x32.s2.w4x1", "32x128x16.s5.w1x4", "64x128x64.s2.w2x2"]


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
def test_tile_variants(tile, trans_a, trans_b):
    gen = torch.Generator(device="cuda").manual_seed(4)
    block = 128
    topo = dict(_topologies(block, gen))["random mask"]
    k = n = m = 256
    dt = torch.bfloat16
    a = _dense(topo.rows, k, trans_a, dt, gen)
    b = _dense(k, topo.cols, trans_b, dt, gen)
    s = ops.sdd(a, b, topo, tile=tile)
    assert relative_error(s.data, _ref_blocks(a.float() @ b.float(), topo)) < 1e-2
    sparse = _random_sparse(topo, dt, gen)
    sparse = sparse.t() if trans_a else sparse
    b = _dense(sparse.shape[1], n, trans_b, dt, gen)
    assert relative_error(ops.dsd(sparse, b, tile=tile), sparse.to_dense().float() @ b.float()) < 1e-2
    sparse = _random_sparse(topo, dt, gen)
    sparse = sparse.t() if trans_b else sparse
    a = _dense(m, sparse.shape[0], trans_a, dt, gen)
    assert relative_error(ops.dds(a, sparse, tile=tile), a.float() @ sparse.to_dense().float()) < 1e-2


@pytest.mark.parametrize("family", FAMILIES)
def test_empty_topology_gives_zeros(family):
    topo = Topology.from_mask(torch.zeros(3, 2, dtype=torch.bool, device="cuda"), 128)
    sparse = moejit.BlockSparseMatrix(torch.empty(0, 128, 128, dtype=torch.bfloat16, device="cuda"), topo)
    b = torch.randn(256, 128, device="cuda", dtype=torch.bfloat16)
    y = ops.dsd(sparse, b, out=torch.full((384, 128), float("nan"), dtype=torch.bfloat16, device="cuda"),
                family=family)
    assert torch.equal(y, torch.zeros_like(y))
    a = torch.randn(64, 384, device="cuda", dtype=torch.bfloat16)
    z = ops.dds(a, sparse, out=torch.full((64, 256), float("nan"), dtype=torch.bfloat16, device="cuda"),
                family=family)
    assert torch.equal(z, torch.zeros_like(z))
    # The weight-gradient form (sparse operand transposed): every block column is empty,
    # so every reduction is.
    w = ops.dsd(sparse.t(), torch.randn(384, 128, device="cuda", dtype=torch.bfloat16),
                out=torch.full((256, 128), float("nan"), dtype=torch.bfloat16, device="cuda"), family=family)
    assert torch.equal(w, torch.zeros_like(w))


def test_runs_on_the_callers_stream():
    gen = torch.Generator(device="cuda").manual_seed(5)
    topo = dict(_topologies(128, gen))["moe with an empty expert"]
    a = _dense(topo.rows, 256, False, torch.bfloat16, gen)
    b = _dense(256, topo.cols, True, torch.bfloat16, gen)
    ops.sdd(a, b, topo)   # compile and load outside the timed stream
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        out = ops.sdd(a, b, topo)
    stream.synchronize()
    assert relative_error(out.data, _ref_blocks(a.float() @ b.float(), topo)) < 1e-2


def test_one_spec_compiles_once_per_runtime():
    runtime = moejit.Runtime()
    gen = torch.Generator(device="cuda").manual_seed(6)
    topo = dict(_topologies(128, gen))["random mask"]
    a = _dense(topo.rows, 128, False, torch.bfloat16, gen)
    b = _dense(128, topo.cols, False, torch.bfloat16, gen)
    for _ in range(3):
        ops.sdd(a, b, topo, runtime=runtime)
    assert runtime.core.compiled_count == 1


def test_moe_layer_kernels_small_shape():
    """The CLI's GPU path: the three layer kernels on a small MoE shape pass their check."""
    from moejit.jit.layer_kernels import layer_kernels
    from moejit.tools.measure_layer import measure_layer_kernels
    from moejit.zoo import ModelShape

    shape = ModelShape("tiny", 256, 512, 4, 2, 1000, "gelu", False)
    runtime = moejit.Runtime()
    target = runtime.target_for(0)
    kernels = layer_kernels(shape, target=target)
    results = measure_layer_kernels(shape, kernels, dtype="bf16", runtime=runtime)
    assert [r.passed for r in results] == [True] * 4, results


# --- the wgmma family's own paths -------------------------------------------------------

requires_hopper = pytest.mark.skipif(not _is_hopper(), reason="wgmma needs a Hopper GPU (sm_90a)")

# Tiles the wgmma search space may pick beyond the heuristic ones: the widest N, one
# consumer warpgroup, the shallowest and the deepest ring.
WGMMA_TILES = ["128x256x64.s3.w8x1", "128x64x64.s6.w8x1", "64x256x64.s4.w4x1", "64x128x64.s2.w4x1",
               "64x64x64.s5.w4x1", "128x128x64.s2.w8x1"]


def _fits(op, tile, block):
    tm, tn = (int(v) for v in tile.split("x")[:2])
    return {"sdd": tm <= block and tn <= block, "dsd": tm <= block, "dds": tn <= block}[op]


@requires_hopper
@pytest.mark.parametrize("tile", WGMMA_TILES)
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@pytest.mark.parametrize("op", ["sdd", "dsd", "dds"])
def test_wgmma_tile_variants(op, tile, trans_a, trans_b):
    gen = torch.Generator(device="cuda").manual_seed(7)
    block = 128
    if not _fits(op, tile, block):
        pytest.skip(f"{tile} does not fit a {block} block along {op}'s sparse dimension")
    topo = dict(_topologies(block, gen))["random mask"]
    dt = torch.bfloat16
    size = 512   # a multiple of every tile's dense extents
    if op == "sdd":
        a = _dense(topo.rows, size, trans_a, dt, gen)
        b = _dense(size, topo.cols, trans_b, dt, gen)
        out = torch.full((topo.nnz, block, block), float("nan"), dtype=dt, device="cuda")
        ops.sdd(a, b, topo, out=out, tile=tile, family="wgmma")
        err = relative_error(out, _ref_blocks(a.float() @ b.float(), topo))
    elif op == "dsd":
        sparse = _random_sparse(topo, dt, gen)
        sparse = sparse.t() if trans_a else sparse
        b = _dense(sparse.shape[1], size, trans_b, dt, gen)
        out = torch.full((sparse.shape[0], size), float("nan"), dtype=dt, device="cuda")
        ops.dsd(sparse, b, out=out, tile=tile, family="wgmma")
        err = relative_error(out, sparse.to_dense().float() @ b.float())
    else:
        sparse = _random_sparse(topo, dt, gen)
        sparse = sparse.t() if trans_b else sparse
        a = _dense(size, sparse.shape[0], trans_a, dt, gen)
        out = torch.full((size, sparse.shape[1]), float("nan"), dtype=dt, device="cuda")
        ops.dds(a, sparse, out=out, tile=tile, family="wgmma")
        err = relative_error(out, a.float() @ sparse.to_dense().float())
    torch.cuda.synchronize()
    assert not torch.isnan(out).any(), f"{op} {tile}: elements left unwritten (NaN)"
    assert err < 1e-2, f"{op} {tile}: relative error {err}"


@requires_hopper
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@pytest.mark.parametrize("block", [64, 128])
def test_wgmma_many_tiles_per_sm(block, trans_a, trans_b):
    """The persistent grid: far more tiles than SMs, so every thread block walks several
    tiles and the stage ring wraps across tile boundaries (its phases must carry over);
    experts of uneven size make the reductions of dsd with a transposed A uneven."""
    gen = torch.Generator(device="cuda").manual_seed(8)
    dt = torch.bfloat16
    counts = torch.tensor([700, 3, 0, 1500, 129, 64, 900, 255], device="cuda", dtype=torch.int32)
    topo = Topology.from_expert_counts(counts, block, 1024)
    h = 512
    a = _dense(topo.rows, h, trans_a, dt, gen)
    b = _dense(h, topo.cols, trans_b, dt, gen)
    s = ops.sdd(a, b, topo, family="wgmma")
    assert relative_error(s.data, _ref_blocks(a.float() @ b.float(), topo)) < 1e-2
    sparse = _random_sparse(topo, dt, gen)
    for transposed in (False, True):
        view = sparse.t() if transposed else sparse
        bd = _dense(view.shape[1], 1024, trans_b, dt, gen)
        y = ops.dsd(view, bd, family="wgmma")
        assert relative_error(y, view.to_dense().float() @ bd.float()) < 1e-2, f"dsd trans_a={transposed}"
        ad = _dense(1024, view.shape[0], trans_a, dt, gen)
        z = ops.dds(ad, view, family="wgmma")
        assert relative_error(z, ad.float() @ view.to_dense().float()) < 1e-2, f"dds trans_b={transposed}"


def _padded_expert_blocks(topo, dtype, gen, past_slices):
    """Random blocks over an MoE topology with live_rows whose padding rows are zeros, and
    `past_slices` in the rows past each block's tokens rounded up to wgmma's K slice of 16
    (the rows the wgmma weight gradient skips). Returns (the blocks, the zero-padded ones)."""
    b = topo.block_size
    data = torch.randn(topo.nnz, b, b, device="cuda", generator=gen).to(dtype)
    live = topo.live_rows.long()[topo.row_indices.long()]           # tokens of each block's row
    row = torch.arange(b, device="cuda")
    data[row[None, :] >= live[:, None]] = 0
    clean = data.clone()
    data[row[None, :] >= ((live + 15) // 16 * 16)[:, None]] = past_slices
    return moejit.BlockSparseMatrix(data, topo), moejit.BlockSparseMatrix(clean, topo)


@pytest.mark.parametrize("block", [64, 128])
@pytest.mark.parametrize("family", ["mma", "wgmma"])
def test_weight_gradient_over_padded_experts(family, block):
    """dsd with S^T over an MoE topology with live_rows (the weight gradients): the wgmma
    kernels end each expert's reduction at its last token's K slice, so NaN past it must not
    reach C; the mma family reads the padding, which then holds zeros. Last blocks of every
    kind: one token, a step and one row, whole steps, a full block, an empty expert; then
    the same with two last blocks that hold no rows in use (a column left without a step,
    and one that ends at the block before)."""
    if family == "wgmma" and not _is_hopper():
        pytest.skip("wgmma needs a Hopper GPU (sm_90a)")
    gen = torch.Generator(device="cuda").manual_seed(block)
    dt = torch.bfloat16
    counts = torch.tensor([1, block // 4 + 1, 0, block // 2, block // 2 + 1, block, 2 * block + 3, 3 * block - 1],
                          device="cuda", dtype=torch.int32)
    padded = Topology.from_expert_counts(counts, block, 2 * block, zero_padding=True)
    # Block rows 0 (expert 0's only block) and 7 (expert 6's last) taken as holding no tokens.
    no_rows = padded.live_rows.clone()
    no_rows[[0, 7]] = 0
    poison = float("nan") if family == "wgmma" else 0.0
    for topo, trans_b in ((padded, False), (padded, True), (dataclasses.replace(padded, live_rows=no_rows), False)):
        sparse, clean = _padded_expert_blocks(topo, dt, gen, poison)
        bd = _dense(topo.rows, 512, trans_b, dt, gen)
        out = torch.full((topo.cols, 512), float("nan"), dtype=dt, device="cuda")
        ops.dsd(sparse.t(), bd, out=out, family=family)
        ref = clean.t().to_dense().float() @ bd.float()
        torch.cuda.synchronize()
        case = f"trans_b={trans_b}, live_rows={topo.live_rows.tolist()}"
        assert not torch.isnan(out).any(), f"{case}: NaN from the rows past the tokens, or unwritten"
        assert relative_error(out, ref) < 1e-2, case


@pytest.mark.skipif(not _is_hopper(), reason="wgmma needs a Hopper GPU (sm_90a)")
def test_persistent_grid_of_the_wgmma_family():
    runtime = moejit.default_runtime()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    target = runtime.target_for(0)
    alone = moejit.kernel_spec("dsd", n=4096, k=114688, target=target, family="wgmma", tile="128x256x64.s4.w8x1")
    assert runtime.core.persistent_grid(alone, 10**6, 0) == sms   # one thread block per SM
    assert runtime.core.persistent_grid(alone, 7, 0) == 7         # at most one per tile
    for cluster in (2, 4):
        spec = moejit.kernel_spec("dsd", n=4096, k=114688, target=target, family="wgmma",
                                  tile=f"128x256x64.s4.w8x1.c{cluster}")
        grid = runtime.core.persistent_grid(spec, 10**6, 0)
        # Whole clusters, as many as run at once: never more blocks than SMs.
        assert 0 < grid <= sms and grid % cluster == 0
        assert runtime.core.persistent_grid(spec, 2 * cluster, 0) == 2 * cluster
    along_m = moejit.kernel_spec("dsd", n=4096, k=114688, target=target, family="wgmma", tile="128x256x64.s4.w8x1.c2x1")
    grid = runtime.core.persistent_grid(along_m, 10**6, 0)
    assert 0 < grid <= sms and grid % 2 == 0


@pytest.mark.skipif(not _is_hopper(), reason="wgmma needs a Hopper GPU (sm_90a)")
@pytest.mark.parametrize("tile", ["128x256x64.s4.w8x1.c2x1", "64x256x64.s4.w4x1.c2x1"])
def test_cluster_along_m_over_expert_rows(tile):
    """Tile rows paired by a cluster along M share B only where both reduce over the same
    block: the pairs of one expert share every step, pairs across two experts none, and an
    odd last tile row runs with an absent partner. dsd (y = h @ w2) and dsd with S^T (the
    weight gradient, with live rows) against float32, NaN-poisoned outputs."""
    gen = torch.Generator(device="cuda").manual_seed(7)
    dt = torch.bfloat16
    block = 128
    # 1, 2, 3, 0 and 1 blocks per expert: 7 block rows, pairs within and across experts, and
    # a last one alone.
    counts = torch.tensor([5, block + 1, 2 * block + 44, 0, block], device="cuda", dtype=torch.int32)
    topo = Topology.from_expert_counts(counts, block, 3 * block, zero_padding=True)
    sparse, clean = _padded_expert_blocks(topo, dt, gen, 0.0)
    b = _dense(topo.cols, 512, False, dt, gen)
    out = torch.full((topo.rows, 512), float("nan"), dtype=dt, device="cuda")
    ops.dsd(clean, b, out=out, family="wgmma", tile=tile)
    assert relative_error(out, clean.to_dense().float() @ b.float()) < 1e-2
    # The weight gradient: 15 ffn block columns (3 per expert): pairs within an expert and
    # across two, of different reductions, and a last one alone; each reduction ends at its
    # expert's last token.
    dy = _dense(topo.rows, 512, False, dt, gen)
    grad = torch.full((topo.cols, 512), float("nan"), dtype=dt, device="cuda")
    ops.dsd(sparse.t(), dy, out=grad, family="wgmma", tile=tile)
    torch.cuda.synchronize()
    assert not torch.isnan(grad).any()
    assert relative_error(grad, clean.t().to_dense().float() @ dy.float()) < 1e-2
