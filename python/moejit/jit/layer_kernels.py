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
(routing_kernels) sort the tokens by expert, build the topology and permute rows, and two
(activation_kernels) apply the activation (times the GLU gate) and its gradient.

check_layer_shape is the one rule for which layer shapes the kernels take: moejit.dMoE
and the command line both ask it, and it asks the kernels' own validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from .. import _core
from .specs import TargetLike, kernel_spec, routing_kernel_spec
from ..zoo import ModelShape


@dataclass(frozen=True)
class LayerKernel:
    spec: _core.KernelSpec
    uses: tuple[str, ...]   # the products of the layer this kernel computes


@dataclass(frozen=True)
class _KernelOfLayer:
    """How to build one of the layer's kernel specs from its shape and (dtype, block_size,
    target); `sizes` says which of the shape's sizes each spec field is, so that a field
    the kernel rejects is reported as the size the user gave."""

    op: str
    build: Callable[[ModelShape, dict], _core.KernelSpec]
    uses: tuple[str, ...]
    sizes: dict[str, str]


def _routing(op: str, uses: tuple[str, ...], sizes: dict[str, str], **fields: str) -> _KernelOfLayer:
    """A routing kernel whose spec takes `fields` (spec argument -> shape attribute)."""
    def build(shape: ModelShape, c: dict) -> _core.KernelSpec:
        extra = {name: getattr(shape, attribute) for name, attribute in fields.items()}
        if "block" in sizes:
            extra["block_size"] = c["block_size"]
        if op in ("padded_gather", "weighted_scatter", "weighted_scatter_grad"):
            extra["dtype"] = c["dtype"]
        return routing_kernel_spec(op, target=c["target"], **extra)

    return _KernelOfLayer(op, build, uses, sizes)


_PRODUCTS = [
    _KernelOfLayer("sdd", lambda s, c: kernel_spec("sdd", n=s.experts * s.ffn, k=s.hidden, trans_b=True, **c),
                   ("forward h = x @ w1.t()", "backward dh = dy @ w2.t()"), {"n": "ffn", "k": "hidden"}),
    _KernelOfLayer("dsd", lambda s, c: kernel_spec("dsd", k=s.experts * s.ffn, n=s.hidden, **c),
                   ("forward y = h @ w2", "backward dx = dh @ w1"), {"k": "ffn", "n": "hidden"}),
    _KernelOfLayer("dsd_t", lambda s, c: kernel_spec("dsd", m=s.experts * s.ffn, n=s.hidden, trans_a=True, **c),
                   ("backward dw1 = dh.t() @ x", "backward dw2 = h.t() @ dy"), {"m": "ffn", "n": "hidden"}),
]
_ROUTING = [
    _routing("expert_histogram", ("routing: assignments per expert",), {"experts": "experts"},
             experts="experts"),
    _routing("expert_bins", ("routing: padded bins and the topology",),
             {"experts": "experts", "n": "ffn", "block": "block_size"}, experts="experts", n="ffn"),
    _routing("expert_slots", ("routing: each assignment's row",), {"experts": "experts"}, experts="experts"),
    _routing("padded_gather", ("forward x -> expert-sorted rows",), {"topk": "top_k", "n": "hidden"},
             top_k="top_k", n="hidden"),
    _routing("weighted_scatter", ("forward rows -> y", "backward dx: each token's rows summed"),
             {"topk": "top_k", "n": "hidden"}, top_k="top_k", n="hidden"),
    _routing("weighted_scatter_grad", ("backward d rows, d expert weights",), {"topk": "top_k", "n": "hidden"},
             top_k="top_k", n="hidden"),
]


def _common(target: TargetLike, dtype: str, block_size: int) -> dict:
    return dict(dtype=dtype, block_size=block_size, target=target if isinstance(target, str) else target.text())


def layer_kernels(shape: ModelShape, *, target: TargetLike = "sm_90a", dtype: str = "bf16",
                  block_size: int = 128) -> list[LayerKernel]:
    """The layer's three block-sparse products (see the module docstring)."""
    common = _common(target, dtype, block_size)
    return [LayerKernel(k.build(shape, common), k.uses) for k in _PRODUCTS]


def routing_kernels(shape: ModelShape, *, target: TargetLike = "sm_90a", dtype: str = "bf16",
                    block_size: int = 128) -> list[LayerKernel]:
    """The routing and permutation kernels of the layer (moejit.ops.routing, moejit.ops.permutation)."""
    common = _common(target, dtype, block_size)
    return [LayerKernel(k.build(shape, common), k.uses) for k in _ROUTING]


def activation_kernels(shape: ModelShape, *, target: TargetLike = "sm_90a", dtype: str = "bf16",
                       block_size: int = 128) -> list[LayerKernel]:
    """The activation kernel of the layer's shape (act(h), times the gate with GLU:
    moejit.ops.activation) and its gradient."""
    common = dict(_common(target, dtype, block_size), activation=shape.activation, glu=shape.glu)
    what = f"{shape.activation}(h){' * gate' if shape.glu else ''}"
    return [LayerKernel(routing_kernel_spec("expert_activation", **common), (f"forward {what}",)),
            LayerKernel(routing_kernel_spec("expert_activation_grad", **common), (f"backward of {what}",))]


class LayerShapeError(_core.SpecError):
    """A layer shape the kernels cannot take; the message names the caller's argument,
    its value and what is allowed."""


# dMoE's names of the shape's sizes; the command line passes its flags instead.
LAYER_ARGUMENTS = {"hidden": "hidden_size", "ffn": "ffn_hidden_size", "experts": "num_experts", "top_k": "top_k",
                   "block_size": "block_size"}


def check_layer_shape(hidden: int, ffn: int, experts: int, top_k: int, *, block_size: int = 128,
                      dtype: str = "bf16", target: TargetLike = "sm_90a",
                      names: Mapping[str, str] = LAYER_ARGUMENTS, separator: str = "=") -> None:
    """Raises LayerShapeError unless the kernels take a layer of this shape on `target`.

    Beyond positive sizes and top_k <= experts, the rule is the kernels' own validation
    (compiler/validate.cpp, compiler/routing_spec.cpp): every kernel of the layer is built
    with its heuristic tile (not compiled), and a field it rejects is reported as the
    caller's size. `names` maps hidden, ffn, experts, top_k and block_size to the caller's
    names, each written name{separator}value (dMoE: hidden_size=2056; the CLI: --hidden 2056).
    """
    sizes = {"hidden": hidden, "ffn": ffn, "experts": experts, "top_k": top_k, "block_size": block_size}

    def fail(size: str, expected: str) -> None:
        value = sizes[size]
        shown = value if isinstance(value, int) and not isinstance(value, bool) else repr(value)
        raise LayerShapeError(f"{names[size]}{separator}{shown}: expected {expected}")

    for size in ("hidden", "ffn", "experts", "top_k"):
        value = sizes[size]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            fail(size, "a positive integer")
    if top_k > experts:
        fail("top_k", f"at most the number of experts ({names['experts']}{separator}{experts})")
    if block_size not in (64, 128):
        fail("block_size", "64 or 128")
    shape = ModelShape("check", hidden, ffn, experts, top_k, 1, "gelu", False)
    common = _common(target, dtype, block_size)
    # Routing first: its messages speak of experts and of the ffn size in whole blocks.
    for kernel in _ROUTING + _PRODUCTS:
        try:
            kernel.build(shape, common)
        except _core.SpecError as e:
            size = kernel.sizes.get(getattr(e, "field", None))
            if size is None:
                raise
            fail(size, f"{e.expected}, as the {kernel.op} kernel's {e.field}")


def all_layer_kernels(shape: ModelShape, *, target: TargetLike = "sm_90a", dtype: str = "bf16",
                      block_size: int = 128) -> list[LayerKernel]:
    """Every kernel one layer call launches, forward and backward: the products (with
    the heuristic tile of the target's family) and the routing, permutation and
    activation kernels around them."""
    kw = dict(target=target, dtype=dtype, block_size=block_size)
    return layer_kernels(shape, **kw) + routing_kernels(shape, **kw) + activation_kernels(shape, **kw)
