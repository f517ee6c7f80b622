"""Ratios between systems measured in one run, on the same work (the same useful FLOPs):
a ratio of times is a ratio of TFLOP/s."""

from __future__ import annotations

from typing import Optional, Sequence

from .results import SystemResult

SUBJECT = "moejit"
DENSE = "dense"


def ratio(numerator_ms: Optional[float], denominator_ms: Optional[float]) -> Optional[float]:
    """numerator / denominator, or None where either is missing or not positive."""
    if numerator_ms is None or denominator_ms is None or numerator_ms <= 0 or denominator_ms <= 0:
        return None
    return numerator_ms / denominator_ms


def _by_system(results: Sequence[SystemResult]) -> dict[str, SystemResult]:
    return {r.system: r for r in results}


def ratio_to_dense(result: SystemResult, results: Sequence[SystemResult]) -> Optional[float]:
    """result's TFLOP/s over dense cuBLAS's (dense ms / result ms): 1.0 is the dense rate."""
    dense = _by_system(results).get(DENSE)
    return ratio(dense.ms if dense else None, result.ms)


def speedups(results: Sequence[SystemResult], subject: str = SUBJECT) -> dict[str, Optional[float]]:
    """subject's speedup over each other system: their ms / subject's ms (above 1: faster)."""
    by = _by_system(results)
    mine = by.get(subject)
    return {name: ratio(r.ms, mine.ms if mine else None) for name, r in by.items() if name != subject}


def fill_ratios(results: Sequence[SystemResult]) -> None:
    """Sets each result's ratio_to_dense."""
    for r in results:
        r.ratio_to_dense = ratio_to_dense(r, results)
