"""A model's expert weights between their full and their sharded states (see
moejit.layer.expert_sharding for which rank holds which experts).

    load_expert_shard(model, full_model.state_dict())    # model.load_state_dict(shard_state_dict(...))
    full_state = gather_expert_shards(model)             # collective: every rank of the group

`model` is a dMoE or ReferenceMoE, or any module containing such layers (several, with
groups and sizes of their own). The expert weights are matched by their full state_dict
names, the layers found by type: a dense MLP's `w1` or a `shared_w1` is never taken for an
expert weight, nor `layers.11.moe.w1` for `layers.1.moe.w1`.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.distributed as dist

from .expert_sharding import EXPERT_PARAMETERS
from .dmoe import dMoE
from .reference import ReferenceMoE


def expert_parameters(module: torch.nn.Module) -> dict:
    """The full state_dict name of every expert weight (w1, v1, w2) of every MoE layer in
    `module` (dMoE and ReferenceMoE, subclasses included, found by type; `module` itself
    too) -> that layer. A layer reachable under several names is listed under each, as
    state_dict lists it."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module={module!r}: expected a torch.nn.Module, a dMoE or ReferenceMoE or a model "
                        "containing them (expert weights are matched by their full names in it)")
    layer_types = (dMoE, ReferenceMoE)
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


__all__ = ["expert_parameters", "gather_expert_shards", "load_expert_shard", "shard_state_dict"]
