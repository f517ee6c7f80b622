"""A BenchReport as a terminal table and as markdown (`results.md`)."""

from __future__ import annotations

from typing import Optional, Sequence

from .environment import describe
from .results import BenchReport, SystemResult

_MIB = 1 << 20


def _num(value: Optional[float], fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _status(r: SystemResult) -> str:
    if r.note and r.ms is None:
        return r.note
    if r.passed is False:
        return f"FAILED check ({', '.join(f'{k} {v:.1e}' for k, v in r.checks.items())})"
    return r.note


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell, a rule under the header."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def terminal(report: BenchReport) -> str:
    """Every system of every case: ms, TFLOP/s, ratio to dense, moejit's speedup over it,
    peak memory, error against the reference."""
    rows = []
    for c in report.cases:
        for r in c.results:
            speedup = c.speedups.get(r.system)
            rows.append([c.model, c.case, r.system, _num(r.ms, ".3f"), _num(r.tflops, ".0f"),
                         _num(r.ratio_to_dense, ".2f"), _num(speedup, ".2f"),
                         _num(None if r.peak_memory_bytes is None else r.peak_memory_bytes / _MIB, ".0f"),
                         _num(r.rel_error, ".1e"), _status(r)])
    head = [f"moejit bench {report.kind}: {describe(report.environment)}"]
    body = table(["model", "case", "system", "ms", "TFLOP/s", "x dense", "moejit x", "peak MiB", "rel err", ""],
                 rows)
    notes = [f"note: {n}" for n in report.notes]
    legend = ("x dense: TFLOP/s over dense cuBLAS's with the same FLOPs; moejit x: this system's time over "
              "moejit's (above 1: moejit is faster)")
    return "\n".join(head + ["", body, "", legend] + notes)


def _md_row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    return [_md_row(headers), _md_row(["---"] * len(headers))] + [_md_row(r) for r in rows]


def markdown(report: BenchReport) -> str:
    """results.md: the headline table (TFLOP/s and ratio to dense per system), moejit's
    speedups, the details, the environment, how it was measured and the notes."""
    systems = report.systems
    env, settings = report.environment, report.settings
    out = [f"# moejit bench {report.kind}", "",
           f"{describe(env)}; {report.created}.", "",
           "Reproduce:", "", "```sh", report.command, "```", "",
           "## Useful TFLOP/s (ratio to dense cuBLAS with the same FLOPs)", ""]
    headline = []
    for c in report.cases:
        cells = [c.model, f"{c.case}: {c.product}"]
        for s in systems:
            r = c.result(s)
            if r is None or r.tflops is None:
                cells.append("—" if r is None else "failed")
            else:
                mark = " ✗" if r.passed is False else ""
                cells.append(f"{r.tflops:.0f}{mark}" + (f" ({r.ratio_to_dense:.2f})" if r.ratio_to_dense else ""))
        headline.append(cells)
    out += _md_table(["model", "case"] + systems, headline)
    peers = [s for s in systems if s != "moejit"]
    if "moejit" in systems and peers:
        out += ["", "## moejit's speedup over each peer (peer time / moejit time; above 1: moejit is faster)", ""]
        out += _md_table(["model", "case"] + peers,
                         [[c.model, c.case] + [_num(c.speedups.get(p), ".2f") for p in peers] for c in report.cases])
    out += ["", "## Details", ""]
    detail = []
    for c in report.cases:
        for r in c.results:
            detail.append([c.model, c.case, r.system, _num(r.ms, ".3f"), _num(r.tflops, ".1f"),
                           _num(r.ratio_to_dense, ".3f"),
                           _num(None if r.peak_memory_bytes is None else r.peak_memory_bytes / _MIB, ".0f"),
                           ", ".join(f"{k} {v:.1e}" for k, v in r.checks.items()) or "—", _status(r) or ""])
    out += _md_table(["model", "case", "system", "ms", "TFLOP/s", "x dense", "peak MiB", "rel err", "note"], detail)
    out += ["", "## Shapes and routing", ""]
    seen = {}
    for c in report.cases:
        seen.setdefault(c.model, c)
    out += _md_table(["model", "tokens", "hidden", "ffn", "experts", "top-k", "activation", "routed tokens",
                      "max/mean per expert", "empty experts"],
                     [[m, c.shape.get("tokens"), c.shape.get("hidden"), c.shape.get("ffn"), c.shape.get("experts"),
                       c.shape.get("top_k"), f"{c.shape.get('activation')}{' GLU' if c.shape.get('glu') else ''}",
                       c.routing.get("routed_tokens"), c.routing.get("max_over_mean"),
                       c.routing.get("empty_experts")] for m, c in seen.items()])
    out += ["", "## Environment", ""]
    out += _md_table(["", ""], [[k, v] for k, v in env.items() if v is not None])
    out += ["", "## How it was measured", "",
            f"- {settings.get('timer', 'CUDA events, median')} of {settings.get('reps')} calls after "
            f"{settings.get('warmup')} warm-up calls; the L2 cache flushed before each timed call: "
            f"{settings.get('flush_l2')}; inputs rotated between {settings.get('input_copies', 2)} copies.",
            f"- {settings.get('dtype')} operands, fp32 accumulation; block size {settings.get('block_size')}; "
            f"random data and routing from seed {settings.get('seed')}.",
            "- Useful TFLOP/s count 2·M·N·K per expert product over the real routed tokens only (no padding; "
            "router, activation, permutation and combine not counted); every system of a case does the same "
            "useful work, so ratios of TFLOP/s are ratios of time.",
            "- dense: cuBLAS (torch.matmul) with the same FLOPs — for the kernels the same M×N×K, for the layer an "
            "MLP of ffn width top_k·F.",
            f"- Peak memory: {settings.get('peak_memory')}.",
            "- Every system but dense was checked against a float32 reference before timing (relative Frobenius "
            f"error, tolerance {settings.get('tolerance')}); ✗ marks a failed check."]
    if report.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    return "\n".join(out) + "\n"
