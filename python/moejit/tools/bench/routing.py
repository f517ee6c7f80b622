"""Top-k routing as a dMoE router does it: softmax over the experts' logits, the k most
probable experts per token, their probabilities as the combine weights (optionally
normalised), and the load-balancing loss of Switch Transformer / MegaBlocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class Routing:
    experts: torch.Tensor         # [T, k] int64: the chosen experts of each token
    weights: torch.Tensor         # [T, k]: their combine weights, in the logits' dtype
    probabilities: torch.Tensor   # [T, E] float32: softmax of the logits

    @property
    def num_experts(self) -> int:
        return self.probabilities.shape[1]

    @property
    def top_k(self) -> int:
        return self.experts.shape[1]

    def counts(self) -> torch.Tensor:
        """Tokens per expert, int64 [E], without a host synchronisation."""
        flat = self.experts.flatten()
        return torch.zeros(self.num_experts, dtype=torch.int64, device=flat.device).scatter_add_(
            0, flat, torch.ones_like(flat))


def route(logits: torch.Tensor, top_k: int, normalize_expert_weights: Optional[float] = None) -> Routing:
    """Routing of tokens whose router logits are `logits` [T, E]. With
    `normalize_expert_weights` p, each token's k weights are divided by their p-norm
    (p=1: they sum to one, as Mixtral, OLMoE and Qwen3 do)."""
    if logits.dim() != 2:
        raise ValueError(f"logits.shape={tuple(logits.shape)}: expected [tokens, experts]")
    if not 1 <= top_k <= logits.shape[1]:
        raise ValueError(f"top_k={top_k}: expected 1 <= top_k <= {logits.shape[1]} experts")
    probabilities = torch.softmax(logits.float(), dim=-1)
    weights, experts = probabilities.topk(top_k, dim=-1)
    if normalize_expert_weights is not None:
        weights = weights / weights.norm(p=normalize_expert_weights, dim=-1, keepdim=True)
    return Routing(experts, weights.to(logits.dtype), probabilities)


def load_balancing_loss(routing: Routing) -> torch.Tensor:
    """E / (T*k) * sum_e tokens_e * mean_t p(e | t): 1.0 for perfectly balanced routing,
    larger the more the router prefers some experts."""
    t = routing.experts.shape[0]
    counts = routing.counts().to(routing.probabilities.dtype)
    return routing.num_experts / (t * routing.top_k) * torch.dot(counts, routing.probabilities.mean(dim=0))
