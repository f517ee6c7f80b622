"""The autotuner: time every statically valid tile configuration of a problem on this GPU,
check each against the reference before it may win, and record all timings in the kernel
database, where the ops find the winner for the nearest token bucket.

Two passes. The screen times each candidate once, one after the other. A GPU under a long
run of GEMMs clocks down as it heats (on the H200 the same dense product measured up to
25% slower late in a process than early), so the screen favours whoever ran first, and
the best few tiles are often within a few percent of each other. The final therefore
re-times the untuned default and the fastest screened candidates together, interleaved
over rounds in rotating order (by default twice as many rounds as finalists, so each
takes every position equally often), and ranks them by the median over rounds of their
time relative to the round's median: clock drift between rounds cancels, and the winner
and its speedup over the default are measured side by side. The default stays unless a
finalist beat it by more than KEEP_DEFAULT_MARGIN, the noise between runs (then the best
scored of those wins). Without a final (finalists=1) the screen decides alone. A finalist
that fails in the final is scored unusable like any other.

The search space and its static pruning are C++ (autotune/search_space.cpp, shared with
C++ users); this module drives compilation (a thread pool over NVRTC), the checks and the
timing. A `Workload` supplies the data: `moejit.layer_workloads` builds the MoE layer's
on a GPU; tests inject their own workload and timer.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol, Sequence

from .. import _core
from ..jit.runtime import Runtime

_logger = logging.getLogger("moejit")

# bf16/fp16 results checked against a float32 reference (relative Frobenius error).
CHECK_TOLERANCE = 2e-2

# The final (see the top of this module): at most this many finalists, the untuned default
# among them; screened candidates within this fraction of the fastest screen time qualify
# (as wide as the drift over one screen, so a fast candidate timed late still gets in).
FINALISTS = 4
FINAL_MARGIN = 0.25
# The untuned default stays unless a finalist beat it by more than this (the median of
# their per-round time ratios): on the H200 a product's ratio to its peers moves 1-3%
# between runs, and a tile that won a final by 1% (mixtral-8x7b's sdd, 128x128 pingpong
# over the 128x256 default, 2026-11-29) then ran 6% behind the default, relative to
# torch._grouped_mm, in the benchmarks of two runs minutes apart. A win inside the noise
# changes the kernel for nothing.
KEEP_DEFAULT_MARGIN = 0.02


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
    # Finalists only: the final's timings, one per round, their median, and the median over
    # the rounds of this candidate's time over the round's median time (lower wins).
    final_times: tuple[float, ...] = ()
    final_ms: Optional[float] = None
    final_score: Optional[float] = None

    @property
    def usable(self) -> bool:
        return self.ms is not None

    @property
    def finalist(self) -> bool:
        return self.final_ms is not None

    @property
    def best_ms(self) -> Optional[float]:
        """The time to report: the final's where it ran in the final, else the screen's."""
        return self.final_ms if self.final_ms is not None else self.ms


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
        """Tuned over untuned speed (1.0 when the heuristic won or could not run): where both
        ran in the final, the median over its rounds of their time ratio within the round."""
        return _speedup(self.heuristic, self.best)


def _speedup(default: Candidate, other: Candidate) -> float:
    """`other`'s speed over `default`'s: see TuningResult.speedup."""
    if default.finalist and other.finalist:
        return statistics.median(x / y for x, y in zip(default.final_times, other.final_times))
    if default.best_ms is None or other.best_ms is None:
        return 1.0
    return default.best_ms / other.best_ms


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

    def note(self, what: str, last: bool = False) -> None:
        """A status after the counted steps (the tuner's final); piped, only the last."""
        line = f"{self.label} {what}"
        if self.tty:
            self.stream.write("\r" + line[:120].ljust(120) + ("\n" if last else ""))
        elif last:
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
    finalists: int = FINALISTS,
    final_rounds: Optional[int] = None,
) -> TuningResult:
    """Tunes one problem (a spec whose tile is ignored) and records the result.

    Candidates that fail to compile, spill registers, fail to launch or disagree with the
    reference are scored unusable, never raised. Raises RuntimeError only when no
    candidate is usable. `finalists` (at least 1; 1 skips the final) and `final_rounds`
    (default: twice the finalists) shape the final.
    """
    if finalists < 1:
        raise ValueError(f"finalists={finalists}: expected at least 1")
    if final_rounds is not None and final_rounds < 1:
        raise ValueError(f"final_rounds={final_rounds}: expected at least 1")
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
    chosen = _finalists(candidates, finalists)
    if len(chosen) > 1:
        rounds = final_rounds or 2 * len(chosen)
        final, failures = _final({i: specs[i] for i in chosen}, workload, timer, rounds, progress)
        for i, (times, score) in final.items():
            candidates[i] = dataclasses.replace(candidates[i], final_times=tuple(times),
                                                final_ms=statistics.median(times), final_score=score)
        for i, failure in failures.items():
            candidates[i] = Candidate(candidates[i].tile, failure=failure, registers=candidates[i].registers)
        usable = [c for c in candidates if c.usable]
        if not usable:
            reasons = "; ".join(f"{c.tile}: {c.failure}" for c in candidates[:5])
            raise RuntimeError(f"no usable candidate for {problem.problem_text()}: {reasons}")
        finished = [candidates[i] for i in final]
        best = min(finished, key=lambda c: c.final_score) if finished else min(usable, key=lambda c: c.ms)
        default = candidates[0]
        if best is not default and default.finalist:
            # The best-scored finalist that beat the default by more than the margin, if any.
            clear = [c for c in finished if c is not default and _speedup(default, c) >= 1 + KEEP_DEFAULT_MARGIN]
            if not clear:
                _logger.info("%s won the final by %.3fx over the default %s: within the margin (%.2f), the "
                             "default stays", best.tile, _speedup(default, best), default.tile,
                             KEEP_DEFAULT_MARGIN)
            best = min(clear, key=lambda c: c.final_score) if clear else default
    else:
        best = min(usable, key=lambda c: c.ms)
    result = TuningResult(problem, bucket, best, candidates[0], candidates, time.perf_counter() - start)
    _logger.info("tuned %s at token bucket %d on %s: %s %.3f ms (untuned %s), %d of %d candidates usable, "
                 "%d in the final, %.1f s",
                 problem.short_name(), bucket, gpu_name, best.tile, best.best_ms,
                 "%.3f ms" % result.heuristic.best_ms if result.heuristic.usable else result.heuristic.failure,
                 len(usable), len(candidates), len(chosen) if len(chosen) > 1 else 0, result.seconds)
    if record:
        entry = _core.TuningEntry()
        entry.problem = problem.problem_text()
        entry.target = problem.target.text()
        entry.gpu_name = gpu_name
        entry.token_bucket = bucket
        entry.best_tile = best.tile
        entry.best_ms = best.best_ms
        entry.candidates_json = json.dumps([_candidate_record(c) for c in candidates])
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


def _candidate_record(c: Candidate) -> dict:
    record = {"tile": c.tile, "ms": c.ms, "failure": c.failure, "registers": c.registers}
    if c.finalist:
        record.update(final_ms=c.final_ms, final_score=c.final_score, final_times=list(c.final_times))
    return record


def _finalists(candidates: Sequence[Candidate], count: int) -> list[int]:
    """Indices of the final's candidates: the untuned default (index 0) where usable, then
    the fastest screened ones within FINAL_MARGIN of the fastest, `count` in all."""
    usable = sorted((i for i, c in enumerate(candidates) if c.usable), key=lambda i: candidates[i].ms)
    if not usable:
        return []
    limit = candidates[usable[0]].ms * (1 + FINAL_MARGIN)
    chosen = [0] if candidates[0].usable else []
    for i in usable:
        if len(chosen) >= count:
            break
        if i not in chosen and candidates[i].ms <= limit:
            chosen.append(i)
    return chosen


def _final(specs: dict[int, _core.KernelSpec], workload: Workload, timer: Timer, rounds: int,
           progress: Optional[Progress]) -> tuple[dict[int, tuple[list[float], float]], dict[int, str]]:
    """Times the finalists interleaved: round r runs them in the order rotated by r. Returns
    each finalist's times, one per round, and its score (the median over rounds of its time
    over the round's median time), and the failure of each finalist whose launch failed,
    which then drops out."""
    order = list(specs)
    times: dict[int, list[float]] = {i: [] for i in order}
    relative: dict[int, list[float]] = {i: [] for i in order}
    failures: dict[int, str] = {}
    for r in range(rounds):
        running = [i for i in order if i not in failures]
        shift = r % max(len(running), 1)
        this_round = {}
        for i in running[shift:] + running[:shift]:
            try:
                this_round[i] = timer(lambda spec=specs[i]: workload.run(spec))
            except (RuntimeError, ValueError) as e:
                failures[i] = f"final: {str(e).splitlines()[0]}"
                _logger.warning("finalist %s failed: %s", specs[i].tile.text(), failures[i])
        if this_round:
            middle = statistics.median(this_round.values())
            for i, ms in this_round.items():
                times[i].append(ms)
                relative[i].append(ms / middle)
        if progress is not None:
            progress.note(f"final: round {r + 1}/{rounds} of {len(order)} finalists", last=r + 1 == rounds)
    finished = {i: (times[i], statistics.median(relative[i])) for i in order if i not in failures and times[i]}
    return finished, failures


def rank(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The final's candidates by their score (the best scored first, which is the winner
    unless it beat the default by less than KEEP_DEFAULT_MARGIN), then the other usable ones
    by their screen time, then the unusable ones. The final outranks the screen: only its
    timings were taken side by side."""
    return sorted(candidates, key=lambda c: (not c.usable, not c.finalist,
                                             (c.final_score if c.finalist else c.ms) if c.usable else 0.0))
