"""Whole dMoE layers to time against each other: a plain PyTorch layer on
torch._grouped_mm, a dense MLP with the same FLOPs, MegaBlocks' dMoE and moejit.dMoE.

All weights are in MegaBlocks' layout: router.weight [E, H], w1 and w2 [E*F, H], and the
GLU gate v1 [E*F, H]. GroupedMMMoE can share another layer's parameters
(`from_parameters`), so both compute the same function and can be checked against each
other before they are timed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .routing import Routing, load_balancing_loss, route

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    # MegaBlocks' default GELU is the tanh approximation.
    "gelu": lambda t: F.gelu(t, approximate="tanh"),
    "silu": F.silu,
}


def activation_fn(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation={name!r}: expected one of {', '.join(ACTIVATIONS)}") from None


def _check_layer_args(hidden: int, ffn: int, experts: int, top_k: int) -> None:
    for name, value in (("hidden_size", hidden), ("ffn_hidden_size", ffn), ("num_experts", experts),
                        ("top_k", top_k)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name}={value!r}: expected a positive integer")
    if top_k > experts:
        raise ValueError(f"top_k={top_k}: expected at most num_experts={experts}")


class Router(nn.Module):
    """The router's linear map: logits [T, E] = x [T, H] @ weight.t() with weight [E, H]."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight   # registered as a parameter when it is one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)


class GroupedMMMoE(nn.Module):
    """A dropless MoE layer in plain PyTorch: router softmax and top-k, a sort-based
    permutation of the routed tokens by expert, torch._grouped_mm for both expert products
    (and the GLU gate), the activation, and the weighted combine; autograd does backward.
    This is what a careful PyTorch user writes without a custom kernel."""

    def __init__(self, hidden_size: int, ffn_hidden_size: int, num_experts: int, top_k: int, *,
                 activation: str = "gelu", glu: bool = False, normalize_expert_weights: Optional[float] = None,
                 router_jitter: float = 0.0, dtype: torch.dtype = torch.bfloat16, device="cuda",
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        _check_layer_args(hidden_size, ffn_hidden_size, num_experts, top_k)
        self._configure(hidden_size, ffn_hidden_size, num_experts, top_k, activation, normalize_expert_weights,
                        router_jitter)
        kw = dict(dtype=dtype, device=device)
        self.router = Router(nn.Parameter(torch.empty(num_experts, hidden_size, **kw)))
        self.w1 = nn.Parameter(torch.empty(num_experts * ffn_hidden_size, hidden_size, **kw))
        self.w2 = nn.Parameter(torch.empty(num_experts * ffn_hidden_size, hidden_size, **kw))
        self.v1 = nn.Parameter(torch.empty(num_experts * ffn_hidden_size, hidden_size, **kw)) if glu else None
        init_moe_parameters(self.router.weight, self.w1, self.w2, self.v1, generator=generator)

    def _configure(self, hidden: int, ffn: int, experts: int, top_k: int, activation: str,
                   normalize: Optional[float], jitter: float) -> None:
        self.hidden_size, self.ffn_hidden_size, self.num_experts, self.top_k = hidden, ffn, experts, top_k
        self.activation, self.act = activation, activation_fn(activation)
        self.normalize_expert_weights, self.router_jitter = normalize, jitter
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"router_jitter={jitter}: expected 0 <= jitter < 1")
        self.load_balancing_loss: Optional[torch.Tensor] = None

    @classmethod
    def from_parameters(cls, router_weight: nn.Parameter, w1: nn.Parameter, w2: nn.Parameter,
                        v1: Optional[nn.Parameter] = None, *, top_k: int, activation: str = "gelu",
                        normalize_expert_weights: Optional[float] = None,
                        router_jitter: float = 0.0) -> "GroupedMMMoE":
        """A layer on another layer's parameters (the same tensors: gradients land in them)."""
        if router_weight.dim() != 2:
            raise ValueError(f"router_weight.shape={tuple(router_weight.shape)}: expected [experts, hidden]")
        experts, hidden = router_weight.shape
        for name, w in (("w1", w1), ("w2", w2), ("v1", v1)):
            if w is not None and (w.dim() != 2 or w.shape[1] != hidden or w.shape[0] % experts):
                raise ValueError(f"{name}.shape={tuple(w.shape)}: expected [experts*ffn, {hidden}] "
                                 f"with experts={experts}")
        if w2.shape != w1.shape or (v1 is not None and v1.shape != w1.shape):
            raise ValueError(f"w2.shape={tuple(w2.shape)}: expected w1's shape {tuple(w1.shape)}")
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        ffn = w1.shape[0] // experts
        _check_layer_args(hidden, ffn, experts, top_k)
        layer._configure(hidden, ffn, experts, top_k, activation, normalize_expert_weights, router_jitter)
        layer.router = Router(router_weight)
        layer.w1, layer.w2, layer.v1 = w1, w2, v1
        return layer

    @property
    def glu(self) -> bool:
        return self.v1 is not None

    def routing(self, x: torch.Tensor) -> Routing:
        """The router's decision for tokens x [T, H]."""
        if self.training and self.router_jitter > 0:
            x = x * torch.empty_like(x).uniform_(1.0 - self.router_jitter, 1.0 + self.router_jitter)
        return route(self.router(x), self.top_k, self.normalize_expert_weights)

    def experts_forward(self, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        """The experts' output for tokens x [T, H] routed by `routing`, combined per token."""
        t, k, e, f, h = x.shape[0], self.top_k, self.num_experts, self.ffn_hidden_size, self.hidden_size
        flat = routing.experts.flatten()                       # [T*k], expert of each (token, slot)
        order = torch.argsort(flat, stable=True)               # routed rows sorted by expert
        offsets = torch.cumsum(routing.counts(), 0).to(torch.int32)
        xs = x[order // k]                                     # gather: row i is token order[i] // k
        hs = torch._grouped_mm(xs, self.w1.view(e, f, h).transpose(1, 2), offs=offsets)
        if self.v1 is not None:
            hs = self.act(hs) * torch._grouped_mm(xs, self.v1.view(e, f, h).transpose(1, 2), offs=offsets)
        else:
            hs = self.act(hs)
        ys = torch._grouped_mm(hs, self.w2.view(e, f, h), offs=offsets)    # [T*k, H]
        # Back to (token, slot) order, then the weighted sum over each token's k experts.
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel(), device=order.device)
        ys = ys[inverse].view(t, k, h)
        return (ys * routing.weights.unsqueeze(-1)).sum(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.hidden_size:
            raise ValueError(f"x.shape={tuple(x.shape)}: expected [..., {self.hidden_size}]")
        flat = x.reshape(-1, self.hidden_size)
        routing = self.routing(flat)
        if self.training:
            self.load_balancing_loss = load_balancing_loss(routing)
        return self.experts_forward(flat, routing).view(x.shape)


def init_moe_parameters(router_weight: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor,
                        v1: Optional[torch.Tensor] = None, *, generator: Optional[torch.Generator] = None) -> None:
    """Random weights that keep activations near unit scale: the router's logits have unit
    variance (near-uniform routing on random tokens), x @ w1.t() too, and the output of
    w2 sums F terms of unit scale, so w2 is scaled by F^-1/2."""
    hidden = w1.shape[1]
    ffn = w1.shape[0] // router_weight.shape[0]
    with torch.no_grad():
        for w, scale in ((router_weight, hidden ** -0.5), (w1, hidden ** -0.5), (v1, hidden ** -0.5),
                         (w2, ffn ** -0.5)):
            if w is not None:
                w.copy_(torch.randn(w.shape, device=w.device, generator=generator) * scale)


class DenseMLP(nn.Module):
    """An MLP whose ffn width is top_k*F (flops.dense_mlp_width): every token does the
    layer's arithmetic with no routing at all, the ceiling for the layer."""

    def __init__(self, hidden_size: int, width: int, *, activation: str = "gelu", glu: bool = False,
                 dtype: torch.dtype = torch.bfloat16, device="cuda", generator: Optional[torch.Generator] = None
                 ) -> None:
        super().__init__()
        _check_layer_args(hidden_size, width, 1, 1)
        kw = dict(dtype=dtype, device=device)
        self.act = activation_fn(activation)
        self.w1 = nn.Parameter(torch.empty(width, hidden_size, **kw))
        self.w2 = nn.Parameter(torch.empty(width, hidden_size, **kw))
        self.v1 = nn.Parameter(torch.empty(width, hidden_size, **kw)) if glu else None
        with torch.no_grad():
            for w, scale in ((self.w1, hidden_size ** -0.5), (self.v1, hidden_size ** -0.5), (self.w2, width ** -0.5)):
                if w is not None:
                    w.copy_(torch.randn(w.shape, device=w.device, generator=generator) * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(F.linear(x, self.w1))
        if self.v1 is not None:
            h = h * F.linear(x, self.v1)
        return h @ self.w2


@dataclass
class LayerSystem:
    """One system's layer, as the benchmark drives it."""

    name: str
    module: nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]   # x [T, H] -> y [T, H]
    w1: Optional[torch.Tensor]    # the [E*F, H] weight whose gradient is checked; None: not checked
    checked: bool = True          # False: a different function (the dense MLP), timed only


def moejit_dmoe(hidden: int, ffn: int, experts: int, top_k: int, *, activation: str, glu: bool, block_size: int,
                dtype: torch.dtype, device) -> tuple[Optional[nn.Module], Optional[str]]:
    """moejit.dMoE, or None and why not."""
    import moejit

    cls = getattr(moejit, "dMoE", None)
    if cls is None:
        return None, (f"moejit: this build of moejit {moejit.__version__} has no moejit.dMoE yet, so the layer "
                      "benchmark times the peers only")
    try:
        layer = cls(hidden, ffn, experts, top_k, activation=activation, glu=glu, bias=False, block_size=block_size,
                    dtype=dtype, device=device)
    except Exception as e:   # report it, keep timing the peers
        return None, f"moejit: moejit.dMoE(...) failed: {type(e).__name__}: {e}"
    return layer.train(), None


def megablocks_dmoe(source: GroupedMMMoE, *, dtype: torch.dtype, device) -> LayerSystem:
    """MegaBlocks' dMoE (block-sparse MLP on stk) with `source`'s configuration and a copy
    of its weights. Raises where this MegaBlocks has another layout or API."""
    from megablocks.layers.arguments import Arguments
    from megablocks.layers.dmoe import dMoE

    wanted = dict(hidden_size=source.hidden_size, ffn_hidden_size=source.ffn_hidden_size,
                  moe_num_experts=source.num_experts, moe_top_k=source.top_k, bias=False, return_bias=False,
                  activation_fn=source.act, mlp_type="glu" if source.glu else "mlp", mlp_impl="sparse",
                  moe_normalize_expert_weights=source.normalize_expert_weights,
                  bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16, device=device)
    known = {f.name for f in dataclasses.fields(Arguments)}
    missing = [k for k in ("hidden_size", "ffn_hidden_size", "moe_num_experts", "moe_top_k") if k not in known]
    if missing:
        raise ValueError(f"megablocks Arguments lacks {', '.join(missing)}: an unsupported MegaBlocks version")
    layer = dMoE(Arguments(**{k: v for k, v in wanted.items() if k in known}))
    params = dict(layer.named_parameters())

    def find(suffix: str, like: torch.Tensor) -> torch.Tensor:
        for name, p in params.items():
            if name.endswith(suffix) and tuple(p.shape) == tuple(like.shape):
                return p
        shapes = ", ".join(f"{n} {tuple(p.shape)}" for n, p in params.items())
        raise ValueError(f"megablocks dMoE: no parameter *{suffix} of shape {tuple(like.shape)} ({shapes})")

    w1 = find("w1", source.w1)
    with torch.no_grad():
        find("router.layer.weight", source.router.weight).copy_(source.router.weight)
        w1.copy_(source.w1)
        find("w2", source.w2).copy_(source.w2)
        if source.v1 is not None:
            find("v1", source.v1).copy_(source.v1)
    layer.train()

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = layer(x.view(x.shape[0], 1, x.shape[1]))   # MegaBlocks takes [sequence, batch, hidden]
        if isinstance(out, tuple):
            out = out[0]
        return out.view(x.shape)

    return LayerSystem("megablocks", layer, forward, w1)

