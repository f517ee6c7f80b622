"""The one-GPU setting of the expert-parallel scripts (expert_parallel_overlap.py,
expert_parallel_sync.py): a one-rank NCCL group, in which moejit.layer.expert_parallel exchanges
with itself on NCCL's kernels and stream as it would with other GPUs, minus the link."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager

import torch
import torch.distributed as dist

import moejit
from moejit.layer.expert_sharding import ExpertSharding
from moejit.zoo import model


@contextmanager
def one_rank_nccl_group():
    """A one-rank NCCL process group on GPU 0 (no torchrun needed); yields the group."""
    torch.cuda.set_device(0)
    with tempfile.TemporaryDirectory() as tmp:
        dist.init_process_group("nccl", init_method=f"file://{os.path.join(tmp, 'store')}", rank=0, world_size=1)
        try:
            yield dist.group.WORLD
        finally:
            dist.destroy_process_group()


def one_rank_layer(name: str, group):
    """(shape, dMoE of the zoo model `name` on the GPU, the one-rank ExpertSharding of its
    experts): the layer itself has no group, so its forward is the single-GPU path, and
    expert_parallel_moe(..., sharding) is the exchange on the same kernels and weights."""
    shape = model(name)
    torch.manual_seed(0)
    layer = moejit.dMoE(shape.hidden, shape.ffn, shape.experts, shape.top_k, activation=shape.activation,
                        glu=shape.glu, device="cuda", init_std=0.02)
    return shape, layer, ExpertSharding(group, 0, 1, shape.experts)
