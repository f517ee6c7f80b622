"""What a benchmark run found, and its JSON form (`results.json`).

    {"schema": "moejit-bench/1", "kind": "kernels" | "layer", "created": ISO-8601 time,
     "command": the command line, "environment": {...}, "settings": {...}, "notes": [...],
     "cases": [{"model", "shape": {...}, "case", "product", "useful_flops", "routing": {...},
                "results": [{"system", "ms", "tflops", "ratio_to_dense", "peak_memory_bytes",
                             "rel_error", "checks": {...}, "passed", "note"}, ...],
                "speedups": {peer: peer ms / moejit ms}}, ...]}

A system that was skipped or failed has "ms": null and says why in "note".
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Optional

SCHEMA = "moejit-bench/1"
KINDS = ("kernels", "layer")

# Relative error (Frobenius norm) against the float32 reference above which a system's
# result is wrong: bf16/fp16 operands with fp32 accumulation land near 1e-3..1e-2.
TOLERANCE = 2e-2


def _known_fields(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    """The entries of `d` that are fields of `cls` (derived ones such as "passed" are
    recomputed); a missing required field is an error naming it."""
    if not isinstance(d, dict):
        raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(d).__name__}")
    fields = dataclasses.fields(cls)
    for f in fields:
        if f.name not in d and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"{cls.__name__}.{f.name}: missing from the results file")
    return {f.name: d[f.name] for f in fields if f.name in d}


@dataclass
class SystemResult:
    system: str
    ms: Optional[float] = None                  # median of the timed calls
    tflops: Optional[float] = None              # useful FLOPs / time
    ratio_to_dense: Optional[float] = None      # tflops / dense cuBLAS's, same FLOPs, same run
    peak_memory_bytes: Optional[int] = None     # see Measurer.peak_bytes: above what was allocated before
    rel_error: Optional[float] = None           # the largest of `checks`
    checks: dict[str, float] = field(default_factory=dict)   # output name -> relative error
    note: str = ""
    round_ms: list[float] = field(default_factory=list)   # with --rounds above 1: each round's median

    @property
    def passed(self) -> Optional[bool]:
        """None where nothing was checked (dense: a different function with the same FLOPs)."""
        return None if self.rel_error is None else self.rel_error <= TOLERANCE

    @property
    def timed(self) -> bool:
        return self.ms is not None

    def status(self) -> str:
        """One progress line: the failure, or time, rate, error and the rounds' spread."""
        if self.note or not self.timed:
            return self.note or "not timed"
        text = f"{self.ms:.3f} ms, {self.tflops:.0f} TFLOP/s" if self.tflops else f"{self.ms:.3f} ms"
        if self.rel_error is not None:
            text += f", rel err {self.rel_error:.1e}"
        if len(self.round_ms) > 1:
            text += f", rounds {min(self.round_ms):.3f}-{max(self.round_ms):.3f} ms"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "passed": self.passed}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SystemResult":
        return cls(**_known_fields(cls, d))


@dataclass
class BenchCase:
    model: str
    shape: dict[str, Any]        # ModelShape fields (with the tokens used)
    case: str                    # "sdd" | "dsd" | "dsd_t" | "forward" | "forward+backward"
    product: str                 # what the case computes, in words
    useful_flops: int
    routing: dict[str, Any]      # routed_tokens, max_over_mean tokens per expert, ...
    results: list[SystemResult] = field(default_factory=list)
    speedups: dict[str, Optional[float]] = field(default_factory=dict)

    def result(self, system: str) -> Optional[SystemResult]:
        return next((r for r in self.results if r.system == system), None)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["results"] = [r.to_dict() for r in self.results]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BenchCase":
        return cls(**{**_known_fields(cls, d), "results": [SystemResult.from_dict(r) for r in d.get("results", [])]})


@dataclass
class BenchReport:
    kind: str                    # "kernels" | "layer"
    created: str                 # ISO-8601 time of the run
    command: str
    environment: dict[str, Any]
    settings: dict[str, Any]     # dtype, block size, seed, warm-up, repetitions, ...
    notes: list[str] = field(default_factory=list)
    cases: list[BenchCase] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r}: expected one of {', '.join(KINDS)}")

    @property
    def systems(self) -> list[str]:
        """Every system in the run, moejit first, then in order of appearance."""
        seen: list[str] = []
        for c in self.cases:
            for r in c.results:
                if r.system not in seen:
                    seen.append(r.system)
        return sorted(seen, key=lambda s: (s != "moejit", seen.index(s)))

    @property
    def failed(self) -> list[tuple[BenchCase, SystemResult]]:
        """Results that disagree with the reference."""
        return [(c, r) for c in self.cases for r in c.results if r.passed is False]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "kind": self.kind, "created": self.created, "command": self.command,
                "environment": self.environment, "settings": self.settings, "notes": list(self.notes),
                "cases": [c.to_dict() for c in self.cases]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BenchReport":
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            found = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"schema={found!r}: expected {SCHEMA!r} (a results.json of `moejit bench`)")
        return cls(**{**_known_fields(cls, d), "cases": [BenchCase.from_dict(c) for c in d.get("cases", [])]})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            f.write(self.to_json())

    @classmethod
    def load(cls, path: str) -> "BenchReport":
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ValueError(f"{path}: no such file; expected a results.json written by `moejit bench`") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not JSON ({e}); expected a results.json written by `moejit bench`") from None
        return cls.from_dict(data)
