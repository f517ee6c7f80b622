"""The systems a benchmark compares moejit with (`--against`), and which are installed.

torch's dense matmul, torch._grouped_mm and torch.bmm are there wherever torch is; stk
and MegaBlocks are optional: a run without them skips them with a note saying how to
install them.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Optional

# What each peer is, per kind of run.
KERNEL_PEERS = {
    "dense": "torch.matmul (cuBLAS) with the same M x N x K",
    "grouped_mm": "torch._grouped_mm over the per-expert token groups",
    "bmm": "torch.bmm with every expert padded to the largest expert's token count",
    "stk": "stk (MegaBlocks' block-sparse Triton kernels), block size as moejit's",
}
LAYER_PEERS = {
    "dense": "a dense MLP with ffn width top_k*F: the same FLOPs, no routing",
    "grouped_mm": "a PyTorch dMoE layer on torch._grouped_mm (sort-based permutation, autograd)",
    "megablocks": "MegaBlocks dMoE (block-sparse, stk)",
}
PEERS = {"kernels": KERNEL_PEERS, "layer": LAYER_PEERS}
ALL_PEERS = ("dense", "grouped_mm", "bmm", "stk", "megablocks")
DEFAULT_AGAINST = ",".join(ALL_PEERS)

# Optional peers: (module to import, what to install).
_OPTIONAL = {"stk": ("stk", "pip install stanford-stk"), "megablocks": ("megablocks", "pip install megablocks")}


def parse_against(text: str, kind: str) -> tuple[list[str], list[str]]:
    """The peers `--against` names that apply to `kind`, and notes for those that do not.
    Unknown names are an error."""
    if kind not in PEERS:
        raise ValueError(f"kind={kind!r}: expected one of {', '.join(PEERS)}")
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--against={text!r}: expected a comma-separated list of {', '.join(ALL_PEERS)}")
    unknown = [n for n in names if n not in ALL_PEERS]
    if unknown:
        raise ValueError(f"--against: unknown peer {unknown[0]!r}; expected names from {', '.join(ALL_PEERS)}")
    chosen, notes = [], []
    for name in dict.fromkeys(names):   # in order, without repeats
        if name in PEERS[kind]:
            chosen.append(name)
        else:
            other = "kernels" if kind == "layer" else "layer"
            notes.append(f"{name}: compared in `moejit bench {other}` only; skipped here")
    return chosen, notes


def unavailable(name: str) -> Optional[str]:
    """Why peer `name` cannot run here (a note for the report), or None when it can."""
    if name in _OPTIONAL:
        module, install = _OPTIONAL[name]
        if importlib.util.find_spec(module) is None:
            return f"{name}: not installed ({install}); skipped"
        try:
            importlib.import_module(module)
        except Exception as e:   # a broken install: a compiled extension that does not load, ...
            return f"{name}: installed but `import {module}` failed ({type(e).__name__}: {e}); skipped"
        return None
    if name == "grouped_mm":
        import torch

        if not hasattr(torch, "_grouped_mm"):
            return f"grouped_mm: torch {torch.__version__} has no torch._grouped_mm (torch >= 2.8 has); skipped"
        return None
    if name in ("dense", "bmm"):
        return None
    raise ValueError(f"name={name!r}: expected one of {', '.join(ALL_PEERS)}")


def version_of(distribution: str) -> Optional[str]:
    """The installed version of a distribution, or None."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
