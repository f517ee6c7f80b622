"""moejit.dMoE: a dropless Mixture-of-Experts layer on generated block-sparse kernels.

    layer = moejit.dMoE(hidden_size=4096, ffn_hidden_size=14336, num_experts=8, top_k=2,
                        activation="silu", glu=True, dtype=torch.bfloat16, device="cuda")
    y = layer(x)                          # x [..., hidden] -> y [..., hidden]
    loss = task_loss + layer.load_balancing_loss

Forward: router (linear, softmax in float32, top-k, optional p-norm normalisation, jitter
in training) -> moejit.route (GPU bookkeeping) -> padded_gather -> expert_sdd (x @ w1.t(),
and x @ v1.t() for GLU) -> expert_activation (one generated kernel: act(h) [* gate]) ->
expert_dsd (h @ w2) -> weighted_scatter (+ bias).
Backward through registered autograd of each op. No host synchronisation anywhere, so a
layer call can be captured in a CUDA graph; the routing buffers are sized for the worst
routing (see moejit.ops.routing).

Parameters (MegaBlocks' layout, so checkpoints map one to one):
    router.weight   [num_experts, hidden]
    w1              [num_experts * ffn_hidden_size, hidden]   expert e: rows e*F .. (e+1)*F
    v1              [num_experts * ffn_hidden_size, hidden]   the GLU gate (glu=True only)
    w2              [num_experts * ffn_hidden_size, hidden]
    bias            [hidden]                                  (bias=True only)

Expert parallelism (moejit.layer.expert_parallel): with `expert_parallel_group`, a
torch.distributed group of W ranks (NCCL for CUDA tensors), each rank holds E/W experts
(rank r: experts [r*E/W, (r+1)*E/W), w1/v1/w2 [E/W * ffn, hidden]) and a replicated router
and bias. Each rank routes its own tokens and sends each token once to every rank holding
one of its chosen experts, with those experts' ids and weights (counts first: one host
synchronisation per forward call to read the split sizes); that rank computes its local
experts with the same kernels (routed by local expert id), sums each token's experts and
sends one row back; the backward mirrors it. After each call `exchange_traffic`
(moejit.layer.exchange_traffic.ExchangeTraffic) says what crossed ranks. The
layer does NOT all-reduce the gradients of the replicated router and bias (nor average any
gradient): as in MegaBlocks, data parallelism over the same ranks does that. The expert
weights' gradients are complete on their rank (every token routed to them, from every
rank). A group of one rank computes exactly as no group. moejit.layer.expert_sharding builds a
rank's shard from a full layer's state (load_expert_shard) and gathers it back
(gather_expert_shards).

NaN in the input or router logits: the routing stays valid (torch.topk returns in-range
indices for NaN scores), and the affected tokens' outputs are NaN; other tokens' outputs
are unaffected in the forward pass. No error is raised: detecting NaN would cost a host
synchronisation per call.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from ..ops.activation import ACTIVATIONS, expert_activation
from .exchange_traffic import ExchangeTraffic
from .expert_parallel import chunk_boundaries, expert_parallel_moe
from ..ops.expert_products import expert_dsd, expert_sdd
from .expert_sharding import ExpertSharding
from ..jit.layer_kernels import check_layer_shape
from ..ops.permutation import padded_gather, weighted_scatter
from ..ops.routing import KERNEL_DEVICE_TYPES, check_expert_indices, route

# The PyTorch functions of the activations the generated kernel computes (the reference
# layer uses them).
_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    # MegaBlocks' default activation: GELU with the tanh approximation.
    "gelu": lambda t: F.gelu(t, approximate="tanh"),
    "gelu_exact": F.gelu,
    "silu": F.silu,
    "relu": F.relu,
}
assert tuple(_ACTIVATIONS) == ACTIVATIONS
_DTYPES = (torch.bfloat16, torch.float16)


def _layer_target(device) -> str:
    """The compile target whose kernels a layer on `device` uses, for the shape rule: the
    GPU's where the device is a visible CUDA GPU, else sm_90a (moejit's default target)."""
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        from ..jit.runtime import default_runtime

        index = device.index if device.index is not None else torch.cuda.current_device()
        return default_runtime().target_for(index).text()
    return "sm_90a"


def _activation_name(fn: Union[str, Callable, None]) -> str:
    """The activation's name from a name or from the PyTorch function MegaBlocks passes."""
    if fn is None:
        return "gelu"
    if isinstance(fn, str):
        return fn
    if isinstance(fn, functools.partial) and fn.func is F.gelu and not fn.args and fn.keywords == {"approximate": "tanh"}:
        return "gelu"
    for name, known in (("gelu_exact", F.gelu), ("silu", F.silu), ("relu", F.relu)):
        if fn is known:
            return name
    raise ValueError(f"activation_fn={fn!r}: expected one of {', '.join(_ACTIVATIONS)} or the function it names "
                     "(partial(F.gelu, approximate='tanh'), F.gelu, F.silu, F.relu)")


def activation_function(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation={name!r}: expected one of {', '.join(_ACTIVATIONS)}") from None


def router_probabilities(logits: torch.Tensor, top_k: int, normalize_expert_weights: Optional[float]):
    """(scores [T, E], expert_weights [T, k], expert_indices [T, k] int64); the scores in
    float32, or in float64 for float64 logits (the reference layer's gradient checks)."""
    scores = logits.to(torch.promote_types(logits.dtype, torch.float32)).softmax(dim=-1)
    expert_indices = torch.topk(scores, top_k, dim=-1).indices
    return scores, chosen_expert_weights(scores, expert_indices, normalize_expert_weights), expert_indices


def chosen_expert_weights(scores: torch.Tensor, expert_indices: torch.Tensor,
                          normalize_expert_weights: Optional[float]) -> torch.Tensor:
    """The scores of the chosen experts, divided by their p-norm if normalize_expert_weights = p."""
    weights = scores.gather(1, expert_indices)
    if normalize_expert_weights is not None:
        weights = weights / torch.norm(weights, p=normalize_expert_weights, dim=-1, keepdim=True)
    return weights


def init_weights(params: Sequence[Optional[torch.Tensor]], std: float) -> None:
    """MegaBlocks' initialisation of the router and expert weights: N(0, std) each (None skipped)."""
    with torch.no_grad():
        for p in params:
            if p is not None:
                p.normal_(0.0, std)


def load_balancing_loss(scores: torch.Tensor, expert_counts: torch.Tensor, top_k: int, weight: float) -> torch.Tensor:
    """MegaBlocks' auxiliary loss for one layer: weight * E / (T * k) * sum_e count_e * mean_t scores[t, e].

    It is `weight` when routing is uniform and grows as it concentrates."""
    tokens, experts = scores.shape
    scale = weight * experts / max(tokens * top_k, 1)
    # sum / max(T, 1) rather than mean: an empty batch gives 0, not NaN.
    return scale * torch.dot(expert_counts.to(scores.dtype), scores.sum(dim=0) / max(tokens, 1))


class dMoE(torch.nn.Module):
    """A dropless MoE layer on generated kernels (see the module docstring, moejit.layer.dmoe).

        layer = moejit.dMoE(4096, 14336, num_experts=8, top_k=2, activation="silu", glu=True,
                            device="cuda")
        y = layer(x)                      # x [..., hidden_size] -> y [..., hidden_size]

    Arguments:
        hidden_size: the model's hidden size H (each token's width).
        ffn_hidden_size: each expert's ffn size F, a multiple of block_size.
        num_experts: the number of experts E.
        top_k: experts per token (1 to num_experts).
        activation: "gelu" (tanh-approximated, MegaBlocks' default), "gelu_exact", "silu" or "relu".
        glu: gated experts, activation(x w1.t()) * (x v1.t()) (SwiGLU with "silu").
        bias: a learned output bias [hidden_size].
        normalize_expert_weights: None, or p: the chosen experts' weights divided by their p-norm.
        router_jitter: in training, scale the router's input by uniform noise in [1 - j, 1 + j].
        load_balancing_loss_weight: the auxiliary loss's weight (see below).
        block_size: the sparse block size, 64 or 128.
        init_std: standard deviation of the normal initialisation of the router and expert weights.
        dtype: torch.bfloat16 or torch.float16 (the kernels' element types).
        device: where the parameters live (a CUDA device to run; "meta" for shapes only).
        expert_parallel_group: a torch.distributed group over which the experts are spread
            (see the module docstring); None or a group of one rank: every expert here.
        exchange_chunks: split the rank's tokens into this many parts, each exchanged on its
            own, so that one part's expert computation overlaps the other parts' exchanges
            (moejit.layer.expert_parallel; 1, the default, does not split; the same on every rank).

    The sizes must be ones the kernels take (moejit.jit.layer_kernels.check_layer_shape, the
    rule `moejit build` applies too); a ValueError names the argument otherwise.

    After an expert-parallel call, `exchange_traffic` says what it moved between ranks (None
    without an exchange). After a training-mode forward, `load_balancing_loss` holds this call's auxiliary loss (a
    scalar tensor; None before, and None after an eval-mode forward);
    `collect_load_balancing_loss(model)` averages it over a model's dMoE layers.
    """

    def __init__(
        self,
        hidden_size: int,
        ffn_hidden_size: int,
        num_experts: int,
        top_k: int,
        *,
        activation: str = "gelu",
        glu: bool = False,
        bias: bool = False,
        normalize_expert_weights: Optional[float] = None,
        router_jitter: float = 0.0,
        load_balancing_loss_weight: float = 0.1,
        block_size: int = 128,
        init_std: float = 0.02,
        dtype: torch.dtype = torch.bfloat16,
        device=None,
        expert_parallel_group: Any = None,
        exchange_chunks: int = 1,
    ) -> None:
        super().__init__()
        if dtype not in _DTYPES:
            raise ValueError(f"dtype={dtype}: expected torch.bfloat16 or torch.float16")
        check_layer_shape(hidden_size, ffn_hidden_size, num_experts, top_k, block_size=block_size,
                          dtype="bf16" if dtype == torch.bfloat16 else "fp16", target=_layer_target(device))
        if not 0.0 <= router_jitter < 1.0:
            raise ValueError(f"router_jitter={router_jitter!r}: expected 0 <= jitter < 1")
        if normalize_expert_weights is not None and not normalize_expert_weights > 0:
            raise ValueError(f"normalize_expert_weights={normalize_expert_weights!r}: expected None or a p > 0")
        chunk_boundaries(1, exchange_chunks)   # validates it
        self.expert_sharding = ExpertSharding.of(expert_parallel_group, num_experts)
        self.exchange_chunks = exchange_chunks
        self.hidden_size = hidden_size
        self.ffn_hidden_size = ffn_hidden_size
        self.num_experts = num_experts
        self.top_k = top_k
        self.activation = activation
        activation_function(activation)   # an unknown name fails here, not at the first call
        self.glu = glu
        self.normalize_expert_weights = normalize_expert_weights
        self.router_jitter = router_jitter
        self.load_balancing_loss_weight = load_balancing_loss_weight
        self.block_size = block_size
        self.load_balancing_loss: Optional[torch.Tensor] = None
        self.exchange_traffic: Optional[ExchangeTraffic] = None

        factory = dict(dtype=dtype, device=device)
        self.router = torch.nn.Linear(hidden_size, num_experts, bias=False, **factory)
        rows = self.num_local_experts * ffn_hidden_size
        self.w1 = torch.nn.Parameter(torch.empty(rows, hidden_size, **factory))
        self.v1 = torch.nn.Parameter(torch.empty(rows, hidden_size, **factory)) if glu else None
        self.w2 = torch.nn.Parameter(torch.empty(rows, hidden_size, **factory))
        self.bias = torch.nn.Parameter(torch.zeros(hidden_size, **factory)) if bias else None
        init_weights([self.router.weight, self.w1, self.v1, self.w2], init_std)

    @classmethod
    def from_megablocks(cls, *, hidden_size: int, ffn_hidden_size: int, moe_num_experts: int, moe_top_k: int = 1,
                        activation_fn: Union[str, Callable, None] = None, mlp_type: str = "mlp", bias: bool = False,
                        moe_jitter_eps: Optional[float] = None, moe_normalize_expert_weights: Optional[float] = None,
                        moe_loss_weight: float = 0.1, init_std: float = 0.02, fp16: bool = False, bf16: bool = True,
                        device=None, block_size: int = 128, moe_expert_model_parallelism: bool = False,
                        expert_parallel_group: Any = None, **ignored: Any) -> "dMoE":
        """A dMoE from MegaBlocks' argument names (megablocks.layers.arguments.Arguments), so
        `dMoE.from_megablocks(**vars(args))` works. activation_fn is a name ("gelu" is
        MegaBlocks' default, tanh GELU) or one of the functions it names (MegaBlocks' default
        partial(F.gelu, approximate="tanh"), F.gelu, F.silu, F.relu); mlp_type "glu" is
        SwiGLU-style gating with activation_fn (MegaBlocks' GLU); expert_parallel_group is
        used where moe_expert_model_parallelism is set. Arguments that have no meaning here
        (moe_capacity_factor: the layer is dropless; num_layers, mlp_impl, quantisation,
        init_method, ...) are accepted and named in one MoejitWarning."""
        if mlp_type not in ("mlp", "glu"):
            raise ValueError(f"mlp_type={mlp_type!r}: expected 'mlp' or 'glu'")
        if fp16 and bf16:
            raise ValueError("fp16=True and bf16=True: expected at most one of them")
        if ignored:
            from ..jit.runtime import MoejitWarning

            warnings.warn(f"dMoE.from_megablocks ignores {', '.join(sorted(ignored))}: moejit's dMoE is dropless "
                          "(no capacity factor) and has no setting for the others", MoejitWarning, stacklevel=2)
        return cls(hidden_size, ffn_hidden_size, moe_num_experts, moe_top_k,
                   activation=_activation_name(activation_fn), glu=mlp_type == "glu", bias=bias,
                   normalize_expert_weights=moe_normalize_expert_weights, router_jitter=moe_jitter_eps or 0.0,
                   load_balancing_loss_weight=moe_loss_weight, block_size=block_size, init_std=init_std,
                   dtype=torch.float16 if fp16 else torch.bfloat16, device=device,
                   expert_parallel_group=expert_parallel_group if moe_expert_model_parallelism else None)

    @property
    def num_local_experts(self) -> int:
        """The experts this rank holds: num_experts without a group."""
        return self.num_experts if self.expert_sharding is None else self.expert_sharding.experts_per_rank

    def extra_repr(self) -> str:
        sharding = self.expert_sharding
        parallel = "" if sharding is None else (f", experts {sharding.first_expert}.."
                                                f"{sharding.first_expert + sharding.experts_per_rank - 1} "
                                                f"on rank {sharding.rank} of {sharding.world_size}")
        return (f"hidden_size={self.hidden_size}, ffn_hidden_size={self.ffn_hidden_size}, "
                f"num_experts={self.num_experts}, top_k={self.top_k}, activation={self.activation!r}, "
                f"glu={self.glu}, bias={self.bias is not None}, block_size={self.block_size}{parallel}")

    def route(self, x: torch.Tensor):
        """Router of [tokens, hidden] input: (scores, expert_weights, expert_indices)."""
        if self.training and self.router_jitter > 0:
            x = x * torch.empty_like(x).uniform_(1.0 - self.router_jitter, 1.0 + self.router_jitter)
        return router_probabilities(self.router(x), self.top_k, self.normalize_expert_weights)

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 1 or x.shape[-1] != self.hidden_size:
            raise ValueError(f"x.shape={tuple(x.shape)}: expected [..., hidden_size={self.hidden_size}]")
        if x.dtype != self.w1.dtype:
            raise ValueError(f"x.dtype={x.dtype}: expected {self.w1.dtype}, the dtype of the layer's parameters")
        if x.device.type not in KERNEL_DEVICE_TYPES:
            raise ValueError(f"x.device={x.device}: expected a CUDA device (moejit's kernels run on NVIDIA GPUs: "
                             "move the layer and its input there, e.g. with .cuda(); or meta, for shapes only)")
        if x.device != self.w1.device:
            raise ValueError(f"x.device={x.device}: expected {self.w1.device}, the device of the layer's parameters")

    def forward(self, x: torch.Tensor, expert_indices: Optional[torch.Tensor] = None) -> torch.Tensor:
        """`expert_indices` [tokens, top_k] overrides the router's choice (the weights are still
        the router's scores of the given experts): for tests and forced routing."""
        self._check_input(x)
        shape = x.shape
        x = x.reshape(-1, self.hidden_size)
        scores, weights, indices = self.route(x)
        if expert_indices is not None:
            indices = expert_indices.reshape(x.shape[0], self.top_k).to(torch.int64)
            check_expert_indices(indices, self.num_experts)
            weights = chosen_expert_weights(scores, indices, self.normalize_expert_weights)
        if self.expert_sharding is not None and self.expert_sharding.exchanges:
            self.expert_sharding.check_device(x.device)
            y, expert_counts, self.exchange_traffic = expert_parallel_moe(
                x, weights, indices, self._local_experts, self._expert_weights(), self.expert_sharding,
                chunks=self.exchange_chunks)
        else:
            y, plan = self._experts(x, weights, indices, self.num_experts, self._expert_weights())
            expert_counts = plan.expert_counts
        self.load_balancing_loss = (
            load_balancing_loss(scores, expert_counts, self.top_k, self.load_balancing_loss_weight)
            if self.training else None)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(shape)

    def _expert_weights(self) -> list[torch.Tensor]:
        return [p for p in (self.w1, self.v1, self.w2) if p is not None]

    def _experts(self, x: torch.Tensor, weights: Optional[torch.Tensor], indices: torch.Tensor, num_experts: int,
                 params: Sequence[torch.Tensor]):
        """sum_j weights[t, j] * MLP_{indices[t, j]}(x[t]) on the kernels (a plain sum when
        weights is None); (y, routing plan)."""
        w1, v1, w2 = params if self.glu else (params[0], None, params[1])
        top_k = indices.shape[1]
        # Indices come from the router's top-k, from forward (checked there) or from the
        # expert-parallel exchange: all in range, so route need not check them again.
        plan = route(indices, num_experts, self.block_size, self.ffn_hidden_size, check_indices=False)
        rows = padded_gather(x, plan, top_k)
        gate = expert_sdd(rows, v1, plan) if self.glu else None
        h = expert_activation(expert_sdd(rows, w1, plan), gate, plan, self.activation)
        return weighted_scatter(expert_dsd(h, w2, plan), plan, weights, top_k=top_k), plan

    def _local_experts(self, rows: torch.Tensor, expert_ids: torch.Tensor, params: Sequence[torch.Tensor]):
        """moejit.layer.expert_parallel's local computation on the kernels: rows routed by local
        expert id (top-1, weight 1, so the scatter only un-permutes). The exchange calls it
        only with rows."""
        return self._experts(rows, None, expert_ids.view(-1, 1), self.num_local_experts, params)[0]


def collect_load_balancing_loss(model: torch.nn.Module) -> Optional[torch.Tensor]:
    """The mean of every dMoE layer's load_balancing_loss from the last training forward
    (None if there is none): add it to the task loss. The mean, as MegaBlocks' batched loss
    divides by the number of layers, so a model's loss_weight means the same in both."""
    losses = [m.load_balancing_loss for m in model.modules()
              if isinstance(m, dMoE) and m.load_balancing_loss is not None]
    return torch.stack(losses).mean() if losses else None


__all__ = ["dMoE", "collect_load_balancing_loss", "load_balancing_loss", "init_weights", "router_probabilities", "chosen_expert_weights",
           "activation_function"]
