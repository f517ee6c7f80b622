"""A plain-PyTorch dropless MoE layer: the numerical reference for moejit.dMoE.

It computes the same function as dMoE with no moejit kernel: a loop over experts with
index_select / index_add_, in the dtype of its parameters (float32 or float64 for tests),
differentiable by ordinary autograd. Slow, simple, and easy to check by eye.
"""

from __future__ import annotations

from typing import Optional

import torch

from .layer import activation_function, dMoE, load_balancing_loss, router_probabilities


class ReferenceMoE(torch.nn.Module):
    """Same parameters and options as dMoE (see moejit.layer), any float dtype, any device."""

    def __init__(self, hidden_size: int, ffn_hidden_size: int, num_experts: int, top_k: int, *,
                 activation: str = "gelu", glu: bool = False, bias: bool = False,
                 normalize_expert_weights: Optional[float] = None, load_balancing_loss_weight: float = 0.1,
                 dtype: torch.dtype = torch.float32, device=None) -> None:
        super().__init__()
        self.hidden_size, self.ffn_hidden_size = hidden_size, ffn_hidden_size
        self.num_experts, self.top_k = num_experts, top_k
        self.activation_fn = activation_function(activation)
        self.glu = glu
        self.normalize_expert_weights = normalize_expert_weights
        self.load_balancing_loss_weight = load_balancing_loss_weight
        self.load_balancing_loss: Optional[torch.Tensor] = None
        factory = dict(dtype=dtype, device=device)
        rows = num_experts * ffn_hidden_size
        self.router = torch.nn.Linear(hidden_size, num_experts, bias=False, **factory)
        self.w1 = torch.nn.Parameter(torch.empty(rows, hidden_size, **factory))
        self.v1 = torch.nn.Parameter(torch.empty(rows, hidden_size, **factory)) if glu else None
        self.w2 = torch.nn.Parameter(torch.empty(rows, hidden_size, **factory))
        self.bias = torch.nn.Parameter(torch.zeros(hidden_size, **factory)) if bias else None

    @classmethod
    def like(cls, layer: dMoE, dtype: torch.dtype = torch.float32, device=None) -> "ReferenceMoE":
        """A reference with the options and a copy of the parameters of `layer`, in `dtype`."""
        ref = cls(layer.hidden_size, layer.ffn_hidden_size, layer.num_experts, layer.top_k,
                  activation=layer.activation, glu=layer.glu, bias=layer.bias is not None,
                  normalize_expert_weights=layer.normalize_expert_weights,
                  load_balancing_loss_weight=layer.load_balancing_loss_weight, dtype=dtype,
                  device=device if device is not None else layer.w1.device)
        with torch.no_grad():
            for name, p in ref.named_parameters():
                p.copy_(layer.get_parameter(name))
        return ref

    def forward(self, x: torch.Tensor, expert_indices: Optional[torch.Tensor] = None) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, self.hidden_size).to(self.w1.dtype)
        scores, weights, indices = router_probabilities(self.router(x), self.top_k, None)
        scores, weights = scores.to(x.dtype), weights.to(x.dtype)
        if expert_indices is not None:
            indices = expert_indices.reshape(x.shape[0], self.top_k).to(torch.int64)
            weights = scores.gather(1, indices)
        if self.normalize_expert_weights is not None:
            weights = weights / torch.norm(weights, p=self.normalize_expert_weights, dim=-1, keepdim=True)
        counts = torch.bincount(indices.flatten(), minlength=self.num_experts)
        self.load_balancing_loss = (load_balancing_loss(scores, counts, self.top_k, self.load_balancing_loss_weight)
                                    if self.training else None)
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
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(shape)
