"""What the expert-parallel exchange moves between ranks: the counters of one call and the model.

The exchange (moejit.layer.expert_parallel) sends each token once to every OTHER rank that holds
at least one of the token's chosen experts, with the list of those experts and their router
weights; the expert rank sums the token's experts there and sends one row back. So the
rows that cross ranks in the dispatch are

    sum over tokens t of |{rank(e) for e in top_k(t)} - {this rank}|

(`minimum_dispatch_rows`), each of hidden * element-size bytes. Sending one copy per chosen
expert instead, as MegaBlocks-style per-assignment exchanges do, costs
`per_assignment_dispatch_rows`: up to top_k times as many for a token whose experts share a
rank. Under uniform random routing (top_k distinct experts out of E, E/W per rank) the
expectations per token are closed-form (`expected_dispatch_rows_per_token`).

Copies to the rank's own experts go through the same all_to_all but cross no link: they
are counted apart (`rows_kept`).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import torch


@dataclass(frozen=True)
class ExchangeTraffic:
    """One expert-parallel forward call's exchange, seen from this rank (host integers,
    known from the split sizes the call read anyway: counting costs nothing).

    Forward: the dispatch sends rows_sent token rows (each with metadata_bytes of expert
    ids and router weights) and receives rows_received; the combine sends one result row
    back for every row received and receives one for every row sent. Backward mirrors it:
    the results' gradients travel to the expert ranks (row_bytes each), the tokens'
    gradients back with their router weights' gradients (grad_metadata_bytes each)."""

    tokens: int
    rows_sent: int
    rows_received: int
    rows_kept: int
    row_bytes: int
    metadata_bytes: int
    grad_metadata_bytes: int

    @property
    def dispatch_bytes_sent(self) -> int:
        """The token rows' bytes this rank's dispatch sent to other ranks (no metadata): the
        quantity `minimum_dispatch_rows` * row_bytes predicts."""
        return self.rows_sent * self.row_bytes

    @property
    def bytes_sent(self) -> int:
        """Forward: dispatch (rows and metadata) plus combine (results back)."""
        return self.rows_sent * (self.row_bytes + self.metadata_bytes) + self.rows_received * self.row_bytes

    @property
    def bytes_received(self) -> int:
        return self.rows_received * (self.row_bytes + self.metadata_bytes) + self.rows_sent * self.row_bytes

    @property
    def backward_bytes_sent(self) -> int:
        """Backward: the results' gradients to the expert ranks, the rows' (and weights')
        gradients back to the tokens' ranks."""
        return self.rows_sent * self.row_bytes + self.rows_received * (self.row_bytes + self.grad_metadata_bytes)

    @property
    def backward_bytes_received(self) -> int:
        return self.rows_received * self.row_bytes + self.rows_sent * (self.row_bytes + self.grad_metadata_bytes)


def _destination_ranks(expert_indices: torch.Tensor, world_size: int, experts_per_rank: int) -> torch.Tensor:
    """[tokens, world_size] bool: whether the token chose an expert on that rank."""
    dest = expert_indices.to(torch.int64) // experts_per_rank
    return torch.zeros(dest.shape[0], world_size, dtype=torch.bool, device=dest.device).scatter_(1, dest, True)


def minimum_dispatch_rows(expert_indices: torch.Tensor, rank: int, world_size: int, experts_per_rank: int) -> int:
    """Rows a rank must send for its tokens' routing expert_indices [tokens, top_k] (global
    ids; rank r holds experts [r * experts_per_rank, (r+1) * experts_per_rank)): one per
    token and distinct other rank holding one of its experts. Reads the result on the host."""
    mask = _destination_ranks(expert_indices, world_size, experts_per_rank)
    mask[:, rank] = False
    return int(mask.sum())


def per_assignment_dispatch_rows(expert_indices: torch.Tensor, rank: int, experts_per_rank: int) -> int:
    """Rows an exchange sending one copy per (token, chosen expert) sends to other ranks."""
    return int((expert_indices.to(torch.int64) // experts_per_rank != rank).sum())


def expected_dispatch_rows_per_token(num_experts: int, top_k: int, world_size: int) -> tuple[float, float]:
    """Under uniform random routing (top_k distinct experts, every set equally likely) with
    num_experts / world_size experts per rank: the expected rows one token costs the
    dispatch to other ranks, (once per rank, once per expert). A given other rank gets the
    token unless all top_k experts avoid its E/W: probability C(E - E/W, k) / C(E, k)."""
    if num_experts % world_size or not 0 < top_k <= num_experts:
        raise ValueError(f"num_experts={num_experts}, top_k={top_k}, world_size={world_size}: expected "
                         "world_size dividing num_experts and 1 <= top_k <= num_experts")
    per_rank = num_experts // world_size
    missed = comb(num_experts - per_rank, top_k) / comb(num_experts, top_k)
    return (world_size - 1) * (1.0 - missed), top_k * (world_size - 1) / world_size


__all__ = ["ExchangeTraffic", "expected_dispatch_rows_per_token", "minimum_dispatch_rows",
           "per_assignment_dispatch_rows"]
