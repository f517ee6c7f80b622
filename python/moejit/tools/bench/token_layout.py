"""Where each routed token lives in each system's layout.

Routed tokens, sorted by expert, are R = sum(counts) rows. The systems lay them out
differently:
  grouped  contiguous groups, expert after expert: row i is routed token i (torch._grouped_mm);
  padded   each expert's group padded to a multiple of the block size (moejit, stk, MegaBlocks);
  batched  each expert's group padded to the largest group, as [E, max_count] (torch.bmm).
`padded_rows[i]` and `batched_rows[i]` say where routed token i sits in the latter two.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TokenLayout:
    counts: torch.Tensor          # [E] int64, tokens per expert
    block_size: int
    padded_rows: torch.Tensor     # [R] int64: row in the block-padded layout
    batched_rows: torch.Tensor    # [R] int64: row of the [E * max_count] batched layout
    expert_of: torch.Tensor       # [R] int64: the expert of each routed token
    rows: int                     # rows of the block-padded layout
    max_count: int                # the largest expert's token count

    @classmethod
    def from_counts(cls, counts: torch.Tensor, block_size: int) -> "TokenLayout":
        if not isinstance(counts, torch.Tensor) or counts.dim() != 1:
            raise ValueError(f"counts: expected a 1-D tensor of tokens per expert, got {counts!r}")
        if block_size <= 0:
            raise ValueError(f"block_size={block_size}: expected a positive integer")
        counts = counts.to(torch.int64)
        if counts.numel() and int(counts.min()) < 0:
            raise ValueError(f"counts: expected non-negative token counts, got minimum {int(counts.min())}")
        experts = counts.numel()
        padded = (counts + block_size - 1) // block_size * block_size
        first_routed = torch.cumsum(counts, 0) - counts
        first_padded = torch.cumsum(padded, 0) - padded
        routed = int(counts.sum())
        expert_of = torch.repeat_interleave(torch.arange(experts, device=counts.device), counts,
                                            output_size=routed)
        slot = torch.arange(routed, device=counts.device) - first_routed[expert_of]
        max_count = int(counts.max()) if experts else 0
        return cls(counts=counts, block_size=block_size, padded_rows=first_padded[expert_of] + slot,
                   batched_rows=expert_of * max_count + slot, expert_of=expert_of, rows=int(padded.sum()),
                   max_count=max_count)

    @property
    def experts(self) -> int:
        return self.counts.numel()

    @property
    def routed(self) -> int:
        return self.padded_rows.numel()

    def offsets(self) -> torch.Tensor:
        """int32 end offsets of the groups, as torch._grouped_mm takes them."""
        return torch.cumsum(self.counts, 0).to(torch.int32)

    def to_padded(self, grouped: torch.Tensor) -> torch.Tensor:
        """[R, n] grouped rows into the block-padded layout [rows, n], padding rows zero."""
        out = grouped.new_zeros(self.rows, grouped.shape[1])
        out[self.padded_rows] = grouped
        return out

    def to_batched(self, grouped: torch.Tensor) -> torch.Tensor:
        """[R, n] grouped rows into [E, max_count, n], padding rows zero."""
        out = grouped.new_zeros(self.experts * self.max_count, grouped.shape[1])
        out[self.batched_rows] = grouped
        return out.view(self.experts, self.max_count, grouped.shape[1])

    def from_padded(self, padded: torch.Tensor) -> torch.Tensor:
        return padded[self.padded_rows]

    def from_batched(self, batched: torch.Tensor) -> torch.Tensor:
        return batched.reshape(self.experts * self.max_count, -1)[self.batched_rows]

    def describe(self) -> dict:
        """Routing statistics for the report."""
        mean = self.routed / self.experts if self.experts else 0.0
        return {"routed_tokens": self.routed, "experts": self.experts,
                "max_over_mean": round(self.max_count / mean, 4) if mean else None,
                "empty_experts": int((self.counts == 0).sum()), "block_padded_rows": self.rows,
                "bmm_padded_rows": self.experts * self.max_count}
