"""`moejit bench layer`: the whole dMoE layer at one model shape, forward and forward +
backward, on moejit.dMoE and each peer layer, on the same weights and random tokens.

Every MoE layer is first checked against a float32 reference (moejit.ops.reference.
moe_layer_reference) on the same routing: the output y, the input gradient dx and the
w1 gradient dw1. The dense MLP computes another function with the same FLOPs, so it is
only timed. Backward is y.backward(dy) with a random dy; the load-balancing loss is
computed (training mode) but not added to it, alike for every layer.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import torch

from ...ops.reference import moe_layer_reference, relative_error
from ...zoo import ModelShape
from .flops import LAYER_CASES, dense_mlp_width, expert_matrices, layer_flops
from .layer_peers import DenseMLP, GroupedMMMoE, LayerSystem, init_moe_parameters, megablocks_dmoe, moejit_dmoe
from .measurement import Measurer, Trial, measure_systems
from .ratios import fill_ratios, speedups
from .results import BenchCase
from .routing import route
from .systems import unavailable
from .token_layout import TokenLayout

LAYER_PRODUCTS = {
    "forward": "router, top-k, permutation, {n} expert products, activation, weighted combine",
    "forward+backward": "the forward and all its gradients (input, weights, router)",
}
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class _Inputs:
    """`copies` token sets x [T, H] (leaves that need a gradient, as a layer's input in
    training does) and output gradients dy, handed out in turn."""

    def __init__(self, tokens: int, hidden: int, *, copies: int, dtype: torch.dtype, device,
                 generator: torch.Generator) -> None:
        def randn() -> torch.Tensor:
            return torch.randn(tokens, hidden, device=device, generator=generator).to(dtype)

        self.x = [randn().requires_grad_() for _ in range(copies)]
        self.dy = [randn() for _ in range(copies)]
        self._turn = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        i = self._turn % len(self.x)
        self._turn += 1
        return self.x[i], self.dy[i]


def _clear_grads(system: LayerSystem, x: torch.Tensor) -> None:
    # A training step starts from no gradients (optimizer.zero_grad(set_to_none=True)).
    x.grad = None
    for p in system.module.parameters():
        p.grad = None


def _forward(system: LayerSystem, inputs: _Inputs) -> Callable[[], torch.Tensor]:
    def call() -> torch.Tensor:
        x, _ = inputs.next()
        return system.forward(x)
    return call


def _step(system: LayerSystem, inputs: _Inputs) -> Callable[[], None]:
    def call() -> None:
        x, dy = inputs.next()
        _clear_grads(system, x)
        system.forward(x).backward(dy)
    return call


def _reference(layer: GroupedMMMoE, x: torch.Tensor, dy: torch.Tensor) -> dict[str, torch.Tensor]:
    """y, dx and dw1 in float32. The experts are those the layer's own (bf16) router picks
    (float32 logits could order near-ties differently); their weights are the float32
    softmax, differentiable, so dx includes the path through the router."""
    with torch.no_grad():
        experts = route(layer.router(x), layer.top_k, layer.normalize_expert_weights).experts
    x32 = x.detach().float().requires_grad_()
    w1 = layer.w1.detach().float().requires_grad_()
    w2 = layer.w2.detach().float()
    v1 = None if layer.v1 is None else layer.v1.detach().float()
    probabilities = torch.softmax(x32 @ layer.router.weight.detach().float().t(), dim=-1)
    weights = probabilities.gather(1, experts)
    if layer.normalize_expert_weights is not None:
        weights = weights / weights.norm(p=layer.normalize_expert_weights, dim=-1, keepdim=True)
    y = moe_layer_reference(x32, experts, weights, w1, w2, v1, layer.act, layer.num_experts)
    y.backward(dy.float())
    return {"y": y.detach(), "dx": x32.grad, "dw1": w1.grad}


def _check(system: LayerSystem, case: str, x: torch.Tensor, dy: torch.Tensor,
           reference: dict[str, torch.Tensor]) -> dict[str, float]:
    _clear_grads(system, x)
    y = system.forward(x)
    checks = {"y": relative_error(y.detach(), reference["y"])}
    if case == "forward+backward":
        y.backward(dy)
        checks["dx"] = relative_error(x.grad, reference["dx"]) if x.grad is not None else float("inf")
        if system.w1 is not None:
            grad = system.w1.grad
            checks["dw1"] = relative_error(grad, reference["dw1"]) if grad is not None else float("inf")
    _clear_grads(system, x)
    return checks


def bench_layer(shape: ModelShape, peers: list[str], *, measurer: Measurer, dtype: str = "bf16",
                block_size: int = 128, seed: int = 0, device="cuda", rounds: int = 1,
                log: Callable[[str], None] = print) -> tuple[list[BenchCase], list[str]]:
    """The two layer cases of `shape` (flops.LAYER_CASES) and notes on what was skipped;
    the systems of a case are timed in `rounds` interleaved rounds (measure_systems)."""
    if dtype not in _DTYPES:
        raise ValueError(f"dtype={dtype!r}: expected one of {', '.join(_DTYPES)}")
    torch_dtype = _DTYPES[dtype]
    gen = torch.Generator(device=device).manual_seed(seed)
    notes: list[str] = []
    config = dict(activation=shape.activation, glu=shape.glu)

    mine, why = moejit_dmoe(shape.hidden, shape.ffn, shape.experts, shape.top_k, block_size=block_size,
                            dtype=torch_dtype, device=device, **config)
    if mine is not None:
        grouped = GroupedMMMoE.from_parameters(mine.router.weight, mine.w1, mine.w2, getattr(mine, "v1", None),
                                               top_k=shape.top_k, activation=shape.activation)
        # Both layers see the same well-scaled random weights.
        init_moe_parameters(grouped.router.weight, grouped.w1, grouped.w2, grouped.v1, generator=gen)
    else:
        notes.append(why)
        grouped = GroupedMMMoE(shape.hidden, shape.ffn, shape.experts, shape.top_k, dtype=torch_dtype, device=device,
                               generator=gen, **config)
    grouped.train()

    systems: list[LayerSystem] = []
    if mine is not None:
        systems.append(LayerSystem("moejit", mine, mine, mine.w1))
    for name in peers:
        reason = unavailable(name)
        if reason is None:
            try:
                if name == "grouped_mm":
                    systems.append(LayerSystem("grouped_mm", grouped, grouped, grouped.w1))
                elif name == "dense":
                    mlp = DenseMLP(shape.hidden, dense_mlp_width(shape), dtype=torch_dtype, device=device,
                                   generator=gen, **config)
                    systems.append(LayerSystem("dense", mlp, mlp, None, checked=False))
                elif name == "megablocks":
                    systems.append(megablocks_dmoe(grouped, dtype=torch_dtype, device=device))
                else:
                    raise ValueError(f"peer {name!r}: expected dense, grouped_mm or megablocks")
            except Exception as e:   # an installed peer that cannot build this layer
                reason = f"{name}: could not be set up ({type(e).__name__}: {e}); skipped"
        if reason is not None and reason not in notes:
            notes.append(reason)

    inputs = _Inputs(shape.tokens, shape.hidden, copies=2, dtype=torch_dtype, device=device, generator=gen)
    x0, dy0 = inputs.x[0], inputs.dy[0]
    with torch.no_grad():
        counts = route(grouped.router(x0), shape.top_k).counts()
    routing = TokenLayout.from_counts(counts, block_size).describe()
    log(f"[{shape.name}] routing: {routing['routed_tokens']} token-expert pairs, max/mean tokens per expert "
        f"{routing['max_over_mean']}")
    reference = _reference(grouped, x0, dy0)

    cases = []
    for case in LAYER_CASES:
        flops = layer_flops(shape, case)
        trials = []
        for system in systems:
            check: Optional[Callable[[], dict[str, float]]] = None
            if system.checked:
                check = (lambda s=system: _check(s, case, x0, dy0, reference))
            run = _forward(system, inputs) if case == "forward" else _step(system, inputs)
            trials.append(Trial(system.name, run, check, after=lambda s=system: _clear_grads(s, x0)))
        results = measure_systems(trials, flops, measurer, rounds)
        for result in results:
            log(f"[{shape.name}] {case:16s} {result.system:10s} {result.status()}")
        fill_ratios(results)
        product = LAYER_PRODUCTS[case].format(n=expert_matrices(shape.glu))
        cases.append(BenchCase(model=shape.name, shape=dataclasses.asdict(shape), case=case, product=product,
                               useful_flops=flops, routing=routing, results=results, speedups=speedups(results)))
    del systems, grouped, mine, inputs, reference
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return cases, notes
