"""The autotuner: time every statically valid tile configuration of a problem on this GPU,
check each against the reference before it may win, and record all timings in the kernel
database, where the ops find the winner for the nearest token bucket.

The search space and its static pruning are C++ (autotune/search_space.cpp, shared with
C++ users); this module drives compilation (a thread pool over NVRTC), the checks and the
timing. A `Workload` supplies the data: `moejit.layer_workloads` builds the MoE layer's
on a GPU; tests inject their own workload and timer.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol, Sequence

from . import _core
from .runtime import Runtime

_logger = logging.getLogger("moejit")

# bf16/fp16 results checked against a float32 reference (relative Frobenius error).
CHECK_TOLERANCE = 2e-2


class Workload(Protocol):
    """The data one problem is tuned on."""

    def run(self, spec: _core.KernelSpec) -> None:
        """Launch the kernel of `spec` (the problem with one tile) once."""

    def error(self, spec: _core.KernelSpec) -> float:
        """Run once and return the relative error against the reference."""


Timer = Callable[[Callable[[], object]], float]   # milliseconds of one call, e.g. timing.median_ms


@dataclass(frozen=True)
class Candidate:
    tile: str
    ms: Optional[float] = None       # None: unusable
    failure: str = ""                # why it is unusable: compile, spills, launch, check
    registers: int = 0

    @property
    def usable(self) -> bool:
        return self.ms is not None


@dataclass(frozen=True)
class TuningResult:
    problem: _core.KernelSpec
    bucket: int
    best: Candidate
    heuristic: Candidate             # the untuned default, timed in the same run
    candidates: list[Candidate] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def speedup(self) -> float:
        """Tuned over untuned speed (1.0 when the heuristic won or could not run)."""
        if self.heuristic.ms is None or self.best.ms is None:
            return 1.0
        return self.heuristic.ms / self.best.ms


class Progress:
    """One status line on a terminal, updated in place; plain lines when piped."""

    def __init__(self, label: str, total: int, stream=None) -> None:
        self.label, self.total, self.done = label, total, 0
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def step(self, what: str) -> None:
        self.done += 1
        width = 24
        filled = width * self.done // max(self.total, 1)
        line = f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {what}"
        if self.tty:
            self.stream.write("\r" + line[:120].ljust(120))
            if self.done == self.total:
                self.stream.write("\n")
        elif self.done == self.total or self.done % 10 == 0:
            self.stream.write(line + "\n")
        self.stream.flush()


def tune_problem(
    problem: _core.KernelSpec,
    workload: Workload,
    *,
    bucket: int,
    gpu_name: str,
    runtime: Runtime,
    timer: Timer,
    max_candidates: Optional[int] = None,
    compile_workers: Optional[int] = None,
    record: bool = True,
    progress: Optional[Progress] = None,
) -> TuningResult:
    """Tunes one problem (a spec whose tile is ignored) and records the result.

    Candidates that fail to compile, spill registers, fail to launch or disagree with the
    reference are scored unusable, never raised. Raises RuntimeError only when no
    candidate is usable.
    """
    start = time.perf_counter()
    tiles = _core.search_space(problem)
    if max_candidates is not None:
        tiles = tiles[:max_candidates]
    if not tiles:
        raise RuntimeError(f"no tile configuration fits {problem.problem_text()}")
    specs = [problem.with_tile(t) for t in tiles]

    def compile_one(spec: _core.KernelSpec):
        try:
            return runtime.compile(spec), ""
        except (RuntimeError, ValueError) as e:   # CompileError, SpecError
            return None, f"compile: {str(e).splitlines()[0]}"

    # NVRTC runs without the GIL, so threads compile in parallel.
    with ThreadPoolExecutor(max_workers=compile_workers or os.cpu_count() or 1) as pool:
        compiled = list(pool.map(compile_one, specs))

    candidates: list[Candidate] = []
    for spec, (kernel, failure) in zip(specs, compiled):
        tile = spec.tile.text()
        candidate = Candidate(tile, failure=failure)
        if kernel is not None:
            r = kernel.resources
            if r.spill_store_bytes or r.spill_load_bytes or r.stack_bytes:
                # Local memory: register spills (or, from a cached compile, a stack frame).
                candidate = Candidate(tile, failure=f"spills ({max(r.spill_store_bytes, r.stack_bytes)} bytes)",
                                      registers=r.registers)
            else:
                candidate = _measure(spec, workload, timer, r.registers)
        candidates.append(candidate)
        _logger.debug("candidate %s: %s", tile, "%.3f ms" % candidate.ms if candidate.usable else candidate.failure)
        if progress is not None:
            progress.step(f"{tile} {'%.3f ms' % candidate.ms if candidate.usable else candidate.failure}")

    usable = [c for c in candidates if c.usable]
    if not usable:
        reasons = "; ".join(f"{c.tile}: {c.failure}" for c in candidates[:5])
        raise RuntimeError(f"no usable candidate for {problem.problem_text()}: {reasons}")
    best = min(usable, key=lambda c: c.ms)
    result = TuningResult(problem, bucket, best, candidates[0], candidates, time.perf_counter() - start)
    _logger.info("tuned %s at token bucket %d on %s: %s %.3f ms (untuned %s), %d of %d candidates usable, %.1f s",
                 problem.short_name(), bucket, gpu_name, best.tile, best.ms,
                 "%.3f ms" % result.heuristic.ms if result.heuristic.usable else result.heuristic.failure,
                 len(usable), len(candidates), result.seconds)
    if record:
        entry = _core.TuningEntry()
        entry.problem = problem.problem_text()
        entry.target = problem.target.text()
        entry.gpu_name = gpu_name
        entry.token_bucket = bucket
        entry.best_tile = best.tile
        entry.best_ms = best.ms
        entry.candidates_json = json.dumps(
            [{"tile": c.tile, "ms": c.ms, "failure": c.failure, "registers": c.registers} for c in candidates])
        entry.tuned_at = time.time()
        runtime.record_tuning(entry)
    return result


def _measure(spec: _core.KernelSpec, workload: Workload, timer: Timer, registers: int) -> Candidate:
    tile = spec.tile.text()
    try:
        err = workload.error(spec)
    except (RuntimeError, ValueError) as e:
        return Candidate(tile, failure=f"launch: {str(e).splitlines()[0]}", registers=registers)
    if not err <= CHECK_TOLERANCE:   # NaN fails too
        return Candidate(tile, failure=f"check: relative error {err:.2e}", registers=registers)
    try:
        ms = timer(lambda: workload.run(spec))
    except (RuntimeError, ValueError) as e:
        return Candidate(tile, failure=f"launch: {str(e).splitlines()[0]}", registers=registers)
    return Candidate(tile, ms=ms, registers=registers)


def rank(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Usable candidates fastest first, then the unusable ones."""
    return sorted(candidates, key=lambda c: (not c.usable, c.ms if c.usable else 0.0))
