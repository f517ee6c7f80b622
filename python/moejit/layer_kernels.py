"""The block-sparse kernels a dropless-MoE layer needs, forward and backward.

With MegaBlocks' weight layout (w1 and w2 both stored [experts * ffn, hidden]) and the
routed tokens x [T', hidden] (T' = padded token rows), the layer is
    h  = sdd(x, w1.t())        sparse [T', E*F]     (and the gate with w3 for GLU)
    y  = dsd(act(h), w2)       dense  [T', H]
and its backward
    dh  = sdd(dy, w2.t())      the same kernel as the first forward product
    dx  = dsd(dh, w1)          the same kernel as the second forward product
    dw1 = dsd(dh.t(), x)       dsd with the sparse operand transposed
    dw2 = dsd(h.t(), dy)       the same kernel as dw1
so three distinct kernels serve the whole layer. Around them, six routing kernels
(routing_kernels) sort the tokens by expert, build the topology and permute rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import _core
from .specs import TargetLike, kernel_spec, routing_kernel_spec
from .zoo import ModelShape


@dataclass(frozen=True)
class LayerKernel:
    spec: _core.KernelSpec
    uses: tuple[str, ...]   # the products of the layer this kernel computes


def layer_kernels(shape: ModelShape, *, target: TargetLike = "sm_90a", dtype: str = "bf16",
                  block_size: int = 128) -> list[LayerKernel]:
    h, ef = shape.hidden, shape.experts * shape.ffn
    common = dict(dtype=dtype, block_size=block_size, target=target)
    return [
        LayerKernel(kernel_spec("sdd", n=ef, k=h, trans_b=True, **common),
                    ("forward h = x @ w1.t()", "backward dh = dy @ w2.t()")),
        LayerKernel(kernel_spec("dsd", k=ef, n=h, **common),
                    ("forward y = h @ w2", "backward dx = dh @ w1")),
        LayerKernel(kernel_spec("dsd", m=ef, n=h, trans_a=True, **common),
                    ("backward dw1 = dh.t() @ x", "backward dw2 = h.t() @ dy")),
    ]


def routing_kernels(shape: ModelShape, *, target: TargetLike = "sm_90a", dtype: str = "bf16",
                    block_size: int = 128) -> list[LayerKernel]:
    """The routing, permutation and activation kernels of the layer (moejit.routing,
    moejit.permutation, moejit.activation)."""
    t = target if isinstance(target, str) else target.text()
    e, k, h, f = shape.experts, shape.top_k, shape.hidden, shape.ffn
    return [
        LayerKernel(routing_kernel_spec("expert_histogram", target=t, experts=e), ("routing: assignments per expert",)),
        LayerKernel(routing_kernel_spec("expert_bins", target=t, experts=e, block_size=block_size, n=f),
                    ("routing: padded bins and the topology",)),
        LayerKernel(routing_kernel_spec("expert_slots", target=t, experts=e), ("routing: each assignment's row",)),
        LayerKernel(routing_kernel_spec("padded_gather", target=t, top_k=k, n=h, dtype=dtype),
                    ("forward x -> expert-sorted rows",)),
        LayerKernel(routing_kernel_spec("weighted_scatter", target=t, top_k=k, n=h, dtype=dtype),
                    ("forward rows -> y", "backward dx: each token's rows summed")),
        LayerKernel(routing_kernel_spec("weighted_scatter_grad", target=t, top_k=k, n=h, dtype=dtype),
                    ("backward d rows, d expert weights",)),
        LayerKernel(routing_kernel_spec("expert_activation", target=t, block_size=block_size, dtype=dtype,
                                        activation=shape.activation, glu=shape.glu),
                    (f"forward a = {shape.activation}(h){' * gate' if shape.glu else ''}",)),
        LayerKernel(routing_kernel_spec("expert_activation_grad", target=t, block_size=block_size, dtype=dtype,
                                        activation=shape.activation, glu=shape.glu),
                    (f"backward dh{', d gate' if shape.glu else ''}",)),
    ]


def all_layer_kernels(shape: ModelShape, *, target: TargetLike = "sm_90a", dtype: str = "bf16",
                      block_size: int = 128) -> list[LayerKernel]:
    """Every kernel one layer call launches, forward and backward: the products (with
    the heuristic tile of the target's family) and the routing, permutation and
    activation kernels around them."""
    return (layer_kernels(shape, target=target, dtype=dtype, block_size=block_size)
            + routing_kernels(shape, target=target, dtype=dtype, block_size=block_size))
