"""Timing and peak memory of one call, the way ../../shared/bench/ANCHORS.md asks.

A Measurer is what the benchmarks time with; CudaMeasurer is the real one. The benchmark
logic takes any object with these two methods, so it can be exercised without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol


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
    before each of `reps` timed calls (moejit.timing.median_ms), the median reported.

    Peak memory is a delta: torch.cuda.max_memory_allocated() during one call, after
    resetting the peak, minus torch.cuda.memory_allocated() before it. It counts what the
    call allocates (outputs, workspaces, activations kept for backward, gradients) and not
    its inputs or parameters, which every system holds alike."""

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


def measure_system(name: str, run: Callable[[], object], useful_flops: int, measurer: Measurer,
                   check: Optional[Callable[[], dict[str, float]]] = None) -> "SystemResult":
    """Checks (when `check` is given: output name -> relative error against the reference),
    then times `run` and takes its peak memory. A system that raises is recorded with the
    reason in its note, not timed; one that disagrees with the reference is still timed
    and is marked failed by its rel_error."""
    from ..timing import tflops
    from .results import SystemResult

    result = SystemResult(name)
    stage = "check"
    try:
        if check is not None:
            result.checks = {k: float(v) for k, v in check().items()}
            result.rel_error = max(result.checks.values()) if result.checks else None
        stage = "run"
        result.ms = measurer.time_ms(run)
        result.tflops = tflops(useful_flops, result.ms) if result.ms > 0 else None
        result.peak_memory_bytes = measurer.peak_bytes(run)
    except Exception as e:   # a peer that cannot run this shape (OOM, unsupported layout, ...)
        result.ms = result.tflops = result.peak_memory_bytes = None
        result.note = f"failed to {stage}: {_reason(e)}"
        _release_memory()
    return result


def _release_memory() -> None:
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
