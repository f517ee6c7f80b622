"""A plain-PyTorch dropless MoE layer: the numerical reference for moejit.dMoE.

It computes the same function as dMoE with no moejit kernel: a loop over experts with
index_select / index_add_, in the dtype of its parameters (float32 or float64 for tests),
differentiable by ordinary autograd. Slow, simple, and easy to check by eye.

With `expert_parallel_group`, it holds only its rank's experts and exchanges tokens with
moejit.layer.expert_parallel, computing its local experts with `reference_expert_mlp`: the same
exchange dMoE uses, on any backend and device (the CPU tests run it on gloo).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch

from .exchange_traffic import ExchangeTraffic
from .expert_parallel import LocalExperts, chunk_boundaries, expert_parallel_moe
from .expert_sharding import ExpertSharding
from .dmoe import (activation_function, chosen_expert_weights, dMoE, init_weights, load_balancing_loss,
                    router_probabilities)


def reference_expert_mlp(activation_fn: Callable[[torch.Tensor], torch.Tensor], glu: bool,
                         ffn_hidden_size: int) -> LocalExperts:
    """The local experts of moejit.layer.expert_parallel in plain PyTorch: row i of the result is
    expert expert_ids[i]'s MLP of rows[i]; params are (w1, v1, w2) or (w1, w2) without GLU.
    Every expert's weights take part, even with no row, so each gets a gradient (zeros)."""
    F = ffn_hidden_size

    def local_experts(rows: torch.Tensor, expert_ids: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
        w1, v1, w2 = params if glu else (params[0], None, params[1])
        out = torch.zeros_like(rows)
        for e in range(w1.shape[0] // F):
            index = (expert_ids == e).nonzero().reshape(-1)
            x = rows.index_select(0, index)
            h = activation_fn(x @ w1[e * F:(e + 1) * F].t())
            if glu:
                h = h * (x @ v1[e * F:(e + 1) * F].t())
            out = out.index_add(0, index, h @ w2[e * F:(e + 1) * F])
        return out

    return local_experts


class ReferenceMoE(torch.nn.Module):
    """Same parameters and options as dMoE (see moejit.layer.dmoe), any float dtype, any device;
    expert_parallel_group and exchange_chunks as dMoE's. Built directly, its router and
    expert weights are drawn from N(0, init_std) as dMoE's are; `ReferenceMoE.like(layer)`
    copies a dMoE's. In float64 every step is float64 (the router's softmax too), so
    torch.autograd.gradcheck applies."""

    def __init__(self, hidden_size: int, ffn_hidden_size: int, num_experts: int, top_k: int, *,
                 activation: str = "gelu", glu: bool = False, bias: bool = False,
                 normalize_expert_weights: Optional[float] = None, load_balancing_loss_weight: float = 0.1,
                 init_std: float = 0.02, dtype: torch.dtype = torch.float32, device=None,
                 expert_parallel_group: Any = None, exchange_chunks: int = 1) -> None:
        super().__init__()
        chunk_boundaries(1, exchange_chunks)   # validates it
        self.expert_sharding = ExpertSharding.of(expert_parallel_group, num_experts)
        self.exchange_chunks = exchange_chunks
        self.hidden_size, self.ffn_hidden_size = hidden_size, ffn_hidden_size
        self.num_experts, self.top_k = num_experts, top_k
        self.activation_fn = activation_function(activation)
        self.glu = glu
        self.normalize_expert_weights = normalize_expert_weights
        self.load_balancing_loss_weight = load_balancing_loss_weight
        self.load_balancing_loss: Optional[torch.Tensor] = None
        self.exchange_traffic: Optional[ExchangeTraffic] = None
        factory = dict(dtype=dtype, device=device)
        rows = self.num_local_experts * ffn_hidden_size
        self.router = torch.nn.Linear(hidden_size, num_experts, bias=False, **factory)
        self.w1 = torch.nn.Parameter(torch.empty(rows, hidden_size, **factory))
        self.v1 = torch.nn.Parameter(torch.empty(rows, hidden_size, **factory)) if glu else None
        self.w2 = torch.nn.Parameter(torch.empty(rows, hidden_size, **factory))
        self.bias = torch.nn.Parameter(torch.zeros(hidden_size, **factory)) if bias else None
        init_weights([self.router.weight, self.w1, self.v1, self.w2], init_std)

    @property
    def num_local_experts(self) -> int:
        return self.num_experts if self.expert_sharding is None else self.expert_sharding.experts_per_rank

    @classmethod
    def like(cls, layer: dMoE, dtype: torch.dtype = torch.float32, device=None) -> "ReferenceMoE":
        """A reference with the options, the expert-parallel group and a copy of the
        parameters of `layer`, in `dtype`."""
        sharding = layer.expert_sharding
        ref = cls(layer.hidden_size, layer.ffn_hidden_size, layer.num_experts, layer.top_k,
                  activation=layer.activation, glu=layer.glu, bias=layer.bias is not None,
                  normalize_expert_weights=layer.normalize_expert_weights,
                  load_balancing_loss_weight=layer.load_balancing_loss_weight, dtype=dtype,
                  device=device if device is not None else layer.w1.device,
                  expert_parallel_group=None if sharding is None else sharding.group,
                  exchange_chunks=layer.exchange_chunks)
        with torch.no_grad():
            for name, p in ref.named_parameters():
                p.copy_(layer.get_parameter(name))
        return ref

    def forward(self, x: torch.Tensor, expert_indices: Optional[torch.Tensor] = None) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, self.hidden_size).to(self.w1.dtype)
        scores, _, indices = router_probabilities(self.router(x), self.top_k, None)
        scores = scores.to(x.dtype)
        if expert_indices is not None:
            indices = expert_indices.reshape(x.shape[0], self.top_k).to(torch.int64)
        weights = chosen_expert_weights(scores, indices, self.normalize_expert_weights)
        if self.expert_sharding is not None and self.expert_sharding.exchanges:
            self.expert_sharding.check_device(x.device)
            out, counts, self.exchange_traffic = expert_parallel_moe(
                x, weights, indices, reference_expert_mlp(self.activation_fn, self.glu, self.ffn_hidden_size),
                [p for p in (self.w1, self.v1, self.w2) if p is not None], self.expert_sharding,
                chunks=self.exchange_chunks)
        else:
            out, counts = self._experts(x, weights, indices)
        self.load_balancing_loss = (load_balancing_loss(scores, counts, self.top_k, self.load_balancing_loss_weight)
                                    if self.training else None)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(shape)

    def _experts(self, x: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor):
        counts = torch.bincount(indices.flatten(), minlength=self.num_experts)
        out = torch.zeros_like(x)
        F = self.ffn_hidden_size
        for e in range(self.num_experts):
            token, choice = (indices == e).nonzero(as_tuple=True)
            if token.numel() == 0:
                continue
            rows = x.index_select(0, token)
            h = self.activation_fn(rows @ self.w1[e * F:(e + 1) * F].t())
            if self.glu:
                h = h * (rows @ self.v1[e * F:(e + 1) * F].t())
            y = (h @ self.w2[e * F:(e + 1) * F]) * weights[token, choice].unsqueeze(1)
            out = out.index_add(0, token, y)
        return out, counts
