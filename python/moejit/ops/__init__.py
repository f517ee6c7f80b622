"""Block-sparse products on torch tensors: sdd, dsd and dds.

A dense operand may be a row-major matrix or a transposed view of one (`w.t()`); the
transpose is compiled into the kernel, nothing is copied. A sparse operand is a
`BlockSparseMatrix` (blocks + topology), or its transposed view `.t()`.

Every op takes `tile=` (a TileConfig or its text) and `family=` ("mma" or "wgmma") to
pick the implementation; by default the tuned one, else the heuristic's (the wgmma
family on Hopper; MOEJIT_FAMILY=mma|wgmma overrides the family).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .. import _core
from .routing import device_pointer
from ..jit.runtime import Runtime, default_runtime
from ..jit.specs import FamilyLike, TileLike, kernel_spec
from .topology import Topology

_DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass(frozen=True, eq=False)
class BlockSparseMatrix:
    """A block-sparse matrix: `data` [nnz, b, b] holds the nonzero blocks in the
    topology's row-major order. `transposed` marks a transposed view of the same data."""

    data: torch.Tensor
    topology: Topology
    transposed: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        rows, cols = self.topology.rows, self.topology.cols
        return (cols, rows) if self.transposed else (rows, cols)

    @property
    def dtype(self) -> torch.dtype:
        return self.data.dtype

    @property
    def device(self) -> torch.device:
        return self.data.device

    def t(self) -> "BlockSparseMatrix":
        return BlockSparseMatrix(self.data, self.topology, not self.transposed)

    def to_dense(self) -> torch.Tensor:
        """The full matrix (zeros outside the blocks): for tests and debugging."""
        topo, b = self.topology, self.topology.block_size
        dense = torch.zeros(topo.block_rows, topo.block_cols, b, b, dtype=self.data.dtype, device=self.data.device)
        dense[topo.row_indices.long(), topo.column_indices.long()] = self.data
        dense = dense.permute(0, 2, 1, 3).reshape(topo.rows, topo.cols)
        return dense.t() if self.transposed else dense

    def __repr__(self) -> str:
        return f"BlockSparseMatrix(shape={self.shape}, dtype={self.dtype}, transposed={self.transposed}, {self.topology})"


def _check_dense(name: str, t: object) -> tuple[bool, int]:
    """Validates a dense operand; returns (transposed, leading dimension)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 2:
        raise ValueError(f"{name}.dim()={t.dim()}: expected a 2-D matrix")
    if t.dtype not in _DTYPES:
        raise ValueError(f"{name}.dtype={t.dtype}: expected torch.bfloat16 or torch.float16")
    rows, cols = t.shape
    s0, s1 = t.stride()
    if s1 == 1 and (s0 >= cols or rows <= 1):
        transposed, ld = False, max(s0, cols)
    elif s0 == 1 and (s1 >= rows or cols <= 1):
        transposed, ld = True, max(s1, rows)
    else:
        raise ValueError(
            f"{name}.stride()={t.stride()}: expected a row-major matrix (stride ({cols}, 1) or a larger row pitch) "
            f"or a transposed view of one (stride (1, {rows}) or larger): call .contiguous() first"
        )
    # cp.async moves 16-byte chunks: rows must start on 16-byte boundaries.
    if ld % 8 != 0:
        raise ValueError(f"{name}: leading dimension {ld} is not a multiple of 8 elements (16 bytes)")
    if t.data_ptr() % 16 != 0:
        raise ValueError(f"{name}.data_ptr() is not 16-byte aligned: pass a tensor that starts on a 16-byte boundary")
    return transposed, ld


def _check_sparse(name: str, s: object) -> None:
    if not isinstance(s, BlockSparseMatrix):
        raise TypeError(f"{name}: expected a moejit.BlockSparseMatrix, got {type(s).__name__}")
    b, nnz = s.topology.block_size, s.topology.nnz
    if s.data.dtype not in _DTYPES:
        raise ValueError(f"{name}.data.dtype={s.data.dtype}: expected torch.bfloat16 or torch.float16")
    if tuple(s.data.shape) != (nnz, b, b) or not s.data.is_contiguous():
        raise ValueError(
            f"{name}.data: expected a contiguous tensor of shape ({nnz}, {b}, {b}) (nnz, block, block), "
            f"got shape {tuple(s.data.shape)}{'' if s.data.is_contiguous() else ' (not contiguous)'}"
        )
    if s.data.device != s.topology.device:
        raise ValueError(f"{name}.topology.device={s.topology.device}: expected the data's device {s.data.device}")


def _common_device(**tensors: torch.Tensor) -> torch.device:
    devices = {name: t.device for name, t in tensors.items()}
    first_name, first = next(iter(devices.items()))
    if first.type != "cuda":
        raise ValueError(f"{first_name}.device={first}: expected a CUDA device")
    for name, device in devices.items():
        if device != first:
            raise ValueError(f"{name}.device={device}: expected {first}, the device of {first_name}")
    return first


def _common_dtype(**tensors: torch.Tensor) -> str:
    first_name, first = next(iter(tensors.items()))
    for name, t in tensors.items():
        if t.dtype != first.dtype:
            raise ValueError(f"{name}.dtype={t.dtype}: expected {first.dtype}, the dtype of {first_name}")
    return _DTYPES[first.dtype]


def _output(name: str, out: Optional[torch.Tensor], shape: tuple, dtype: torch.dtype,
            device: torch.device) -> torch.Tensor:
    """A new output tensor, or the caller's `out` after checking it can receive the result."""
    if out is None:
        return torch.empty(shape, dtype=dtype, device=device)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(out).__name__}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{name}.shape={tuple(out.shape)}: expected {tuple(shape)}")
    if out.dtype != dtype:
        raise ValueError(f"{name}.dtype={out.dtype}: expected {dtype}, the dtype of the operands")
    if not out.is_contiguous():
        raise ValueError(f"{name}: expected a contiguous tensor")
    if out.data_ptr() % 16 != 0:
        raise ValueError(f"{name}.data_ptr() is not 16-byte aligned")
    return out


def _check_extent(what: str, actual: int, expected: int, because: str) -> None:
    if actual != expected:
        raise ValueError(f"{what}={actual}: expected {expected} ({because})")


def _tuned(runtime: Runtime, spec: _core.KernelSpec, tile: TileLike, device: torch.device,
           topology: Topology) -> _core.KernelSpec:
    """An explicit tile is used as given; otherwise the tuned one for this GPU and token
    bucket, else the heuristic (see Runtime.tuned_spec). The family is the spec's."""
    if tile is not None:
        return spec
    return runtime.tuned_spec(spec, device.index or 0, topology.token_bucket())


def _launch(
    runtime: Runtime,
    spec: _core.KernelSpec,
    device: torch.device,
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    lda: int,
    ldb: int,
    ldc: int,
    topo: Topology,
) -> None:
    runtime.core.launch_bsr_gemm(
        spec,
        a.data_ptr(), b.data_ptr(), c.data_ptr(), lda, ldb, ldc,
        topo.row_indices.data_ptr(), topo.column_indices.data_ptr(), topo.offsets.data_ptr(),
        topo.column_indices_t.data_ptr(), topo.offsets_t.data_ptr(), topo.block_offsets_t.data_ptr(),
        topo.nnz, topo.block_rows, topo.block_cols,
        device.index if device.index is not None else torch.cuda.current_device(),
        torch.cuda.current_stream(device).cuda_stream,
        device_pointer(topo.live_nnz),
        device_pointer(topo.live_rows),
    )


def sdd(
    a: torch.Tensor,
    b: torch.Tensor,
    topology: Topology,
    *,
    out: Optional[torch.Tensor] = None,
    tile: TileLike = None,
    family: FamilyLike = None,
    runtime: Optional[Runtime] = None,
) -> BlockSparseMatrix:
    """C = a @ b computed only on the nonzero blocks of `topology` (rows(a) x cols(b)).

    `out`, if given, receives the blocks: a contiguous [nnz, block, block] tensor."""
    runtime = runtime or default_runtime()
    trans_a, lda = _check_dense("a", a)
    trans_b, ldb = _check_dense("b", b)
    if not isinstance(topology, Topology):
        raise TypeError(f"topology: expected a moejit.Topology, got {type(topology).__name__}")
    dtype = _common_dtype(a=a, b=b)
    _check_extent("a.shape[0]", a.shape[0], topology.rows, "topology.rows")
    _check_extent("b.shape[0]", b.shape[0], a.shape[1], "a.shape[1], the reduction extent")
    _check_extent("b.shape[1]", b.shape[1], topology.cols, "topology.cols")
    bs = topology.block_size
    out = _output("out", out, (topology.nnz, bs, bs), a.dtype, a.device)
    device = _common_device(a=a, b=b, topology=topology.row_indices, out=out)
    spec = kernel_spec("sdd", m=topology.rows, n=topology.cols, k=a.shape[1], trans_a=trans_a, trans_b=trans_b,
                       dtype=dtype, block_size=topology.block_size, target=runtime.target_for(device.index or 0),
                       tile=tile, family=family)
    spec = _tuned(runtime, spec, tile, device, topology)
    _launch(runtime, spec, device, a, b, out, lda, ldb, bs, topology)
    return BlockSparseMatrix(out, topology)


def dsd(
    sparse: BlockSparseMatrix,
    b: torch.Tensor,
    *,
    out: Optional[torch.Tensor] = None,
    tile: TileLike = None,
    family: FamilyLike = None,
    runtime: Optional[Runtime] = None,
) -> torch.Tensor:
    """Dense C = sparse @ b; `sparse` may be a transposed view (`s.t()`).

    `out`, if given, receives C: a contiguous [M, N] tensor."""
    runtime = runtime or default_runtime()
    _check_sparse("sparse", sparse)
    trans_b, ldb = _check_dense("b", b)
    topo = sparse.topology
    dtype = _common_dtype(sparse=sparse.data, b=b)
    m, k = sparse.shape
    _check_extent("b.shape[0]", b.shape[0], k, "sparse.shape[1], the reduction extent")
    n = b.shape[1]
    out = _output("out", out, (m, n), b.dtype, b.device)
    device = _common_device(sparse=sparse.data, b=b, out=out)
    spec = kernel_spec("dsd", m=m, n=n, k=k, trans_a=sparse.transposed, trans_b=trans_b, dtype=dtype,
                       block_size=topo.block_size, target=runtime.target_for(device.index or 0), tile=tile,
                       family=family)
    spec = _tuned(runtime, spec, tile, device, topo)
    _launch(runtime, spec, device, sparse.data, b, out, 0, ldb, n, topo)
    return out


def dds(
    a: torch.Tensor,
    sparse: BlockSparseMatrix,
    *,
    out: Optional[torch.Tensor] = None,
    tile: TileLike = None,
    family: FamilyLike = None,
    runtime: Optional[Runtime] = None,
) -> torch.Tensor:
    """Dense C = a @ sparse; `sparse` may be a transposed view (`s.t()`).

    `out`, if given, receives C: a contiguous [M, N] tensor."""
    runtime = runtime or default_runtime()
    trans_a, lda = _check_dense("a", a)
    _check_sparse("sparse", sparse)
    topo = sparse.topology
    dtype = _common_dtype(a=a, sparse=sparse.data)
    k, n = sparse.shape
    _check_extent("a.shape[1]", a.shape[1], k, "sparse.shape[0], the reduction extent")
    m = a.shape[0]
    out = _output("out", out, (m, n), a.dtype, a.device)
    device = _common_device(a=a, sparse=sparse.data, out=out)
    spec = kernel_spec("dds", m=m, n=n, k=k, trans_a=trans_a, trans_b=sparse.transposed, dtype=dtype,
                       block_size=topo.block_size, target=runtime.target_for(device.index or 0), tile=tile,
                       family=family)
    spec = _tuned(runtime, spec, tile, device, topo)
    _launch(runtime, spec, device, a, sparse.data, out, lda, 0, n, topo)
    return out
