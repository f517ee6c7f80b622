"""Expert parallelism: the token exchange that lets each rank compute only its own experts.

    y, expert_counts, traffic = expert_parallel_moe(x, expert_weights, expert_indices, local_experts,
                                                    (w1, v1, w2), sharding, chunks=1)

On every rank of the group (sharding: moejit.layer.expert_sharding), after the router and top-k
on the rank's own tokens (the router is replicated, so that needs nothing from elsewhere):

 1. Records. A token goes ONCE to each rank holding at least one of its chosen experts
    (a record per token and destination rank), with the list of that rank's experts it
    chose (local ids, -1 for a choice elsewhere) and their router weights. With top-8 of
    128 experts over 8 ranks that is on average 4.7 rows to other ranks instead of 7 (one
    per expert), over 2 ranks 1.0 instead of 4 (moejit.layer.exchange_traffic).
 2. Counts first: one all_to_all of the records and assignments per destination (and
    chunk), then ONE HOST READ of those counts, since all_to_all_single takes its split
    sizes as host integers. The read is issued before the records are sorted, so on a GPU
    the sort runs while the host waits; the backward reuses the sizes and reads nothing.
    It is why an expert-parallel call cannot be captured in a CUDA graph
    (docs/expert-parallel.md has the measurement plan for the alternatives).
 3. Dispatch: all_to_all_single of the records (token row, with the ids and weights packed
    behind it in the same rows, so one collective carries both).
 4. Expand on the expert rank: each received record becomes one assignment per local
    expert it lists; `local_experts(rows, expert_ids, params)` computes them (dMoE: its
    routing kernels by local expert id and its block-sparse products), and the results of
    one record are summed with their router weights (float32 or wider) into ONE row.
 5. Combine: all_to_all_single of those rows back; the token's rank adds its records' rows.
The backward mirrors it with the split sizes reversed: the gradient of each returned row
travels to the expert rank once, and the gradient of each record's row and of its weights
travels back once. Every step is an ordinary autograd operation of the caller's graph (the
two collectives are autograd Functions), so retain_graph, saved-tensor hooks (offloading,
activation checkpointing) and torch.no_grad (no graph at all) behave as for any layer.

Overlap (chunks > 1). The rank's tokens are split into `chunks` contiguous parts, each with
its own dispatch and combine, all launched asynchronously: part c+1's dispatch and part
c-1's combine are in flight while part c's experts compute. With NCCL the collectives run
on NCCL's stream and the experts on the caller's stream, so they overlap on the GPU; the
backward's collectives are launched as soon as their gradients exist and waited for only
where their results are used, so it pipelines the same way. A part is a whole all_to_all,
so this pays only when a part's exchange is large enough to hide its latency.

Every rank of the group must call with the same `chunks` (collectives must match), the same
dtypes and the same need for gradients; every rank issues the same sequence of collectives
whatever its tokens, including ranks with no tokens at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .exchange_traffic import ExchangeTraffic
from .expert_sharding import ExpertSharding

LocalExperts = Callable[[torch.Tensor, torch.Tensor, Sequence[torch.Tensor]], torch.Tensor]


def chunk_boundaries(tokens: int, chunks: int) -> list[int]:
    """First token of each of `chunks` contiguous parts of `tokens`, and `tokens` at the end
    (sizes differ by at most one; never fewer parts than asked, so that ranks with few or no
    tokens issue as many collectives as the others)."""
    if not isinstance(chunks, int) or isinstance(chunks, bool) or chunks < 1:
        raise ValueError(f"chunks={chunks!r}: expected a positive integer")
    return [c * tokens // chunks for c in range(chunks + 1)]


@dataclass(frozen=True)
class ExchangePlan:
    """The host integers of one call, from its one read of the counts: per chunk, the
    records sent to each rank, received from each rank, and the assignments received."""

    rank: int
    send_records: tuple[tuple[int, ...], ...]      # [chunk][destination rank]
    receive_records: tuple[tuple[int, ...], ...]   # [chunk][source rank]
    receive_assignments: tuple[int, ...]           # [chunk]

    @classmethod
    def from_counts(cls, sent: list, received: list, rank: int) -> "ExchangePlan":
        """sent [W][chunks][2], received [W][chunks][2]: (records, assignments) per rank and chunk."""
        chunks = range(len(sent[0]))
        return cls(rank, tuple(tuple(per_rank[c][0] for per_rank in sent) for c in chunks),
                   tuple(tuple(per_rank[c][0] for per_rank in received) for c in chunks),
                   tuple(sum(per_rank[c][1] for per_rank in received) for c in chunks))

    @property
    def chunks(self) -> int:
        return len(self.send_records)

    def records_sent(self, chunk: int) -> int:
        return sum(self.send_records[chunk])

    def traffic(self, tokens: int, row_bytes: int, metadata_bytes: int, grad_metadata_bytes: int) -> ExchangeTraffic:
        kept = sum(records[self.rank] for records in self.send_records)
        return ExchangeTraffic(tokens=tokens, rows_sent=sum(map(sum, self.send_records)) - kept,
                               rows_received=sum(map(sum, self.receive_records)) - kept, rows_kept=kept,
                               row_bytes=row_bytes, metadata_bytes=metadata_bytes,
                               grad_metadata_bytes=grad_metadata_bytes)


# --- moving rows with their metadata ---------------------------------------------------------

def _packed_width(row_dtype: torch.dtype, extras: Sequence[tuple[int, torch.dtype]]) -> int:
    """Elements of row_dtype that the extras' bytes take behind a row (padded up)."""
    nbytes = sum(width * dtype.itemsize for width, dtype in extras)
    return -(-nbytes // row_dtype.itemsize)


def _reinterpret(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """t [R, w] (contiguous) read as dtype: [R, w * t.itemsize / dtype.itemsize]. Also for
    R = 0, where Tensor.view(dtype) refuses."""
    if t.numel() == 0:
        return t.new_empty(t.shape[0], t.shape[1] * t.element_size() // dtype.itemsize, dtype=dtype)
    return t.view(dtype)


def _pack(rows: torch.Tensor, extras: Sequence[torch.Tensor]) -> torch.Tensor:
    """rows [R, H] with the bytes of each extra [R, w] appended: [R, H + packed width], in
    rows' dtype (bit patterns only: collectives copy bytes, nothing computes on them)."""
    if not extras:
        return rows.contiguous()
    meta = torch.cat([_reinterpret(t.contiguous(), torch.uint8) for t in extras], dim=1)
    meta = F.pad(meta, (0, -meta.shape[1] % rows.element_size()))
    return torch.cat([rows, _reinterpret(meta, rows.dtype)], dim=1)


def _unpack(buffer: torch.Tensor, hidden: int, extras: Sequence[tuple[int, torch.dtype]]) -> list[torch.Tensor]:
    """Inverse of _pack: [rows [R, hidden] (a view), extra [R, w] of its dtype, ...]."""
    out = [buffer[:, :hidden]]
    if extras:
        meta = _reinterpret(buffer[:, hidden:].contiguous(), torch.uint8)
        at = 0
        for width, dtype in extras:
            nbytes = width * dtype.itemsize
            out.append(_reinterpret(meta[:, at:at + nbytes].contiguous(), dtype))
            at += nbytes
    return out


class _Transfer:
    """One asynchronous all_to_all_single of packed rows, with fixed split sizes; holds the
    output and the collective's work only while it is in flight."""

    def __init__(self, group: Any, send_splits: Sequence[int], receive_splits: Sequence[int]) -> None:
        self.group, self.send_splits, self.receive_splits = group, list(send_splits), list(receive_splits)
        self._in_flight: Optional[tuple[torch.Tensor, Any]] = None

    def start(self, packed: torch.Tensor) -> None:
        if self._in_flight is not None:
            raise RuntimeError("expert exchange: a transfer started twice before finishing (collectives out of order)")
        out = packed.new_empty(sum(self.receive_splits), packed.shape[1])
        work = dist.all_to_all_single(out, packed, self.receive_splits, self.send_splits, group=self.group,
                                      async_op=True)
        self._in_flight = (out, work)

    def finish(self) -> torch.Tensor:
        out, work = self._in_flight
        self._in_flight = None
        work.wait()   # NCCL: the caller's stream waits for NCCL's; the host does not
        return out


class _Link:
    """A transfer of rows [R, hidden] with extra per-row tensors (router weights, expert ids)
    from this rank to the others, and the reverse transfer its backward makes: the rows'
    gradients with the gradients of the differentiable extras."""

    def __init__(self, group: Any, send_splits: Sequence[int], receive_splits: Sequence[int], hidden: int,
                 row_dtype: torch.dtype, extras: Sequence[tuple[int, torch.dtype, bool]]) -> None:
        self.forward = _Transfer(group, send_splits, receive_splits)
        self.backward = _Transfer(group, receive_splits, send_splits)
        self.hidden, self.row_dtype = hidden, row_dtype
        self.extras = [(width, dtype) for width, dtype, _ in extras]
        self.differentiable = [differentiable for _, _, differentiable in extras]
        self.grad_extras = [(width, dtype) for width, dtype, differentiable in extras if differentiable]

    def start(self, rows: torch.Tensor, extras: Sequence[torch.Tensor]) -> None:
        self.forward.start(_pack(rows, extras))

    def finish(self) -> list[torch.Tensor]:
        return _unpack(self.forward.finish(), self.hidden, self.extras)

    def start_backward(self, grad_rows: torch.Tensor, grad_extras: Sequence[torch.Tensor]) -> None:
        wanted = [g for g, differentiable in zip(grad_extras, self.differentiable) if differentiable]
        self.backward.start(_pack(grad_rows, wanted))

    def finish_backward(self) -> list[Optional[torch.Tensor]]:
        grad_rows, *found = _unpack(self.backward.finish(), self.hidden, self.grad_extras)
        found = iter(found)
        return [grad_rows, *(next(found) if differentiable else None for differentiable in self.differentiable)]

    @property
    def metadata_bytes(self) -> int:
        return _packed_width(self.row_dtype, self.extras) * self.row_dtype.itemsize

    @property
    def grad_metadata_bytes(self) -> int:
        return _packed_width(self.row_dtype, self.grad_extras) * self.row_dtype.itemsize


class _StartTransfer(torch.autograd.Function):
    """Launches a link's transfer; returns an empty token for _FinishTransfer, so that the
    caller can compute in between. Backward: waits for the reverse transfer that
    _FinishTransfer's backward launched, and returns its gradients. Saves no tensor."""

    @staticmethod
    def forward(ctx, link: _Link, rows: torch.Tensor, *extras: torch.Tensor):
        ctx.link = link
        link.start(rows, extras)
        return rows.new_empty(0)

    @staticmethod
    def backward(ctx, _token_grad: torch.Tensor):
        return (None, *ctx.link.finish_backward())


class _FinishTransfer(torch.autograd.Function):
    """Waits for the transfer the token stands for; returns (rows, *extras) received.
    Backward: launches the reverse transfer of the gradients without waiting for it."""

    @staticmethod
    def forward(ctx, link: _Link, token: torch.Tensor):
        ctx.link = link
        received = link.finish()
        ctx.mark_non_differentiable(*(t for t, d in zip(received[1:], link.differentiable) if not d))
        return tuple(received)

    @staticmethod
    def backward(ctx, grad_rows: torch.Tensor, *grad_extras: torch.Tensor):
        ctx.link.start_backward(grad_rows, grad_extras)
        return None, grad_rows.new_zeros(0)


def _start(link: _Link, rows: torch.Tensor, extras: Sequence[torch.Tensor], record: bool):
    """Launches the transfer: through autograd when `record` (gradients wanted), else directly."""
    if record:
        return _StartTransfer.apply(link, rows, *extras)
    link.start(rows, extras)
    return None


def _finish(link: _Link, token, record: bool) -> list[torch.Tensor]:
    return list(_FinishTransfer.apply(link, token)) if record else link.finish()


# --- the two sides -----------------------------------------------------------------------

class _HostCounts:
    """A device tensor's values on the host: the copy is issued at once, read when needed,
    so that GPU work enqueued in between runs while the host waits."""

    def __init__(self, counts: torch.Tensor) -> None:
        self._event = None
        if counts.is_cuda:
            self._host = torch.empty(counts.shape, dtype=counts.dtype, pin_memory=True)
            self._host.copy_(counts, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        else:
            self._host = counts

    def tolist(self) -> list:
        if self._event is not None:
            self._event.synchronize()
        return self._host.tolist()


def _connected_zeros(rows: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
    """Zeros of rows' shape that depend on rows and every parameter (each gets a zero
    gradient), for a rank that received no assignment: it still gets a gradient for every
    expert weight, as the layer holding every expert does, and runs the same backward
    collectives as the others. Sums of empty slices, so exactly zero even for inf/NaN."""
    anchor = rows.reshape(-1)[:0].sum()
    for p in params:
        anchor = anchor + p.reshape(-1)[:0].sum().to(anchor.dtype)
    return rows.new_zeros(rows.shape) + anchor


def _expert_rank_side(x_r: torch.Tensor, w_r: torch.Tensor, ids_r: torch.Tensor, assignments: int,
                      local_experts: LocalExperts, params: Sequence[torch.Tensor],
                      accumulate: torch.dtype) -> torch.Tensor:
    """Received records (rows x_r [N, H], weights w_r [N, k], local expert ids ids_r [N, k],
    -1 where the choice is on another rank) -> one row per record: the sum of its local
    experts' outputs times their router weights, in x_r's dtype."""
    records, top_k = ids_r.shape
    valid = (ids_r >= 0).reshape(-1)
    # The positions of the `assignments` valid choices, in order, without a host read: each
    # valid choice is scattered to its rank among the valid ones, the others to a spare slot.
    target = torch.where(valid, valid.cumsum(0) - 1, assignments)
    flat = torch.empty(assignments + 1, dtype=torch.int64, device=ids_r.device).scatter_(
        0, target, torch.arange(valid.numel(), device=ids_r.device))[:assignments]
    record = flat // top_k
    expert_ids = ids_r.reshape(-1).index_select(0, flat)
    weights = w_r.reshape(-1).index_select(0, flat)
    rows = x_r.index_select(0, record)
    out = local_experts(rows, expert_ids, params) if assignments else _connected_zeros(rows, params)
    # index_put with accumulate, not index_add: on CUDA it sorts the indices and adds in
    # order, so results are deterministic (index_add adds with atomics).
    summed = out.new_zeros(records, out.shape[1], dtype=accumulate).index_put(
        (record,), out.to(accumulate) * weights.to(accumulate).unsqueeze(1), accumulate=True)
    return summed.to(x_r.dtype)


def expert_parallel_moe(x: torch.Tensor, expert_weights: torch.Tensor, expert_indices: torch.Tensor,
                        local_experts: LocalExperts, params: Sequence[torch.Tensor], sharding: ExpertSharding, *,
                        chunks: int = 1) -> tuple[torch.Tensor, torch.Tensor, ExchangeTraffic]:
    """The experts' weighted sum for this rank's tokens, computed where the experts live.

    x [T, H] (T may be 0), expert_weights [T, k], expert_indices [T, k] global expert ids in
    [0, E); local_experts and params: see the module docstring. Returns (y [T, H] in x's
    dtype, expert_counts [E] int64: this rank's assignments per expert, for the
    load-balancing loss, traffic: what the exchange moved). Differentiable in x,
    expert_weights and params."""
    tokens, top_k = expert_indices.shape
    hidden = x.shape[1]
    world, per_rank, group = sharding.world_size, sharding.experts_per_rank, sharding.group
    boundaries = chunk_boundaries(tokens, chunks)
    chunks = len(boundaries) - 1
    device = x.device
    record = torch.is_grad_enabled() and (x.requires_grad or expert_weights.requires_grad
                                          or any(p.requires_grad for p in params))

    indices = expert_indices.to(torch.int64)
    flat = indices.reshape(-1)
    # Not torch.bincount: on CUDA it reads the largest index on the host.
    expert_counts = torch.zeros(sharding.num_experts, dtype=torch.int64, device=device).index_add_(
        0, flat, torch.ones_like(flat))
    destination = indices // per_rank                                                    # [T, k]
    chosen = torch.zeros(tokens, world, dtype=torch.bool, device=device).scatter_(1, destination, True)
    # Token t lies in the last chunk c with c * T // C <= t: c = ((t + 1) * C - 1) // T
    # (arithmetic, so no host-to-device copy of the boundaries).
    chunk_of = ((torch.arange(tokens, device=device) + 1) * chunks - 1) // max(tokens, 1)
    # Records ordered by (chunk, destination, token); key chunks * world for "no record".
    segment = chunk_of.unsqueeze(1) * world + torch.arange(world, device=device)
    key = torch.where(chosen, segment, chunks * world).reshape(-1)
    ones = torch.ones_like(key)
    records = torch.zeros(chunks * world + 1, dtype=torch.int64, device=device).index_add_(0, key, ones)
    assignment_segment = (chunk_of.unsqueeze(1) * world + destination).reshape(-1)
    assignments = torch.zeros(chunks * world, dtype=torch.int64, device=device).index_add_(
        0, assignment_segment, torch.ones_like(assignment_segment))
    counts = torch.stack([records[:-1], assignments], dim=1).view(chunks, world, 2).transpose(0, 1).contiguous()
    received = torch.empty_like(counts)
    dist.all_to_all_single(received, counts, group=group)   # counts first: [W, chunks, (records, assignments)]
    host = _HostCounts(torch.stack([counts, received]))
    order = torch.sort(key, stable=True).indices                # runs on the GPU while the host waits
    sent, got = host.tolist()                                   # the one host read of the call
    plan = ExchangePlan.from_counts(sent, got, sharding.rank)

    total = sum(plan.records_sent(c) for c in range(chunks))
    pair = order[:total]
    record_token = pair // world
    on_destination = destination.index_select(0, record_token) == (pair % world).unsqueeze(1)   # [R, k]
    ids = torch.where(on_destination, (indices % per_rank).index_select(0, record_token), -1).to(torch.int32)
    weights = torch.where(on_destination, expert_weights.index_select(0, record_token), 0)
    rows = x.index_select(0, record_token)

    accumulate = torch.promote_types(x.dtype, torch.float32)
    dispatch_extras = [(top_k, weights.dtype, True), (top_k, torch.int32, False)]
    dispatches = [_Link(group, plan.send_records[c], plan.receive_records[c], hidden, x.dtype, dispatch_extras)
                  for c in range(chunks)]
    combines = [_Link(group, plan.receive_records[c], plan.send_records[c], hidden, x.dtype, [])
                for c in range(chunks)]
    first = [0]
    for c in range(chunks):
        first.append(first[-1] + plan.records_sent(c))
    part = [slice(first[c], first[c + 1]) for c in range(chunks)]

    def start_dispatch(c):
        return _start(dispatches[c], rows[part[c]], [weights[part[c]], ids[part[c]]], record)

    tokens_in_flight = [start_dispatch(0)]
    returned = []
    for c in range(chunks):
        if c + 1 < chunks:   # the next part travels while this one computes
            tokens_in_flight.append(start_dispatch(c + 1))
        x_r, w_r, ids_r = _finish(dispatches[c], tokens_in_flight[c], record)
        y_r = _expert_rank_side(x_r, w_r, ids_r, plan.receive_assignments[c], local_experts, params, accumulate)
        returned.append(_start(combines[c], y_r, [], record))   # goes back while the next part computes
    results = torch.cat([_finish(combines[c], returned[c], record)[0] for c in range(chunks)])

    y = x.new_zeros(tokens, hidden, dtype=accumulate).index_put((record_token,), results.to(accumulate),
                                                              accumulate=True)   # deterministic, as above
    traffic = plan.traffic(tokens, hidden * x.element_size(), dispatches[0].metadata_bytes,
                           dispatches[0].grad_metadata_bytes)
    return y.to(x.dtype), expert_counts, traffic


__all__ = ["ExchangePlan", "LocalExperts", "chunk_boundaries", "expert_parallel_moe"]
