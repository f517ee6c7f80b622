"""Permutation between token order and a routing plan's expert-sorted, block-padded rows.

    rows = moejit.padded_gather(x, plan, top_k)          # [plan rows, H]: one copy per choice
    y    = moejit.weighted_scatter(rows, plan, weights)  # [tokens, H]: sum_j weights[t, j] * rows[slot]

Both are torch.library custom ops with registered autograd and fake implementations, so
they work under autograd, torch.compile and CUDA graphs. The gradients:
  padded_gather     d x = weighted_scatter(d rows, weights=None)   (sums the top-k copies)
  weighted_scatter  d rows[r] = w[a] * d y[token(a)],  d w[a] = <d y[token(a)], rows[r]>
                    (one generated kernel, weighted_scatter_grad; padding rows get zeros)
Kernels: templates/moejit/permutation.cuh. Rows past the plan's rows in use are zeros after
a gather; a scatter never reads them.
"""

from __future__ import annotations

from typing import Optional

import torch

from .routing import KERNEL_DEVICE_TYPES, RoutingPlan, check_plan, launch_routing, plan_layout, routing_layout

_DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16"}


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """Contiguous and 16-byte aligned: the kernels move rows in 16-byte vectors."""
    t = t.contiguous()
    return t if t.data_ptr() % 16 == 0 else t.clone()


# --- custom ops ---------------------------------------------------------------------------
# Layout arguments (num_experts, top_k, block_size, ffn_hidden_size) travel with every op:
# with the token count they determine the plan buffer's layout (plan_layout).


@torch.library.custom_op("moejit::padded_gather", mutates_args=())
def _padded_gather(x: torch.Tensor, plan: torch.Tensor, num_experts: int, top_k: int, block_size: int,
                   ffn_hidden_size: int) -> torch.Tensor:
    layout = routing_layout(x.shape[0] * top_k, num_experts, block_size, ffn_hidden_size)
    out = torch.empty(layout.rows, x.shape[1], dtype=x.dtype, device=x.device)
    launch_routing("padded_gather", layout, plan, top_k=top_k, n=x.shape[1], dtype=_DTYPES[x.dtype],
                   input=_aligned(x), output=out, tokens=x.shape[0])
    return out


@_padded_gather.register_fake
def _(x, plan, num_experts, top_k, block_size, ffn_hidden_size):
    layout = plan_layout(x.shape[0] * top_k, num_experts, block_size, ffn_hidden_size)
    return x.new_empty(layout.rows, x.shape[1])


@torch.library.custom_op("moejit::weighted_scatter", mutates_args=())
def _weighted_scatter(rows: torch.Tensor, plan: torch.Tensor, weights: Optional[torch.Tensor], tokens: int,
                      num_experts: int, top_k: int, block_size: int, ffn_hidden_size: int) -> torch.Tensor:
    layout = routing_layout(tokens * top_k, num_experts, block_size, ffn_hidden_size)
    out = torch.empty(tokens, rows.shape[1], dtype=rows.dtype, device=rows.device)
    launch_routing("weighted_scatter", layout, plan, top_k=top_k, n=rows.shape[1], dtype=_DTYPES[rows.dtype],
                   input=_aligned(rows), output=out,
                   weights=None if weights is None else weights.float().contiguous(), tokens=tokens)
    return out


@_weighted_scatter.register_fake
def _(rows, plan, weights, tokens, num_experts, top_k, block_size, ffn_hidden_size):
    return rows.new_empty(tokens, rows.shape[1])


@torch.library.custom_op("moejit::weighted_scatter_grad", mutates_args=())
def _weighted_scatter_grad(grad: torch.Tensor, rows: torch.Tensor, plan: torch.Tensor, weights: torch.Tensor,
                           num_experts: int, top_k: int, block_size: int,
                           ffn_hidden_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = grad.shape[0]
    layout = routing_layout(tokens * top_k, num_experts, block_size, ffn_hidden_size)
    grad_rows = torch.empty_like(rows)
    grad_weights = torch.empty(tokens, top_k, dtype=torch.float32, device=grad.device)
    launch_routing("weighted_scatter_grad", layout, plan, top_k=top_k, n=rows.shape[1], dtype=_DTYPES[rows.dtype],
                   input=_aligned(grad), output=grad_rows, weights=weights.float().contiguous(),
                   weight_grad=grad_weights,
                   rows_forward=_aligned(rows), tokens=tokens)
    return grad_rows, grad_weights


@_weighted_scatter_grad.register_fake
def _(grad, rows, plan, weights, num_experts, top_k, block_size, ffn_hidden_size):
    return torch.empty_like(rows), grad.new_empty(grad.shape[0], top_k, dtype=torch.float32)


def _gather_setup(ctx, inputs, output):
    _, plan, num_experts, top_k, block_size, ffn = inputs
    ctx.save_for_backward(plan)
    ctx.layout_args = (num_experts, top_k, block_size, ffn)
    ctx.tokens = inputs[0].shape[0]


def _gather_backward(ctx, grad_rows):
    (plan,) = ctx.saved_tensors
    grad_x = torch.ops.moejit.weighted_scatter(grad_rows.contiguous(), plan, None, ctx.tokens, *ctx.layout_args)
    return grad_x, None, None, None, None, None


_padded_gather.register_autograd(_gather_backward, setup_context=_gather_setup)


def _scatter_setup(ctx, inputs, output):
    rows, plan, weights, tokens, num_experts, top_k, block_size, ffn = inputs
    ctx.save_for_backward(rows, plan, weights)
    ctx.layout_args = (num_experts, top_k, block_size, ffn)
    ctx.tokens = tokens


def _scatter_backward(ctx, grad):
    rows, plan, weights = ctx.saved_tensors
    grad = grad.contiguous()
    if weights is None:
        # Every choice has weight 1: each row's gradient is its token's, as a gather copies it.
        return (torch.ops.moejit.padded_gather(grad, plan, *ctx.layout_args),) + (None,) * 7
    grad_rows, grad_weights = torch.ops.moejit.weighted_scatter_grad(grad, rows, plan, weights, *ctx.layout_args)
    return grad_rows, None, grad_weights.to(weights.dtype), None, None, None, None, None


_weighted_scatter.register_autograd(_scatter_backward, setup_context=_scatter_setup)


# --- the functions users call ---------------------------------------------------------------


def _check_rows_tensor(name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 2:
        raise ValueError(f"{name}.shape={tuple(t.shape)}: expected a 2-D tensor [rows, hidden]")
    if t.dtype not in _DTYPES:
        raise ValueError(f"{name}.dtype={t.dtype}: expected torch.bfloat16 or torch.float16")
    if t.shape[1] % 8 != 0:
        raise ValueError(f"{name}.shape[1]={t.shape[1]}: expected a multiple of 8 (rows move in 16-byte vectors)")
    if t.device.type not in KERNEL_DEVICE_TYPES:
        raise ValueError(f"{name}.device={t.device}: expected a CUDA device (or meta, for shapes only)")


def _check_top_k(plan: RoutingPlan, tokens: int, top_k: int) -> None:
    if not isinstance(plan, RoutingPlan):
        raise TypeError(f"plan: expected the moejit.RoutingPlan that moejit.route returned, got {type(plan).__name__}")
    if tokens * top_k != plan.layout.assignments:
        raise ValueError(f"tokens * top_k = {tokens} * {top_k}: expected the plan's {plan.layout.assignments} "
                         "assignments (route the same tokens first)")


def padded_gather(x: torch.Tensor, plan: RoutingPlan, top_k: int) -> torch.Tensor:
    """x [tokens, H] -> [plan rows, H]: row slots[t*top_k+j] = x[t], zeros in padding rows."""
    _check_rows_tensor("x", x)
    _check_top_k(plan, x.shape[0], top_k)
    l = plan.layout
    check_plan("plan.buffer", plan.buffer, l, x.device)
    return torch.ops.moejit.padded_gather(x, plan.buffer, l.experts, top_k, l.block, l.ffn)


def weighted_scatter(rows: torch.Tensor, plan: RoutingPlan, weights: Optional[torch.Tensor] = None, *,
                     top_k: Optional[int] = None) -> torch.Tensor:
    """rows [plan rows, H] -> [tokens, H]: y[t] = sum_j weights[t, j] * rows[slots[t*top_k+j]].

    `weights` [tokens, top_k] (float32 recommended; others are converted) or None for a plain
    sum (then `top_k` is required)."""
    _check_rows_tensor("rows", rows)
    l = plan.layout if isinstance(plan, RoutingPlan) else None
    if weights is not None:
        if not isinstance(weights, torch.Tensor) or weights.dim() != 2:
            raise ValueError(f"weights: expected a [tokens, top_k] tensor, got "
                             f"{tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__}")
        if weights.device != rows.device:
            raise ValueError(f"weights.device={weights.device}: expected {rows.device}, the device of rows")
        if top_k is not None and top_k != weights.shape[1]:
            raise ValueError(f"top_k={top_k}: expected weights.shape[1]={weights.shape[1]}")
        tokens, top_k = weights.shape
    elif top_k is None:
        raise ValueError("top_k=None: expected the number of choices per token when weights is None")
    else:
        tokens = (l.assignments // top_k) if l is not None else 0
    _check_top_k(plan, tokens, top_k)
    if rows.shape[0] != l.rows:
        raise ValueError(f"rows.shape[0]={rows.shape[0]}: expected the plan's {l.rows} rows")
    check_plan("plan.buffer", plan.buffer, l, rows.device)
    w = None if weights is None else weights.float()
    return torch.ops.moejit.weighted_scatter(rows, plan.buffer, w, tokens, l.experts, top_k, l.block, l.ffn)
