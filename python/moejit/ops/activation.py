"""The expert MLP's activation on a routing plan's block data, as one generated kernel each
way (templates/moejit/activation.cuh):

    a = expert_activation(h, gate, plan, "silu")    # act(h) * gate (GLU), or act(h) with gate=None

`activation` is gelu (tanh approximation, MegaBlocks' default), gelu_exact, silu or relu.
A torch.library custom op with registered autograd (its backward is the second kernel,
which gives the gradients of h and the gate in one pass) and a fake implementation. Only
the plan's live blocks are computed; the unused capacity gets zeros.
"""

from __future__ import annotations

from typing import Optional

import torch

from .routing import RoutingPlan, check_plan, device_pointer, routing_layout
from ..jit.runtime import default_runtime
from ..jit.specs import routing_kernel_spec

ACTIVATIONS = ("gelu", "gelu_exact", "silu", "relu")
_DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16"}


def _launch(op: str, activation: str, glu: bool, plan: torch.Tensor, layout, *, h, gate=None, grad=None, out,
            out_gate=None) -> None:
    runtime = default_runtime()
    device = h.device.index if h.device.index is not None else torch.cuda.current_device()
    spec = routing_kernel_spec(op, target=runtime.target_for(device), block_size=layout.block,
                               dtype=_DTYPES[h.dtype], activation=activation, glu=glu)
    ptr = device_pointer
    live = plan.narrow(0, layout.live_nnz, 1)
    runtime.core.launch_activation(spec, ptr(h), ptr(gate), ptr(grad), ptr(out), ptr(out_gate), live.data_ptr(),
                                   layout.max_nnz, device, torch.cuda.current_stream(h.device).cuda_stream)


@torch.library.custom_op("moejit::expert_activation", mutates_args=())
def _expert_activation(h: torch.Tensor, gate: Optional[torch.Tensor], plan: torch.Tensor, activation: str,
                       assignments: int, num_experts: int, block_size: int, ffn_hidden_size: int) -> torch.Tensor:
    layout = routing_layout(assignments, num_experts, block_size, ffn_hidden_size)
    out = torch.empty_like(h)
    _launch("expert_activation", activation, gate is not None, plan, layout, h=h.contiguous(),
            gate=None if gate is None else gate.contiguous(), out=out)
    return out


@_expert_activation.register_fake
def _(h, gate, plan, activation, assignments, num_experts, block_size, ffn_hidden_size):
    return torch.empty_like(h)


@torch.library.custom_op("moejit::expert_activation_grad", mutates_args=())
def _expert_activation_grad(grad: torch.Tensor, h: torch.Tensor, gate: Optional[torch.Tensor], plan: torch.Tensor,
                            activation: str, assignments: int, num_experts: int, block_size: int,
                            ffn_hidden_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    layout = routing_layout(assignments, num_experts, block_size, ffn_hidden_size)
    grad_h = torch.empty_like(h)
    # Without a gate the second output is an empty placeholder (custom ops return tensors).
    grad_gate = torch.empty_like(gate) if gate is not None else h.new_empty(0)
    _launch("expert_activation_grad", activation, gate is not None, plan, layout, h=h.contiguous(),
            gate=None if gate is None else gate.contiguous(), grad=grad.contiguous(), out=grad_h,
            out_gate=grad_gate if gate is not None else None)
    return grad_h, grad_gate


@_expert_activation_grad.register_fake
def _(grad, h, gate, plan, activation, assignments, num_experts, block_size, ffn_hidden_size):
    return torch.empty_like(h), (torch.empty_like(gate) if gate is not None else h.new_empty(0))


def _setup(ctx, inputs, output):
    h, gate, plan, activation, *layout_args = inputs
    ctx.save_for_backward(h, gate, plan)
    ctx.activation = activation
    ctx.layout_args = tuple(layout_args)


def _backward(ctx, grad):
    h, gate, plan = ctx.saved_tensors
    grad_h, grad_gate = torch.ops.moejit.expert_activation_grad(grad, h, gate, plan, ctx.activation,
                                                                *ctx.layout_args)
    return grad_h, (grad_gate if gate is not None else None), None, None, None, None, None, None


_expert_activation.register_autograd(_backward, setup_context=_setup)


def expert_activation(h: torch.Tensor, gate: Optional[torch.Tensor], plan: RoutingPlan, activation: str) -> torch.Tensor:
    """act(h) [* gate] over the plan's block data [capacity, b, b] (see the module docstring)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r}: expected one of {', '.join(ACTIVATIONS)}")
    l = plan.layout
    expected = (l.max_nnz, l.block, l.block)
    for name, t in (("h", h), ("gate", gate)):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != expected or t.dtype not in _DTYPES:
            got = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name}: expected the plan's bf16/fp16 block data of shape {expected}, got {got}")
    if gate is not None and (gate.dtype != h.dtype or gate.device != h.device):
        raise ValueError(f"gate: expected dtype {h.dtype} on {h.device}, got {gate.dtype} on {gate.device}")
    check_plan("plan.buffer", plan.buffer, l, h.device)
    return torch.ops.moejit.expert_activation(h, gate, plan.buffer, activation, l.assignments, l.experts, l.block,
                                              l.ffn)
