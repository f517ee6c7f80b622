"""Where a layer's experts live when they are spread over the ranks of a process group.

Rank r of a group of W holds experts [r * E/W, (r+1) * E/W): its expert weights are the
rows of those experts in MegaBlocks' layout (w1, v1, w2: [E/W * ffn, hidden]); the router
and the bias are replicated on every rank.

    sharding = ExpertSharding.of(group, num_experts)     # None: no group given

moejit.layer.expert_shards moves whole models' expert weights between full and sharded states.
A group of one rank is allowed and changes nothing: the layer computes as without a group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist

# The parameters whose rows are experts (MegaBlocks' layout): everything else is replicated.
EXPERT_PARAMETERS = ("w1", "v1", "w2")

# The backends that move tensors of a device type with all_to_all: NCCL for CUDA, gloo for
# the CPU. Others (mpi, ucc, third-party) are not refused: they may support both.
_REFUSED = {"cuda": ("gloo",), "cpu": ("nccl",)}


def _backend_for(group: Any, device_type: str) -> Optional[str]:
    """The backend `group` uses for tensors of `device_type` (None when it has none)."""
    text = str(dist.get_backend(group))
    if ":" not in text:
        return text
    # A group with a backend per device type reports "cpu:gloo,cuda:nccl".
    per_device = dict(part.split(":", 1) for part in text.split(","))
    return per_device.get(device_type)


@dataclass(frozen=True)
class ExpertSharding:
    """This rank's share of num_experts experts over `group` (see the module docstring)."""

    group: Any
    rank: int
    world_size: int
    num_experts: int

    @classmethod
    def of(cls, group: Any, num_experts: int) -> Optional["ExpertSharding"]:
        """The sharding of num_experts over `group`; None when group is None. Raises a clear
        error when the group is unusable (torch.distributed not initialised, this process not
        in the group, num_experts not divisible by its size)."""
        if group is None:
            return None
        if not dist.is_available() or not dist.is_initialized():
            raise ValueError("expert_parallel_group: torch.distributed is not initialised "
                             "(call torch.distributed.init_process_group first, e.g. under torchrun)")
        try:
            world_size = dist.get_world_size(group)
            rank = dist.get_rank(group)
        except (RuntimeError, ValueError, TypeError) as error:
            raise ValueError(f"expert_parallel_group={group!r}: expected a torch.distributed ProcessGroup "
                             f"({error})") from None
        if rank < 0:
            raise ValueError("expert_parallel_group: this process is not a member of the group "
                             "(create the layer only on the group's ranks)")
        if num_experts % world_size:
            raise ValueError(f"num_experts={num_experts}: expected a multiple of the expert-parallel group's "
                             f"size {world_size} (every rank holds the same number of experts)")
        return cls(group, rank, world_size, num_experts)

    @property
    def experts_per_rank(self) -> int:
        return self.num_experts // self.world_size

    @property
    def first_expert(self) -> int:
        return self.rank * self.experts_per_rank

    @property
    def exchanges(self) -> bool:
        """Whether tokens move between ranks (a group of one rank computes as no group)."""
        return self.world_size > 1

    def check_device(self, device: torch.device) -> None:
        """Raises a clear error when the group's backend cannot exchange tensors on `device`."""
        backend = _backend_for(self.group, device.type)
        if backend is None or backend in _REFUSED.get(device.type, ()):
            wanted = {"cuda": "nccl", "cpu": "gloo"}.get(device.type, "one that supports this device")
            raise ValueError(f"expert_parallel_group: its backend {dist.get_backend(self.group)!r} cannot exchange "
                             f"tensors on {device}: expected a {wanted!r} group for {device.type} tensors "
                             f"(torch.distributed.new_group(backend={wanted!r}))")

    def expert_rows(self, ffn_hidden_size: int) -> slice:
        """The rows of a full [num_experts * ffn, hidden] expert weight this rank holds."""
        return slice(self.first_expert * ffn_hidden_size, (self.first_expert + self.experts_per_rank) * ffn_hidden_size)


__all__ = ["EXPERT_PARAMETERS", "ExpertSharding"]
