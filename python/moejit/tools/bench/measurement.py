"""Timing and peak memory of one call, the way ../../shared/bench/ANCHORS.md asks.

A Measurer is what the benchmarks time with; CudaMeasurer is the real one. The benchmark
logic takes any object with these two methods, so it can be exercised without a GPU.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, Sequence

if TYPE_CHECKING:
    from .results import SystemResult


class Measurer(Protocol):
    def time_ms(self, fn: Callable[[], object]) -> float:
        """Median milliseconds of fn()."""

    def peak_bytes(self, fn: Callable[[], object]) -> Optional[int]:
        """Peak bytes allocated during one fn() above what was allocated before it."""

    def settings(self) -> dict[str, Any]:
        """How it measures, for the report."""


@dataclass(frozen=True)
class CudaMeasurer:
    """CUDA events around each call after `warmup` untimed calls, the L2 cache flushed
    before each of `reps` timed calls (moejit.tools.timing.median_ms), the median reported.

    Peak memory is a delta: torch.cuda.max_memory_allocated() during one call, after
    resetting the peak, minus torch.cuda.memory_allocated() before it. It counts what the
    call allocates (outputs, workspaces, activations kept for backward) and not its inputs,
    parameters or the parameters' gradients, which every system holds alike
    (measure_systems makes one untimed call first, as a training loop's earlier steps
    would have)."""

    warmup: int = 5
    reps: int = 30
    flush_l2: bool = True

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise ValueError(f"warmup={self.warmup}: expected a non-negative number of calls")
        if self.reps < 1:
            raise ValueError(f"reps={self.reps}: expected at least one timed call")

    def time_ms(self, fn: Callable[[], object]) -> float:
        from ..timing import median_ms

        return median_ms(fn, warmup=self.warmup, reps=self.reps, flush_l2=self.flush_l2)

    def peak_bytes(self, fn: Callable[[], object]) -> Optional[int]:
        import torch

        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        del out
        return peak - before

    def settings(self) -> dict[str, Any]:
        return {"timer": "CUDA events, median", "warmup": self.warmup, "reps": self.reps,
                "flush_l2": self.flush_l2,
                "peak_memory": "max_memory_allocated during one call minus memory_allocated before it"}


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


@dataclass
class Trial:
    """One system's part in a case: `run` is what is timed; `check` (output name ->
    relative error against the reference) runs first, where given; `after` runs after each
    of the system's timings (say, to clear the gradients a training step left)."""

    name: str
    run: Callable[[], object]
    check: Optional[Callable[[], dict[str, float]]] = None
    after: Optional[Callable[[], object]] = None


def measure_systems(trials: Sequence[Trial], useful_flops: int, measurer: Measurer,
                    rounds: int = 1) -> list["SystemResult"]:
    """Checks every system, then times them in `rounds` interleaved rounds, then takes each
    one's peak memory. In each round every system is timed once (measurer.time_ms: warm-up,
    then the median of its reps), starting one system later than the round before, and a
    system's time is the median of its rounds' times (each round's is kept in round_ms).
    Interleaving makes the ratios of one case fair when the GPU's clock drifts during a
    run: every system sees the same mix of the run's moments, where timing each system's
    reps back to back gives each one a moment of its own.

    A system that raises is recorded with the reason in its note and not timed further;
    one that disagrees with the reference is still timed and is marked failed by its
    rel_error."""
    from ..timing import tflops
    from .results import SystemResult

    if rounds < 1:
        raise ValueError(f"rounds={rounds}: expected at least one round")
    results = [SystemResult(t.name) for t in trials]
    live = []
    for i, (trial, result) in enumerate(zip(trials, results)):
        try:
            if trial.check is not None:
                result.checks = {k: float(v) for k, v in trial.check().items()}
                result.rel_error = max(result.checks.values()) if result.checks else None
            live.append(i)
        except Exception as e:   # a peer that cannot run this shape (OOM, unsupported layout, ...)
            _failed(result, "check", e)
    times: dict[int, list[float]] = {i: [] for i in live}
    for r in range(rounds):
        order = live[r % len(live):] + live[:r % len(live)] if live else []
        for i in order:
            if i not in times:
                continue
            try:
                times[i].append(measurer.time_ms(trials[i].run))
                if trials[i].after is not None:
                    trials[i].after()
            except Exception as e:
                # The earlier rounds' times go too: a system that fails in any round has no
                # time, so the report never holds a median of fewer rounds than asked.
                _failed(results[i], "run", e)
                del times[i]
    for i, ms in times.items():
        result, trial = results[i], trials[i]
        result.ms = statistics.median(ms)
        result.round_ms = ms if rounds > 1 else []
        result.tflops = tflops(useful_flops, result.ms) if result.ms > 0 else None
        try:
            # One untimed call first, as every timed call had one before it: what a system
            # allocates on its first call and keeps (the parameters' gradients, which
            # `after` frees after each timing; workspaces) is then in place, so the peak
            # counts what one call adds, as in a training loop, not the first call's
            # allocation of the gradients (2.7 GB at mixtral-8x7b, for every system alike).
            trial.run()
            result.peak_memory_bytes = measurer.peak_bytes(trial.run)
            if trial.after is not None:
                trial.after()
        except Exception as e:
            _failed(result, "run", e)
    return results


def _failed(result: "SystemResult", stage: str, error: BaseException) -> None:
    result.ms = result.tflops = result.peak_memory_bytes = None
    result.round_ms = []
    result.note = f"failed to {stage}: {_reason(error)}"
    _release_memory()


def _release_memory() -> None:
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
