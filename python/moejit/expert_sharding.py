"""Where a layer's experts live when they are spread over the ranks of a process group.

Rank r of a group of W holds experts [r * E/W, (r+1) * E/W): its expert weights are the
rows of those experts in MegaBlocks' layout (w1, v1, w2: [E/W * ffn, hidden]); the router
and the bias are replicated on every rank.

    sharding = ExpertSharding.of(group, num_experts)     # None: no group given
    load_expert_shard(model, full_model.state_dict())    # model.load_state_dict(shard_state_dict(...))
    full_state = gather_expert_shards(model)             # collective: every rank of the group

`model` is a dMoE or ReferenceMoE, or any module containing such layers (several, with
groups and sizes of their own). The expert weights are matched by their full state_dict
names, the layers found by type: a dense MLP's `w1` or a `shared_w1` is never taken for an
expert weight, nor `layers.11.moe.w1` for `layers.1.moe.w1`.

A group of one rank is allowed and changes nothing: the layer computes as without a group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

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


def _moe_layer_types() -> tuple:
    # Imported here: moejit.layer and moejit.reference_layer import this module.
    from .layer import dMoE
    from .reference_layer import ReferenceMoE
    return (dMoE, ReferenceMoE)


def expert_parameters(module: torch.nn.Module) -> dict:
    """The full state_dict name of every expert weight (w1, v1, w2) of every MoE layer in
    `module` (dMoE and ReferenceMoE, subclasses included, found by type; `module` itself
    too) -> that layer. A layer reachable under several names is listed under each, as
    state_dict lists it."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module={module!r}: expected a torch.nn.Module, a dMoE or ReferenceMoE or a model "
                        "containing them (expert weights are matched by their full names in it)")
    layer_types = _moe_layer_types()
    experts = {}
    for prefix, layer in module.named_modules(remove_duplicate=False):
        if isinstance(layer, layer_types):
            for name, _ in layer.named_parameters(recurse=False):
                if name in EXPERT_PARAMETERS:
                    experts[f"{prefix}.{name}" if prefix else name] = layer
    if not experts:
        raise ValueError(f"module: expected a dMoE or ReferenceMoE, or a module containing one; "
                         f"{type(module).__name__} contains none")
    return experts


def _check_full_expert_weights(state_dict: Mapping[str, torch.Tensor], experts: dict) -> None:
    """Raises a clear error unless state_dict has, under its exact name, every expert weight
    of `experts` in the shape of a layer holding every expert."""
    missing = [name for name in experts if name not in state_dict]
    if missing:
        name = missing[0]
        layer_name = name.rpartition(".")[0]
        last = name.rpartition(".")[2]
        alike = sorted(key for key in state_dict if key.rpartition(".")[2] == last)
        raise ValueError(f"state_dict: no entry {name!r}: expected the {last} of the {type(experts[name]).__name__} "
                         f"{'module given' if not layer_name else repr(layer_name)} under its full name, every expert "
                         f"({len(missing)} expert weights missing); the entries named {last}: {alike[:6]}"
                         f"{' ...' if len(alike) > 6 else ''} (give the module whose state_dict this is)")
    for name, layer in experts.items():
        shape = tuple(state_dict[name].shape)
        expected = (layer.num_experts * layer.ffn_hidden_size, layer.hidden_size)
        if shape != expected:
            raise ValueError(f"state_dict[{name!r}].shape={shape}: expected {expected} = (num_experts="
                             f"{layer.num_experts} * ffn_hidden_size={layer.ffn_hidden_size}, hidden_size="
                             f"{layer.hidden_size}), the weight of a layer holding every expert")


def shard_state_dict(state_dict: Mapping[str, torch.Tensor], module: torch.nn.Module) -> dict:
    """This rank's state of `module` (a dMoE or ReferenceMoE, or a model containing them)
    from the state of the same model whose layers hold every expert: each expert weight of
    an expert-parallel layer (matched by its full name) the rows of the layer's experts on
    this rank, every other entry as it is."""
    experts = expert_parameters(module)
    _check_full_expert_weights(state_dict, experts)
    shard = dict(state_dict)
    for name, layer in experts.items():
        if layer.expert_sharding is not None:
            shard[name] = state_dict[name][layer.expert_sharding.expert_rows(layer.ffn_hidden_size)]
    return shard


def load_expert_shard(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Loads into `module` (a dMoE or ReferenceMoE, or a model containing them, expert-parallel
    or not) its share of the state of the same model whose layers hold every expert."""
    module.load_state_dict(shard_state_dict(state_dict, module))


def gather_expert_shards(module: torch.nn.Module) -> dict:
    """The state of the whole of `module` (a dMoE or ReferenceMoE, or a model containing
    them), every expert of every layer, on every rank (a collective: every rank of each
    expert-parallel layer's group calls it). Without groups, a copy of the module's state."""
    experts = expert_parameters(module)
    state = {}
    for name, tensor in module.state_dict().items():
        sharding = experts[name].expert_sharding if name in experts else None
        if sharding is None:
            state[name] = tensor.detach().clone()
            continue
        parts = [torch.empty_like(tensor) for _ in range(sharding.world_size)]
        dist.all_gather(parts, tensor.detach().contiguous(), group=sharding.group)
        state[name] = torch.cat(parts)
    return state


__all__ = ["EXPERT_PARAMETERS", "ExpertSharding", "expert_parameters", "gather_expert_shards", "load_expert_shard",
           "shard_state_dict"]
