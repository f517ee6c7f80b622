"""moejit: a JIT compiler of block-sparse kernels for dropless Mixture-of-Experts training.

    import moejit
    topo = moejit.Topology.from_expert_counts(tokens_per_expert, block_size=128, ffn_hidden_size=F)
    h = moejit.ops.sdd(x, w1.t(), topo)      # sparse [tokens, E*F]
    y = moejit.ops.dsd(h, w2)                # dense  [tokens, H]
    print(moejit.source("sdd", n=E * F, k=H, trans_b=True))

    layer = moejit.dMoE(hidden_size=H, ffn_hidden_size=F, num_experts=E, top_k=2, device="cuda")
    y = layer(x)                             # forward and backward on generated kernels
    ep = moejit.dMoE(H, F, E, 2, device="cuda", expert_parallel_group=group)   # E/W experts per rank

Importing moejit, building specs and generating source need no GPU, no NVRTC and no
torch; the ops on tensors (moejit.ops, Topology, BlockSparseMatrix) import torch when
first used.
"""

import importlib

from ._core import (
    CompileError,
    CompiledKernel,
    DType,
    KernelSpec,
    OpKind,
    SpecError,
    Target,
    TileConfig,
    __version__,
    generate_source,
)
from .jit.inspection import KernelInspection, inspect
from .jit.kernel_db import KernelDb
from .jit.runtime import MoejitWarning, Runtime, default_runtime
from .jit.specs import kernel_spec, source
from .zoo import MODELS, ModelShape, model

# Names that need torch, imported on first access (PEP 562).
_TORCH_NAMES = {
    "ops": ("moejit.ops", None),
    "BlockSparseMatrix": ("moejit.ops", "BlockSparseMatrix"),
    "Topology": ("moejit.ops.topology", "Topology"),
    "TopologyError": ("moejit.ops.topology", "TopologyError"),
    "dMoE": ("moejit.layer.dmoe", "dMoE"),
    "collect_load_balancing_loss": ("moejit.layer.dmoe", "collect_load_balancing_loss"),
    "ReferenceMoE": ("moejit.layer.reference", "ReferenceMoE"),
    "route": ("moejit.ops.routing", "route"),
    "RoutingPlan": ("moejit.ops.routing", "RoutingPlan"),
    "padded_gather": ("moejit.ops.permutation", "padded_gather"),
    "weighted_scatter": ("moejit.ops.permutation", "weighted_scatter"),
    "expert_sdd": ("moejit.ops.expert_products", "expert_sdd"),
    "expert_dsd": ("moejit.ops.expert_products", "expert_dsd"),
    "expert_parallel": ("moejit.layer.expert_parallel", None),
    "expert_sharding": ("moejit.layer.expert_sharding", None),
    "expert_shards": ("moejit.layer.expert_shards", None),
    "load_expert_shard": ("moejit.layer.expert_shards", "load_expert_shard"),
    "gather_expert_shards": ("moejit.layer.expert_shards", "gather_expert_shards"),
}


def __getattr__(name: str):
    if name not in _TORCH_NAMES:
        raise AttributeError(f"module 'moejit' has no attribute {name!r}")
    module_name, attribute = _TORCH_NAMES[name]
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)


def __dir__() -> list[str]:
    """The names imported now and those imported on first access (_TORCH_NAMES)."""
    return sorted(set(globals()) | set(_TORCH_NAMES))

__all__ = [
    "BlockSparseMatrix",
    "ReferenceMoE",
    "RoutingPlan",
    "collect_load_balancing_loss",
    "dMoE",
    "expert_dsd",
    "expert_parallel",
    "expert_sdd",
    "expert_sharding",
    "expert_shards",
    "gather_expert_shards",
    "load_expert_shard",
    "padded_gather",
    "route",
    "weighted_scatter",
    "CompileError",
    "CompiledKernel",
    "DType",
    "KernelDb",
    "KernelInspection",
    "KernelSpec",
    "MODELS",
    "ModelShape",
    "MoejitWarning",
    "OpKind",
    "Runtime",
    "SpecError",
    "Target",
    "TileConfig",
    "Topology",
    "TopologyError",
    "__version__",
    "default_runtime",
    "generate_source",
    "inspect",
    "kernel_spec",
    "model",
    "ops",
    "source",
]
