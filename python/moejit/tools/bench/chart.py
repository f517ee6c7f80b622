"""chart.png: useful TFLOP/s per case, one bar per system, grouped by model and case;
dense cuBLAS (the same FLOPs) is the grey hatched bar each group is measured against.

matplotlib is optional: without it no chart is written and the caller gets a note;
`moejit bench plot results.json` renders the chart later on any machine that has it.
"""

from __future__ import annotations

from typing import Optional

from .environment import describe
from .results import BenchReport

# One colour per system, stable across charts; dense is grey.
_COLORS = {"moejit": "#d62728", "dense": "#9e9e9e", "grouped_mm": "#1f77b4", "bmm": "#2ca02c",
           "stk": "#ff7f0e", "megablocks": "#9467bd"}
MISSING_MATPLOTLIB = ("chart.png not written: matplotlib is not installed here (pip install matplotlib); "
                      "`moejit bench plot results.json` renders it on any machine that has it")


def render_chart(report: BenchReport, path: str) -> Optional[str]:
    """Writes the chart to `path` (PNG); returns None, or a note saying why it could not."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return MISSING_MATPLOTLIB
    systems = report.systems
    groups = [(c.model, c.case) for c in report.cases]
    if not groups or not systems:
        raise ValueError(f"report has no measured cases: nothing to plot into {path}")
    width = 0.8 / len(systems)
    fig = Figure(figsize=(min(15.0, max(7.0, 0.28 * len(groups) * len(systems) + 2.0)), 5.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, system in enumerate(systems):
        xs, heights = [], []
        for g, case in enumerate(report.cases):
            r = case.result(system)
            if r is not None and r.tflops is not None:
                xs.append(g - 0.4 + width * (i + 0.5))
                heights.append(r.tflops)
        bars = ax.bar(xs, heights, width, label=system, color=_COLORS.get(system, f"C{i}"),
                      hatch="//" if system == "dense" else None, edgecolor="white", linewidth=0.5)
        ax.bar_label(bars, fmt="%.0f", fontsize=6, padding=1)
    ax.set_xticks(range(len(groups)), [f"{m}\n{c}" for m, c in groups], fontsize=7)
    ax.set_ylabel("useful TFLOP/s (real tokens only)")
    ax.set_title(f"moejit bench {report.kind}: {report.environment.get('gpu') or 'no GPU'}", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, ncols=min(len(systems), 6), loc="upper center", bbox_to_anchor=(0.5, -0.18),
              frameon=False)
    fig.text(0.01, 0.01, describe(report.environment), fontsize=6, color="#555555")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    return None
