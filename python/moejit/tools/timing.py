"""Timing GPU work the way ../shared/bench/ANCHORS.md asks: CUDA events around each call,
warm-up first, the L2 cache flushed between calls, the median of many calls."""

from __future__ import annotations

import statistics
from typing import Callable

import torch

# Larger than the L2 of any current GPU (H200: 60 MB), so writing it evicts the operands.
_L2_FLUSH_BYTES = 256 * 1024 * 1024


def median_ms(fn: Callable[[], object], *, warmup: int = 5, reps: int = 30, flush_l2: bool = True) -> float:
    """Median milliseconds of `fn()` on the current stream."""
    flush = torch.empty(_L2_FLUSH_BYTES // 4, dtype=torch.int32, device="cuda") if flush_l2 else None
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        if flush is not None:
            flush.zero_()
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        times.append((start, end))
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in times)


def tflops(flops: float, ms: float) -> float:
    return flops / (ms * 1e-3) / 1e12
