"""The expert products of a dMoE layer on a routing plan's topology, differentiable.

With MegaBlocks' weight layout (w1, w2: [experts * ffn, hidden]) and the gathered rows x
[plan rows, hidden]:
    h = expert_sdd(x, w1, plan)     block-sparse x @ w1.t()  ->  blocks [plan capacity, b, b]
    y = expert_dsd(h, w2, plan)     h @ w2                   ->  [plan rows, hidden]
and their gradients use the same three kernels as moejit.jit.layer_kernels lists:
    expert_sdd:  d x = expert_dsd(d h, w1),   d w1 = expert_dsd_t(d h, x)
    expert_dsd:  d h = expert_sdd(d y, w2),   d w2 = expert_dsd_t(h, d y)
where expert_dsd_t(h, y) = h.t() @ y. All are torch.library custom ops with fake
implementations; the blocks past the plan's live count are zeros (sdd writes them without
computing), so every output element is defined and deterministic.

The rows that pad each expert to whole blocks must hold zeros in x and in the gradients
that reach y (moejit.padded_gather and the scatter's gradient write them so): the plan's
topology records each block row's tokens (Topology.live_rows), and on Hopper the weight
gradients (expert_dsd_t) stop at each expert's last token instead of the block's end.
"""

from __future__ import annotations

import torch

from .. import ops
from .routing import RoutingPlan, check_plan, plan_layout


def _plan(plan: torch.Tensor, assignments: int, num_experts: int, block_size: int, ffn: int) -> RoutingPlan:
    return RoutingPlan(plan_layout(assignments, num_experts, block_size, ffn), plan)


@torch.library.custom_op("moejit::expert_sdd", mutates_args=())
def _expert_sdd(x: torch.Tensor, w: torch.Tensor, plan: torch.Tensor, assignments: int, num_experts: int,
                block_size: int, ffn_hidden_size: int) -> torch.Tensor:
    topology = _plan(plan, assignments, num_experts, block_size, ffn_hidden_size).topology
    return ops.sdd(x.contiguous(), w.contiguous().t(), topology).data


@_expert_sdd.register_fake
def _(x, w, plan, assignments, num_experts, block_size, ffn_hidden_size):
    layout = plan_layout(assignments, num_experts, block_size, ffn_hidden_size)
    return x.new_empty(layout.max_nnz, block_size, block_size)


@torch.library.custom_op("moejit::expert_dsd", mutates_args=())
def _expert_dsd(h: torch.Tensor, w: torch.Tensor, plan: torch.Tensor, assignments: int, num_experts: int,
                block_size: int, ffn_hidden_size: int) -> torch.Tensor:
    topology = _plan(plan, assignments, num_experts, block_size, ffn_hidden_size).topology
    return ops.dsd(ops.BlockSparseMatrix(h.contiguous(), topology), w.contiguous())


@_expert_dsd.register_fake
def _(h, w, plan, assignments, num_experts, block_size, ffn_hidden_size):
    layout = plan_layout(assignments, num_experts, block_size, ffn_hidden_size)
    return w.new_empty(layout.rows, w.shape[1])


@torch.library.custom_op("moejit::expert_dsd_t", mutates_args=())
def _expert_dsd_t(h: torch.Tensor, y: torch.Tensor, plan: torch.Tensor, assignments: int, num_experts: int,
                  block_size: int, ffn_hidden_size: int) -> torch.Tensor:
    routing = _plan(plan, assignments, num_experts, block_size, ffn_hidden_size)
    if routing.layout.rows == 0:
        # No row to reduce over (an empty batch with a single expert): nothing for a kernel,
        # and TMA cannot describe an empty operand.
        return y.new_zeros(num_experts * ffn_hidden_size, y.shape[1])
    return ops.dsd(ops.BlockSparseMatrix(h.contiguous(), routing.topology).t(), y.contiguous())


@_expert_dsd_t.register_fake
def _(h, y, plan, assignments, num_experts, block_size, ffn_hidden_size):
    return y.new_empty(num_experts * ffn_hidden_size, y.shape[1])


def _setup(ctx, inputs, output):
    first, w, plan, *layout_args = inputs
    ctx.save_for_backward(first, w, plan)
    ctx.layout_args = tuple(layout_args)


def _sdd_backward(ctx, grad_h):
    x, w, plan = ctx.saved_tensors
    grad_h = grad_h.contiguous()
    grad_x = torch.ops.moejit.expert_dsd(grad_h, w, plan, *ctx.layout_args) if ctx.needs_input_grad[0] else None
    grad_w = torch.ops.moejit.expert_dsd_t(grad_h, x, plan, *ctx.layout_args) if ctx.needs_input_grad[1] else None
    return grad_x, grad_w, None, None, None, None, None


def _dsd_backward(ctx, grad_y):
    h, w, plan = ctx.saved_tensors
    grad_y = grad_y.contiguous()
    grad_h = torch.ops.moejit.expert_sdd(grad_y, w, plan, *ctx.layout_args) if ctx.needs_input_grad[0] else None
    grad_w = torch.ops.moejit.expert_dsd_t(h, grad_y, plan, *ctx.layout_args) if ctx.needs_input_grad[1] else None
    return grad_h, grad_w, None, None, None, None, None


def _no_double_backward(ctx, grad):
    raise RuntimeError("moejit::expert_dsd_t (a weight gradient) is not differentiable: "
                       "double backward through a moejit.dMoE layer is not supported")


_expert_sdd.register_autograd(_sdd_backward, setup_context=_setup)
_expert_dsd.register_autograd(_dsd_backward, setup_context=_setup)
_expert_dsd_t.register_autograd(_no_double_backward, setup_context=_setup)


def _layout_args(plan: RoutingPlan) -> tuple[int, int, int, int]:
    l = plan.layout
    return (l.assignments, l.experts, l.block, l.ffn)


def _check_weight(name: str, w: torch.Tensor, plan: RoutingPlan, like: torch.Tensor) -> None:
    l = plan.layout
    if not isinstance(w, torch.Tensor) or w.dim() != 2 or w.shape[0] != l.experts * l.ffn:
        got = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
        raise ValueError(f"{name}: expected a [num_experts * ffn_hidden_size = {l.experts * l.ffn}, hidden] "
                         f"tensor, got {got}")
    if w.dtype != like.dtype or w.device != like.device:
        raise ValueError(f"{name}: expected dtype {like.dtype} on {like.device}, got {w.dtype} on {w.device}")


def expert_sdd(x: torch.Tensor, w: torch.Tensor, plan: RoutingPlan) -> torch.Tensor:
    """Block data [plan capacity, b, b] of x @ w.t() on the plan's topology."""
    if x.shape[0] != plan.layout.rows:
        raise ValueError(f"x.shape[0]={x.shape[0]}: expected the plan's {plan.layout.rows} rows")
    _check_weight("w", w, plan, x)
    check_plan("plan.buffer", plan.buffer, plan.layout, x.device)
    return torch.ops.moejit.expert_sdd(x, w, plan.buffer, *_layout_args(plan))


def expert_dsd(h: torch.Tensor, w: torch.Tensor, plan: RoutingPlan) -> torch.Tensor:
    """Dense [plan rows, hidden] = h @ w for block data h of the plan's topology."""
    l = plan.layout
    if tuple(h.shape) != (l.max_nnz, l.block, l.block):
        raise ValueError(f"h.shape={tuple(h.shape)}: expected the plan's block data {(l.max_nnz, l.block, l.block)}")
    _check_weight("w", w, plan, h)
    check_plan("plan.buffer", plan.buffer, l, h.device)
    return torch.ops.moejit.expert_dsd(h, w, plan.buffer, *_layout_args(plan))
