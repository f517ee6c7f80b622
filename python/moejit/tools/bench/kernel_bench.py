"""`moejit bench kernels`: the layer's three products at one model shape, on moejit and
each peer, on the same random routing and data; each checked against the float32
reference, then timed.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from ...ops.reference import relative_error
from ...zoo import ModelShape
from .flops import KERNEL_CASES, KERNEL_PRODUCTS, kernel_flops
from .kernel_peers import KernelOperands, MoejitKernels, kernel_peer
from .measurement import Measurer, Trial, measure_systems
from .ratios import fill_ratios, speedups
from .results import BenchCase
from .systems import unavailable
from .token_layout import TokenLayout


def bench_kernels(shape: ModelShape, peers: list[str], *, measurer: Measurer, dtype: str = "bf16",
                  block_size: int = 128, seed: int = 0, runtime=None, rounds: int = 1,
                  log: Callable[[str], None] = print) -> tuple[list[BenchCase], list[str]]:
    """The three kernel cases of `shape` (flops.KERNEL_CASES) and notes on skipped peers;
    the systems of a case are timed in `rounds` interleaved rounds (measure_systems)."""
    import torch

    from ..measure_layer import LayerData

    data = LayerData(shape, dtype=dtype, block_size=block_size, seed=seed, copies=2, runtime=runtime,
                     verbose=False)
    layout = TokenLayout.from_counts(data.counts, block_size)
    routing = layout.describe()
    log(f"[{shape.name}] routing: {routing['routed_tokens']} token-expert pairs, max/mean tokens per expert "
        f"{routing['max_over_mean']}, {routing['block_padded_rows']} block-padded rows")
    operands = KernelOperands.from_layer_data(data, layout)
    systems: dict[str, object] = {"moejit": MoejitKernels(data, layout)}
    notes: list[str] = []
    for name in peers:
        why = unavailable(name)
        if why is None:
            try:
                systems[name] = kernel_peer(name, operands, data=data, layout=layout)
            except Exception as e:   # an installed peer that cannot take these operands
                why = f"{name}: could not be set up ({type(e).__name__}: {e}); skipped"
        if why is not None and why not in notes:
            notes.append(why)

    cases = []
    for case in KERNEL_CASES:
        flops = kernel_flops(case, layout.routed, shape.hidden, shape.ffn)
        reference = data.reference(case)
        if case != "dsd_t":
            reference = layout.from_padded(reference)
        trials = []
        for name, system in systems.items():
            check: Optional[Callable[[], dict[str, float]]] = None
            if name != "dense":
                check = (lambda s=system: {"out": relative_error(s.output(case), reference)})
            trials.append(Trial(name, lambda s=system: s.run(case), check))
        results = measure_systems(trials, flops, measurer, rounds)
        for result in results:
            log(f"[{shape.name}] {case:5s} {result.system:10s} {result.status()}")
        fill_ratios(results)
        cases.append(BenchCase(model=shape.name, shape=dataclasses.asdict(shape), case=case,
                               product=KERNEL_PRODUCTS[case], useful_flops=flops, routing=routing,
                               results=results, speedups=speedups(results)))
    del systems, operands, data
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return cases, notes
