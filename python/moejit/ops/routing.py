"""Routing bookkeeping on the GPU: top-k expert choices -> expert-sorted rows + topology.

    plan = moejit.route(expert_indices, num_experts=E, block_size=128, ffn_hidden_size=F)
    plan.expert_counts     # [E] assignments per expert (int32)
    plan.bins              # [E+1] first row of each expert; bins[E] = rows in use
    plan.slots             # [T*k] row of each assignment (token t's j-th choice is t*k+j)
    plan.row_assignment    # [rows] assignment of each row, -1 for padding
    plan.topology          # the expert products' block-diagonal Topology (live_nnz, live_rows)

Three generated kernels (expert_histogram, expert_bins, expert_slots: a stable counting
sort, templates/moejit/routing.cuh) fill one int32 buffer. Its size is an upper bound that
depends only on the shapes (compiler/routing_layout.hpp), so routing never synchronises
with the host, works inside CUDA graphs, and has static shapes for torch.compile. The cost
is capacity: at most experts * (block - 1) rows beyond the tokens, which the products
skip (sdd exits past live_nnz; unused block rows are empty).

Expert indices must lie in [0, num_experts); torch.topk's always do, even for NaN scores.
`route` checks them on the device (torch._assert_async: no host synchronisation), so an
out-of-range index stops with a device-side assert instead of corrupting memory; dMoE
checks only the indices a caller forces, since its router's top-k are always in range.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch

from .. import _core
from ..jit.runtime import Runtime, default_runtime
from ..jit.specs import routing_kernel_spec
from .topology import Topology

_DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16"}
# Where the layer and its ops accept tensors: CUDA, where the kernels run, and meta, which
# carries shapes only (the dispatcher sends meta tensors to the custom ops' fake
# implementations, never to a kernel), so a model can be traced, by torch.compile and
# AOTAutograd too, forward and backward, on a machine without a GPU.
KERNEL_DEVICE_TYPES = ("cuda", "meta")
_ROUTING_CHUNK = 4096   # kRoutingChunk of templates/moejit/routing_params.h


_INT32_MAX = 2**31 - 1


class PlanLayout(NamedTuple):
    """Sizes and section offsets (int32 elements) of a routing plan buffer: the fields of
    _core.RoutingLayout (compiler/routing_layout.hpp), computed in plain Python arithmetic by
    plan_layout so that torch.compile can trace it (see plan_layout)."""

    assignments: int        # tokens * top_k
    experts: int
    block: int
    ffn: int
    max_block_rows: int
    rows: int               # max_block_rows * block: the expert-sorted rows it has room for
    block_cols: int         # experts * ffn / block
    max_nnz: int            # max_block_rows * ffn / block: the products' blocks it has room for
    chunks: int             # thread blocks of expert_histogram and expert_slots
    live_nnz: int
    expert_counts: int
    bins: int
    offsets: int
    offsets_t: int
    row_indices: int
    column_indices: int
    column_indices_t: int
    block_offsets_t: int
    live_rows: int
    slots: int
    row_assignment: int
    chunk_counts: int
    total: int              # int32 elements of the whole buffer


def _spec_error(field: str, value, expected: str) -> _core.SpecError:
    # The message of the C++ SpecError (compiler/spec_error.cpp), which routing_layout raises.
    return _core.SpecError(f"{field}={value}: expected {expected}")


def _plan_layout(assignments, num_experts: int, block_size: int, ffn_hidden_size: int) -> PlanLayout:
    """compiler/routing_layout.cpp's routing_layout, line for line (tested equal to it)."""
    if block_size not in (64, 128):
        raise _spec_error("block_size", block_size, "64 or 128")
    if num_experts < 1:
        raise _spec_error("num_experts", num_experts, "at least 1")
    if ffn_hidden_size <= 0 or ffn_hidden_size % block_size:
        raise _spec_error("ffn_hidden_size", ffn_hidden_size, f"a positive multiple of block_size ({block_size})")
    # A traced token count is a SymInt: its range is checked where the plan is made, by the
    # C++ layout in moejit::route's real implementation (a check here would add a guard to
    # the compiled graph for nothing).
    checked = isinstance(assignments, int)
    if checked and not 0 <= assignments <= _INT32_MAX:
        raise _spec_error("assignments", assignments, "0 to 2^31-1 (tokens * top_k)")
    max_block_rows = (assignments + num_experts * (block_size - 1)) // block_size
    rows = max_block_rows * block_size
    col_blocks = ffn_hidden_size // block_size
    block_cols = num_experts * col_blocks
    max_nnz = max_block_rows * col_blocks
    chunks = (assignments + _ROUTING_CHUNK - 1) // _ROUTING_CHUNK
    sizes = (1, num_experts, num_experts + 1, max_block_rows + 1, block_cols + 1, max_nnz, max_nnz, max_nnz, max_nnz,
             max_block_rows, assignments, rows, chunks * num_experts)
    starts = []
    at = 0
    for size in sizes:
        starts.append(at)
        at += size
    if checked and not (rows <= _INT32_MAX and max_nnz <= _INT32_MAX and at <= _INT32_MAX):
        raise _spec_error("assignments", assignments,
                          "few enough that the routing plan's int32 indices do not overflow")
    return PlanLayout(assignments, num_experts, block_size, ffn_hidden_size, max_block_rows, rows, block_cols,
                      max_nnz, chunks, *starts, at)


_cached_plan_layout = functools.lru_cache(maxsize=256)(_plan_layout)


def plan_layout(assignments, num_experts: int, block_size: int, ffn_hidden_size: int) -> PlanLayout:
    """The routing plan's layout for `assignments` = tokens * top_k (an int, or a SymInt
    under torch.compile with dynamic shapes); raises SpecError naming a bad argument.

    Plain arithmetic, so Dynamo traces it into no graph node at all, and the fake
    implementations size their outputs with it. Cached in eager mode (the layer asks once
    per call); under torch.compile it is computed uncached, since Dynamo cannot trace the
    lru_cache wrapper (and a SymInt is unhashable)."""
    if torch.compiler.is_compiling() or not isinstance(assignments, int):
        return _plan_layout(assignments, num_experts, block_size, ffn_hidden_size)
    return _cached_plan_layout(assignments, num_experts, block_size, ffn_hidden_size)


@functools.lru_cache(maxsize=256)
def routing_layout(assignments: int, num_experts: int, block_size: int, ffn_hidden_size: int) -> _core.RoutingLayout:
    """The C++ layout that the kernel launchers take (cached: each op's real implementation
    asks for it). Only the custom ops' real implementations may call it: Dynamo cannot trace
    a pybind11 constructor, so anything a compiled forward runs uses plan_layout instead."""
    return _core.RoutingLayout(assignments, num_experts, block_size, ffn_hidden_size)


def device_pointer(t: Optional[torch.Tensor]) -> int:
    """A tensor's address for a kernel parameter; 0 (nullptr) for None."""
    return 0 if t is None else t.data_ptr()


def launch_routing(op: str, layout: _core.RoutingLayout, plan: torch.Tensor, *, runtime: Optional[Runtime] = None,
                   top_k: int = 0, n: int = 0, dtype: str = "bf16", expert_indices: Optional[torch.Tensor] = None,
                   input: Optional[torch.Tensor] = None, output: Optional[torch.Tensor] = None,
                   weights: Optional[torch.Tensor] = None, weight_grad: Optional[torch.Tensor] = None,
                   rows_forward: Optional[torch.Tensor] = None, tokens: int = 0) -> None:
    """Launches routing kernel `op` on `plan`'s device and current stream."""
    runtime = runtime or default_runtime()
    device = plan.device.index if plan.device.index is not None else torch.cuda.current_device()
    spec = routing_kernel_spec(op, target=runtime.target_for(device), experts=layout.experts, top_k=top_k, n=n,
                               block_size=layout.block, dtype=dtype)
    ptr = device_pointer
    runtime.core.launch_routing(spec, layout, plan.data_ptr(), ptr(expert_indices), ptr(input), ptr(output),
                                ptr(weights), ptr(weight_grad), ptr(rows_forward), tokens, device,
                                torch.cuda.current_stream(plan.device).cuda_stream)


@dataclass(frozen=True, eq=False)
class RoutingPlan:
    """Where every assignment goes: views into one int32 buffer (see the module docstring)."""

    layout: PlanLayout
    buffer: torch.Tensor

    def _section(self, start: int, length: int) -> torch.Tensor:
        return self.buffer.narrow(0, start, length)

    @property
    def expert_counts(self) -> torch.Tensor:
        return self._section(self.layout.expert_counts, self.layout.experts)

    @property
    def bins(self) -> torch.Tensor:
        return self._section(self.layout.bins, self.layout.experts + 1)

    @property
    def slots(self) -> torch.Tensor:
        return self._section(self.layout.slots, self.layout.assignments)

    @property
    def row_assignment(self) -> torch.Tensor:
        return self._section(self.layout.row_assignment, self.layout.rows)

    @property
    def live_nnz(self) -> torch.Tensor:
        return self._section(self.layout.live_nnz, 1)

    @property
    def topology(self) -> Topology:
        l = self.layout
        return Topology(
            l.rows, l.block_cols * l.block, l.block,
            self._section(l.row_indices, l.max_nnz), self._section(l.column_indices, l.max_nnz),
            self._section(l.offsets, l.max_block_rows + 1), self._section(l.column_indices_t, l.max_nnz),
            self._section(l.offsets_t, l.block_cols + 1), self._section(l.block_offsets_t, l.max_nnz),
            live_nnz=self.live_nnz, live_rows=self._section(l.live_rows, l.max_block_rows),
        )

    def __repr__(self) -> str:
        l = self.layout
        return (f"RoutingPlan(assignments={l.assignments}, experts={l.experts}, block={l.block}, ffn={l.ffn}, "
                f"rows={l.rows} (capacity), device={self.buffer.device})")


def check_plan(name: str, plan: torch.Tensor, layout: PlanLayout, device: torch.device) -> None:
    if not isinstance(plan, torch.Tensor) or plan.dtype != torch.int32 or tuple(plan.shape) != (layout.total,):
        got = f"{tuple(plan.shape)} {plan.dtype}" if isinstance(plan, torch.Tensor) else type(plan).__name__
        raise ValueError(f"{name}: expected the int32 routing plan of {layout.total} elements that moejit.route made "
                         f"for these shapes, got {got}")
    if plan.device != device:
        raise ValueError(f"{name}.device={plan.device}: expected {device}")


def _check_route_args(expert_indices: torch.Tensor, num_experts: int, block_size: int, ffn_hidden_size: int) -> None:
    if not isinstance(expert_indices, torch.Tensor):
        raise TypeError(f"expert_indices: expected a torch.Tensor, got {type(expert_indices).__name__}")
    if expert_indices.dim() != 2:
        raise ValueError(f"expert_indices.shape={tuple(expert_indices.shape)}: expected [tokens, top_k]")
    if expert_indices.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"expert_indices.dtype={expert_indices.dtype}: expected torch.int64 (as torch.topk returns) "
                         "or torch.int32")
    if expert_indices.device.type not in KERNEL_DEVICE_TYPES:
        raise ValueError(f"expert_indices.device={expert_indices.device}: expected a CUDA device (or meta, for "
                         "shapes only)")
    if expert_indices.shape[1] > num_experts:
        raise ValueError(f"top_k={expert_indices.shape[1]}: expected at most num_experts={num_experts} "
                         "(a token picks distinct experts)")


@torch.library.custom_op("moejit::route", mutates_args=())
def _route_op(expert_indices: torch.Tensor, num_experts: int, block_size: int, ffn_hidden_size: int) -> torch.Tensor:
    layout = routing_layout(expert_indices.numel(), num_experts, block_size, ffn_hidden_size)
    indices = expert_indices.to(torch.int64).contiguous()
    plan = torch.empty(layout.total, dtype=torch.int32, device=expert_indices.device)
    launch_routing("expert_histogram", layout, plan, expert_indices=indices)
    launch_routing("expert_bins", layout, plan, n=ffn_hidden_size)
    launch_routing("expert_slots", layout, plan, expert_indices=indices)
    return plan


@_route_op.register_fake
def _(expert_indices, num_experts, block_size, ffn_hidden_size):
    layout = plan_layout(expert_indices.numel(), num_experts, block_size, ffn_hidden_size)
    return expert_indices.new_empty(layout.total, dtype=torch.int32)


def check_expert_indices(expert_indices: torch.Tensor, num_experts: int) -> None:
    """Stops on the device if an index lies outside [0, num_experts): the routing kernels
    would write out of bounds. No host synchronisation; a device-side assert ends the CUDA
    context, loudly."""
    torch._assert_async(((expert_indices >= 0) & (expert_indices < num_experts)).all(),
                        "moejit.route: expert_indices must lie in [0, num_experts)")


def route(expert_indices: torch.Tensor, num_experts: int, block_size: int, ffn_hidden_size: int, *,
          check_indices: bool = True) -> RoutingPlan:
    """Sorts the assignments by expert and builds the expert products' topology on the GPU.

    `expert_indices` [tokens, top_k] (int64 or int32, CUDA) in [0, num_experts), checked on
    the device unless `check_indices=False` (for indices torch.topk made, which are always in
    range: the check costs two small kernels per call). No host synchronisation. Not
    differentiable (indices have no gradient)."""
    _check_route_args(expert_indices, num_experts, block_size, ffn_hidden_size)
    if check_indices:
        check_expert_indices(expert_indices, num_experts)
    layout = plan_layout(expert_indices.numel(), num_experts, block_size, ffn_hidden_size)
    return RoutingPlan(layout, torch.ops.moejit.route(expert_indices, num_experts, block_size, ffn_hidden_size))
