"""One `moejit bench` run: every model shape of the run, the report, and its files."""

from __future__ import annotations

import datetime
import os
from typing import Callable, Optional, Sequence

from ...zoo import ModelShape
from .chart import render_chart
from .environment import environment
from .measurement import Measurer
from .report import markdown
from .results import KINDS, TOLERANCE, BenchReport


def run_bench(kind: str, shapes: Sequence[ModelShape], peers: list[str], *, measurer: Measurer, command: str,
              dtype: str = "bf16", block_size: int = 128, seed: int = 0, notes: Sequence[str] = (), device="cuda",
              rounds: int = 1, log: Callable[[str], None] = print) -> BenchReport:
    """Benchmarks `kind` ("kernels" or "layer") at every shape against `peers`, the systems
    of each case timed in `rounds` interleaved rounds (measurement.measure_systems)."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {', '.join(KINDS)}")
    if not shapes:
        raise ValueError("shapes: expected at least one model shape")
    if rounds < 1:
        raise ValueError(f"rounds={rounds}: expected at least one round")
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    settings = {"dtype": dtype, "block_size": block_size, "seed": seed, "input_copies": 2,
                "tolerance": TOLERANCE, "peers": list(peers), "rounds": rounds, **measurer.settings()}
    report = BenchReport(kind=kind, created=created, command=command, environment=environment(), settings=settings,
                         notes=list(notes))
    for n, shape in enumerate(shapes, 1):
        log(f"[{n}/{len(shapes)}] {shape.describe()}")
        if kind == "kernels":
            from .kernel_bench import bench_kernels

            cases, found = bench_kernels(shape, peers, measurer=measurer, dtype=dtype, block_size=block_size,
                                         seed=seed, rounds=rounds, log=log)
        else:
            from .layer_bench import bench_layer

            cases, found = bench_layer(shape, peers, measurer=measurer, dtype=dtype, block_size=block_size,
                                       seed=seed, device=device, rounds=rounds, log=log)
        report.cases += cases
        report.notes += [n for n in found if n not in report.notes]
    return report


def default_out_dir(kind: str, now: Optional[datetime.datetime] = None) -> str:
    now = now or datetime.datetime.now()
    return f"moejit-bench-{kind}-{now.strftime('%Y%m%d-%H%M%S')}"


def write_outputs(report: BenchReport, out_dir: str) -> tuple[list[str], list[str]]:
    """results.json, results.md and chart.png in `out_dir` (created if needed). Returns
    the files written and notes on those that could not be (no matplotlib)."""
    os.makedirs(out_dir, exist_ok=True)
    written, notes = [], []
    path = os.path.join(out_dir, "results.json")
    report.save(path)
    written.append(path)
    path = os.path.join(out_dir, "results.md")
    with open(path, "w") as f:
        f.write(markdown(report))
    written.append(path)
    path = os.path.join(out_dir, "chart.png")
    note = render_chart(report, path)
    if note is None:
        written.append(path)
    else:
        notes.append(note)
    return written, notes
