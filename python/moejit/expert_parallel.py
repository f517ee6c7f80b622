"""Expert parallelism: the token exchange that lets each rank compute only its own experts.

    y, expert_counts = expert_parallel_moe(x, expert_weights, expert_indices, local_experts,
                                           (w1, v1, w2), sharding, chunks=1)

On every rank of the group (sharding: moejit.expert_sharding), after the router and top-k
on the rank's own tokens (the router is replicated, so that needs nothing from elsewhere):

 1. the rank's T*k assignments are sorted stably by expert id. Rank = expert // (E/W), so
    the sort groups them by destination rank as well: each rank's rows are contiguous.
 2. all_to_all of the per-expert counts (counts first), so every rank knows how many rows
    it will receive from each source for each of its experts.
 3. the host reads those counts: all_to_all_single with variable split sizes takes them as
    host integers, so ONE HOST SYNCHRONISATION PER FORWARD CALL is unavoidable (the
    backward reuses the forward's split sizes and adds none). It is why the expert-parallel
    layer, unlike the single-GPU one, cannot be captured in a CUDA graph.
 4. all_to_all_single of the token rows with those split sizes,
 5. the local experts compute on what arrived (the `local_experts` callable below),
 6. all_to_all_single of the results back to their source ranks,
 7. the source rank un-permutes and combines each token's top-k results with its router
    weights (in float32 or wider).
The backward mirrors it: the gradients of the results travel back to the expert ranks with
the split sizes reversed, the local experts' backward runs there, and the gradients of the
rows travel home. Only the rows cross ranks; each rank's expert weights get the gradient of
every token routed to them, from every rank.

The local computation is pluggable: `local_experts(rows, expert_ids, params) -> rows`
applies to every row the MLP of its local expert (expert_ids in [0, E/W)), with the
expert weights `params` given as arguments (not read from a closure: the exchange computes
their gradients itself). moejit.dMoE passes its block-sparse kernels (route by local
expert id, gather, products, un-permute); moejit.ReferenceMoE a plain-PyTorch loop over
experts, which is what the CPU tests run on the gloo backend.

Overlap (chunks > 1). The rank's local experts are split into `chunks` groups and the
exchange runs group by group: while the local experts of group c compute, the rows of
group c+1 are in flight, and group c's results go back while group c+1 computes; the
backward is pipelined the same way. Each group is a full all_to_all of its own, so this
pays only when a group's exchange is large enough to hide its latency (thousands of rows)
and the rank has several experts (chunks is capped at E/W: with one expert per rank, as
Mixtral on 8 GPUs, there is nothing to split). The default is 1 (no overlap). With NCCL
the collectives run on NCCL's stream and overlap the kernels on the caller's stream; with
gloo they run on gloo's thread.

Every rank of the group must call with the same `chunks` (collectives must match), and
every rank issues the same sequence of collectives whatever its tokens, including ranks
with no tokens at all.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.distributed as dist
from torch.autograd.graph import GradientEdge, get_gradient_edge

from .expert_sharding import ExpertSharding

LocalExperts = Callable[[torch.Tensor, torch.Tensor, Sequence[torch.Tensor]], torch.Tensor]


def chunk_boundaries(experts_per_rank: int, chunks: int) -> list[int]:
    """First local expert of each chunk, and experts_per_rank at the end (chunks capped at
    experts_per_rank; sizes differ by at most one)."""
    if not isinstance(chunks, int) or isinstance(chunks, bool) or chunks < 1:
        raise ValueError(f"chunks={chunks!r}: expected a positive integer")
    chunks = min(chunks, experts_per_rank)
    return [c * experts_per_rank // chunks for c in range(chunks + 1)]


class ExchangePlan:
    """Split sizes of one call's exchanges (host integers, read once) and, per chunk, the
    local expert id of every row this rank receives."""

    def __init__(self, send_counts: torch.Tensor, received_counts: torch.Tensor, boundaries: list[int],
                 world_size: int) -> None:
        # send_counts [W, E/W]: rows this rank sends to rank d for d's l-th expert.
        # received_counts [W, E/W]: rows this rank receives from rank s for its l-th expert.
        both = torch.stack([send_counts, received_counts]).tolist()   # the one host synchronisation
        self.send_splits: list[list[int]] = []
        self.receive_splits: list[list[int]] = []
        self.expert_ids: list[torch.Tensor] = []
        for start, stop in zip(boundaries, boundaries[1:]):
            self.send_splits.append([sum(both[0][d][start:stop]) for d in range(world_size)])
            self.receive_splits.append([sum(both[1][s][start:stop]) for s in range(world_size)])
            ids = torch.arange(start, stop, device=received_counts.device).repeat(world_size)
            self.expert_ids.append(torch.repeat_interleave(
                ids, received_counts[:, start:stop].reshape(-1), output_size=sum(self.receive_splits[-1])))

    @property
    def chunks(self) -> int:
        return len(self.send_splits)


def _start_all_to_all(rows: torch.Tensor, send_splits: list[int], receive_splits: list[int], group):
    """Starts an all_to_all_single of rows [sum(send_splits), H]; (output, work)."""
    out = rows.new_empty(sum(receive_splits), *rows.shape[1:])
    work = dist.all_to_all_single(out, rows.contiguous(), receive_splits, send_splits, group=group, async_op=True)
    return out, work


class _GraphInput(torch.autograd.Function):
    """rows as a non-leaf tensor of a local graph, whose gradient the exchange takes at this
    node (torch.autograd.grad with its GradientEdge; the node itself never runs). Not a
    leaf: a leaf's AccumulateGrad node holds the leaf's data for as long as the graph
    lives, which would keep the received rows alive outside the saved-tensor hooks even
    when the local experts do not save them. The anchor (a scalar leaf) only makes the
    result require a gradient."""

    @staticmethod
    def forward(ctx, anchor: torch.Tensor, rows: torch.Tensor):
        return rows.view_as(rows)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        raise AssertionError("the exchange takes the gradient of its local graph's input without running this node")


class _GraphHandle(torch.autograd.Function):
    """A tensor with no element whose graph starts at `out` (its one next edge): saved with
    ctx.save_for_backward, it keeps a local graph alive exactly as long as PyTorch keeps the
    exchange's saved tensors, without keeping out's data (the backward never reads it)."""

    @staticmethod
    def forward(ctx, out: torch.Tensor):
        return out.new_empty(0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        raise AssertionError("the exchange differentiates from the edge its handle points to, not through the handle")


def _outer_backward_keeps_graph() -> bool:
    """Whether the backward call running now retains the graph (retain_graph=True). Private
    PyTorch API (aot_autograd uses it for the same purpose); where it is missing, True: the
    local graphs are then still freed with the exchange's saved tensors, only a little later."""
    keeps = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    return True if keeps is None else bool(keeps())


class _ExpertExchange(torch.autograd.Function):
    """rows [sent rows, H] in destination order -> the local experts' results [sent rows, H]
    in the same order, computed on the ranks that hold the experts (steps 4-6).

    Autograd is off inside Function.forward, so forward records the local experts' graph of
    each chunk itself (under enable_grad, on a non-leaf alias of the received rows and on
    detached aliases of the parameters) and backward differentiates it with
    torch.autograd.grad. What each local graph keeps for its backward is saved by its own
    operations, so saved-tensor hooks (offloading, checkpointing) see it as they see any
    other operation's. The exchange itself keeps no tensor data: per chunk one handle with
    no element, which holds the local graph and goes through ctx.save_for_backward, and the
    gradient edges of the graph's inputs (graph nodes that hold no activation: the rows'
    _GraphInput and the AccumulateGrad nodes of the parameters' aliases). So the local
    graphs live exactly as long as the exchange's saved tensors: a backward with
    retain_graph=True keeps them (the local backward retains too) and a second backward
    gives the same gradients; otherwise PyTorch frees them after this backward and another
    raises its usual "Trying to backward through the graph a second time"."""

    @staticmethod
    def forward(ctx, plan: ExchangePlan, group, local_experts: LocalExperts, rows: torch.Tensor, *params):
        record = any(ctx.needs_input_grad)   # autograd is off in here: build the local graphs ourselves
        sends = rows.split([sum(s) for s in plan.send_splits])
        handles, edges, results = [], [], []
        pending = _start_all_to_all(sends[0], plan.send_splits[0], plan.receive_splits[0], group)
        for c in range(plan.chunks):
            received, work = pending
            if c + 1 < plan.chunks:   # the next chunk travels while this one computes
                pending = _start_all_to_all(sends[c + 1], plan.send_splits[c + 1], plan.receive_splits[c + 1], group)
            work.wait()
            if not record:
                out = local_experts(received, plan.expert_ids[c], params)
            else:
                with torch.enable_grad():
                    if ctx.needs_input_grad[3]:
                        anchor = received.new_zeros((), requires_grad=True)
                        received = _GraphInput.apply(anchor, received)
                    inputs = tuple(p.detach().requires_grad_(p.requires_grad) for p in params)
                    out = local_experts(received, plan.expert_ids[c], inputs)
                    handles.append(_GraphHandle.apply(out) if out.requires_grad else None)
                edges.append([get_gradient_edge(t) if t.requires_grad else None for t in (received, *inputs)])
            results.append(_start_all_to_all(out.detach(), plan.receive_splits[c], plan.send_splits[c], group))
        for _, work in results:
            work.wait()
        ctx.save_for_backward(*handles)
        ctx.plan, ctx.group, ctx.edges = plan, group, edges
        ctx.rows_dtype = rows.dtype
        ctx.param_shapes = [(p.shape, p.dtype, p.device) for p in params]
        return torch.cat([out for out, _ in results])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        # First, before any collective: after the graph was freed this raises PyTorch's
        # "backward through the graph a second time" on every rank alike.
        handles = ctx.saved_tensors
        retain = _outer_backward_keeps_graph()
        plan, group = ctx.plan, ctx.group
        grads = grad.contiguous().split([sum(s) for s in plan.send_splits])
        param_grads = [None] * len(ctx.param_shapes)
        returned = []
        pending = _start_all_to_all(grads[0], plan.send_splits[0], plan.receive_splits[0], group)
        for c in range(plan.chunks):
            grad_out, work = pending
            if c + 1 < plan.chunks:
                pending = _start_all_to_all(grads[c + 1], plan.send_splits[c + 1], plan.receive_splits[c + 1], group)
            work.wait()
            handle, edges = handles[c], ctx.edges[c]
            wanted = [e for e in edges if e is not None]
            if handle is not None and wanted:
                root = GradientEdge(*handle.grad_fn.next_functions[0])   # the local experts' output
                found = iter(torch.autograd.grad([root], wanted, [grad_out], retain_graph=retain, allow_unused=True))
            else:   # the local experts' output depends on nothing that needs a gradient
                found = iter([None] * len(wanted))
            grad_rows, *grad_params = [next(found) if e is not None else None for e in edges]
            if grad_rows is None:
                grad_rows = grad_out.new_zeros(grad_out.shape, dtype=ctx.rows_dtype)
            for i, g in enumerate(grad_params):
                if g is not None:
                    param_grads[i] = g if param_grads[i] is None else param_grads[i] + g
            returned.append(_start_all_to_all(grad_rows, plan.receive_splits[c], plan.send_splits[c], group))
        for _, work in returned:
            work.wait()
        grad_rows = torch.cat([g for g, _ in returned])
        # A shard that received no row still gets a gradient (zeros), as the same rows of a
        # layer holding every expert do.
        param_grads = [g if g is not None or not needed else torch.zeros(shape, dtype=dtype, device=device)
                       for g, needed, (shape, dtype, device) in zip(param_grads, ctx.needs_input_grad[4:],
                                                                     ctx.param_shapes)]
        return (None, None, None, grad_rows if ctx.needs_input_grad[3] else None, *param_grads)


def expert_parallel_moe(x: torch.Tensor, expert_weights: torch.Tensor, expert_indices: torch.Tensor,
                        local_experts: LocalExperts, params: Sequence[torch.Tensor], sharding: ExpertSharding, *,
                        chunks: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The experts' weighted sum for this rank's tokens, computed where the experts live.

    x [T, H] (T may be 0), expert_weights [T, k], expert_indices [T, k] global expert ids in
    [0, E); local_experts and params: see the module docstring. Returns (y [T, H] in x's
    dtype, expert_counts [E] int64: this rank's assignments per expert, for the
    load-balancing loss). Differentiable in x, expert_weights and params."""
    tokens, top_k = expert_indices.shape
    world, per_rank = sharding.world_size, sharding.experts_per_rank
    boundaries = chunk_boundaries(per_rank, chunks)
    flat = expert_indices.reshape(-1).to(torch.int64)
    # Sort key: chunk of the local expert, then expert id (so then rank): each chunk's rows
    # are contiguous and grouped by destination. With one chunk it is the expert id.
    key = flat
    if len(boundaries) > 2:
        chunk_of = torch.tensor([c for c, (start, stop) in enumerate(zip(boundaries, boundaries[1:]))
                                 for _ in range(start, stop)], device=x.device)
        key = chunk_of[flat % per_rank] * sharding.num_experts + flat
    order = torch.sort(key, stable=True).indices
    # Not torch.bincount: on CUDA it reads the largest index on the host.
    expert_counts = torch.zeros(sharding.num_experts, dtype=torch.int64, device=x.device).index_add_(
        0, flat, torch.ones_like(flat))
    received_counts = torch.empty_like(expert_counts)
    dist.all_to_all_single(received_counts, expert_counts, group=sharding.group)   # counts first
    plan = ExchangePlan(expert_counts.view(world, per_rank), received_counts.view(world, per_rank), boundaries, world)

    rows = x.index_select(0, order // top_k)
    results = _ExpertExchange.apply(plan, sharding.group, local_experts, rows, *params)
    # Back to assignment order (token t's j-th choice at t*k+j), then the weighted sum.
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    accumulate = torch.promote_types(x.dtype, torch.float32)
    per_choice = results.index_select(0, inverse).view(tokens, top_k, x.shape[1]).to(accumulate)
    y = (per_choice * expert_weights.to(accumulate).unsqueeze(-1)).sum(dim=1)
    return y.to(x.dtype), expert_counts


__all__ = ["ExchangePlan", "LocalExperts", "chunk_boundaries", "expert_parallel_moe"]
