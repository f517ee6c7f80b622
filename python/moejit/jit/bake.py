"""Baking: every kernel a set of models needs, for several GPU architectures, compiled into
one kernel database file that ships (in a wheel, or beside a training job) so that a
cluster starts warm with no compiler (`moejit db bake`; docs/kernel-database.md).

What a model needs: its layer's products, routing, permutation and activation kernels,
forward and backward (layer_kernels.all_layer_kernels), in each dtype and block size
asked for, with the heuristic tile of the target's kernel family and every tile a GPU's
tuning chose for the same problem (tuning records already in the file, for instance
merged with `moejit db import`). Compilation needs NVRTC only, no GPU, and runs on
several threads: NVRTC compiles one kernel per thread at a time.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

from .. import _core
from .layer_kernels import all_layer_kernels
from .specs import BLOCK_SIZES, DTYPES
from ..zoo import ModelShape


@dataclass(frozen=True)
class BakeKernel:
    """One kernel to bake, and why: the model, and the GPUs whose tuning chose its tile."""

    spec: _core.KernelSpec
    model: str
    tuned_on: tuple[str, ...] = ()


@dataclass
class BakeReport:
    path: str
    kernels: int = 0
    compiled: int = 0
    already_there: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)   # (spec text, error)
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)              # combinations a model cannot take


def _tuned_tiles(tunings: Iterable) -> dict[tuple[str, str], set[str]]:
    """(problem text, tile text) -> the GPUs that chose that tile for that problem; from
    tuning records (kernel_db.TuningRow or _core.TuningEntry)."""
    chosen: dict[tuple[str, str], set[str]] = {}
    for t in tunings:
        chosen.setdefault((t.problem, t.best_tile), set()).add(t.gpu_name)
    return chosen


def bake_plan(shapes: Sequence[ModelShape], targets: Sequence[str], dtypes: Sequence[str] = DTYPES,
              block_sizes: Sequence[int] = BLOCK_SIZES,
              tunings: Iterable = ()) -> tuple[list[BakeKernel], list[str]]:
    """The kernels to bake, each once, and the (model, target, dtype, block) combinations
    the model's shape cannot take (an ffn size the block does not divide, say)."""
    for name, values, allowed in (("dtypes", dtypes, DTYPES), ("block_sizes", block_sizes, BLOCK_SIZES)):
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise ValueError(f"{name}={list(values)!r}: expected a non-empty list of {', '.join(map(str, allowed))}")
    if not targets:
        raise ValueError("targets=[]: expected at least one architecture such as sm_90a")
    targets = [_core.Target(t).text() for t in targets]   # SpecError names a bad one
    tuned = _tuned_tiles(tunings)
    by_problem: dict[str, list[tuple[str, set[str]]]] = {}
    for (problem, tile), gpus in tuned.items():
        by_problem.setdefault(problem, []).append((tile, gpus))
    plan: dict[str, BakeKernel] = {}
    skipped: list[str] = []

    def add(spec: _core.KernelSpec, model: str, gpus: tuple[str, ...] = ()) -> None:
        text = spec.text()
        if text not in plan:
            plan[text] = BakeKernel(spec, model, gpus)

    for shape in shapes:
        for target in targets:
            for dtype in dtypes:
                for block in block_sizes:
                    try:
                        kernels = all_layer_kernels(shape, target=target, dtype=dtype, block_size=block)
                    except ValueError as e:
                        skipped.append(f"{shape.name} {target} {dtype} block {block}: {e}")
                        continue
                    for kernel in kernels:
                        add(kernel.spec, shape.name)
                        if _core.is_routing(kernel.spec.op):
                            continue
                        for tile, gpus in by_problem.get(kernel.spec.problem_text(), []):
                            tuned_spec = kernel.spec.with_tile(_core.TileConfig.parse(tile))
                            try:
                                tuned_spec.validate()
                            except _core.SpecError:
                                continue   # tuned for the other family: this target cannot run it
                            add(tuned_spec, shape.name, tuple(sorted(gpus)))
    return list(plan.values()), skipped


# The NVRTC release that first compiles for each architecture family.
_FIRST_NVRTC = {8: (11, 0), 9: (11, 8), 10: (12, 8)}


def default_targets(nvrtc_version: str) -> list[str]:
    """The architectures a bake covers by default: Ampere (sm_80, the portable mma
    family), Hopper (sm_90a, wgmma) and Blackwell (sm_100a) where this NVRTC knows it."""
    version = tuple(int(p) for p in nvrtc_version.split(".")[:2])
    return [t for t, major in (("sm_80", 8), ("sm_90a", 9), ("sm_100a", 10)) if version >= _FIRST_NVRTC[major]]


def bake(path: str, kernels: Sequence[BakeKernel], jobs: Optional[int] = None,
         progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
         runtime=None) -> BakeReport:
    """Compiles `kernels` into the database at `path` (created if missing), `jobs` at a
    time (default: the CPUs this process may use). A kernel already stored there under
    the same key is not compiled again; one that fails to compile is reported, and the
    others are still baked."""
    from .runtime import Runtime

    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs={jobs}: expected a positive number of parallel compiles")
    jobs = jobs or max(1, len(os.sched_getaffinity(0)))
    if runtime is None:
        config = _core.KernelDbConfig()
        config.cache_path = os.path.abspath(path)
        config.cache_max_bytes = 1 << 62   # a baked file keeps everything: no eviction
        runtime = Runtime(database=config, origin="bake")
    report = BakeReport(path=os.path.abspath(path), kernels=len(kernels))
    start = time.perf_counter()
    before = runtime.core.stats
    done = 0

    def one(kernel: BakeKernel) -> None:
        runtime.compile(kernel.spec)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(one, k): k for k in kernels}
        for future in as_completed(futures):
            kernel = futures[future]
            done += 1
            error = future.exception()
            if error is not None:
                report.failed.append((kernel.spec.text(), f"{type(error).__name__}: {error}"))
            status = "FAILED" if error is not None else "ok"
            progress(f"[{done}/{len(kernels)}] {kernel.spec.target.text()} {kernel.spec.short_name()} "
                     f"({kernel.model}{', tuned on ' + ', '.join(kernel.tuned_on) if kernel.tuned_on else ''}) "
                     f"{status}")
    after = runtime.core.stats
    report.compiled = after.compiled - before.compiled
    report.already_there = after.database_hits - before.database_hits
    report.seconds = time.perf_counter() - start
    return report
