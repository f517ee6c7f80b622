"""What `moejit bench` writes: results.json (schema round trip), results.md, the terminal
table and chart.png; and which peers a run can compare against."""

import builtins
import json
import os

import pytest

from moejit.tools.bench import chart, systems
from moejit.tools.bench.ratios import fill_ratios, speedups
from moejit.tools.bench.report import markdown, terminal
from moejit.tools.bench.results import SCHEMA, BenchCase, BenchReport, SystemResult
from moejit.tools.bench.runner import default_out_dir, write_outputs
from moejit.tools.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _report(kind="kernels"):
    def case(model, name, ms):
        results = [SystemResult("moejit", ms=ms["moejit"], tflops=100 / ms["moejit"], peak_memory_bytes=3 << 20,
                                rel_error=4e-3, checks={"out": 4e-3}),
                   SystemResult("dense", ms=ms["dense"], tflops=100 / ms["dense"], peak_memory_bytes=1 << 20),
                   SystemResult("grouped_mm", ms=ms["grouped_mm"], tflops=100 / ms["grouped_mm"],
                                peak_memory_bytes=2 << 20, rel_error=0.5, checks={"out": 0.5}),
                   SystemResult("stk", note="failed to run: OutOfMemoryError: CUDA out of memory")]
        fill_ratios(results)
        return BenchCase(model=model, shape={"hidden": 64, "ffn": 32, "experts": 4, "top_k": 2, "tokens": 10,
                                             "activation": "silu", "glu": True},
                         case=name, product="h = x @ w1.t()", useful_flops=100 * 10**9,
                         routing={"routed_tokens": 20, "max_over_mean": 1.2, "empty_experts": 0},
                         results=results, speedups=speedups(results))

    return BenchReport(kind=kind, created="2026-11-29T00:00:00+00:00", command="moejit bench kernels --model tiny",
                       environment={"gpu": "NVIDIA H200", "compute_capability": "9.0", "sms": 132, "driver": "580.1",
                                    "cuda": "13.0", "torch": "2.11.0", "triton": "3.6.0", "moejit": "0.1.0"},
                       settings={"dtype": "bf16", "block_size": 128, "seed": 0, "warmup": 5, "reps": 30,
                                 "flush_l2": True, "tolerance": 2e-2, "peak_memory": "a delta"},
                       notes=["megablocks: not installed (pip install megablocks); skipped"],
                       cases=[case("tiny", "sdd", {"moejit": 2.0, "dense": 1.0, "grouped_mm": 4.0}),
                              case("tiny", "dsd", {"moejit": 1.0, "dense": 1.0, "grouped_mm": 0.5})])


def test_json_round_trip(tmp_path):
    report = _report()
    path = tmp_path / "results.json"
    report.save(str(path))
    data = json.loads(path.read_text())
    assert data["schema"] == SCHEMA and data["kind"] == "kernels"
    first = data["cases"][0]
    assert first["useful_flops"] == 100 * 10**9
    moejit = first["results"][0]
    assert moejit["system"] == "moejit" and moejit["ratio_to_dense"] == 0.5 and moejit["passed"] is True
    assert first["results"][2]["passed"] is False and first["results"][3]["ms"] is None
    assert first["speedups"] == {"dense": 0.5, "grouped_mm": 2.0, "stk": None}
    loaded = BenchReport.load(str(path))
    assert loaded == report
    assert loaded.to_json() == report.to_json()
    assert loaded.systems == ["moejit", "dense", "grouped_mm", "stk"]
    assert [(c.case, r.system) for c, r in loaded.failed] == [("sdd", "grouped_mm"), ("dsd", "grouped_mm")]


def test_loading_something_else_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        BenchReport.load(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        BenchReport.load(str(bad))
    bad.write_text(json.dumps({"schema": "other/2"}))
    with pytest.raises(ValueError, match="schema='other/2': expected 'moejit-bench/1'"):
        BenchReport.load(str(bad))
    data = _report().to_dict()
    del data["cases"][0]["results"][0]["system"]
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="SystemResult.system: missing from the results file"):
        BenchReport.load(str(bad))
    with pytest.raises(ValueError, match="kind='both': expected one of kernels, layer"):
        BenchReport(kind="both", created="", command="", environment={}, settings={})


def test_markdown_has_the_tables_the_issue_asks_for():
    text = markdown(_report())
    assert text.startswith("# moejit bench kernels\n")
    assert "NVIDIA H200 (sm 9.0, 132 SMs), driver 580.1, CUDA 13.0, torch 2.11.0, triton 3.6.0" in text
    assert "```sh\nmoejit bench kernels --model tiny\n```" in text
    assert "| model | case | moejit | dense | grouped_mm | stk |" in text
    # TFLOP/s with the ratio to dense; a failed check is marked; a system that did not run says so.
    assert "| tiny | sdd: h = x @ w1.t() | 50 (0.50) | 100 (1.00) | 25 ✗ (0.25) | failed |" in text
    assert "| tiny | sdd | 0.50 | 2.00 | — |" in text            # moejit's speedups
    assert "failed to run: OutOfMemoryError" in text
    assert "- megablocks: not installed (pip install megablocks); skipped" in text
    assert "median of 30 calls after 5 warm-up calls" in text
    assert "real routed tokens only" in text


def test_terminal_table():
    text = terminal(_report())
    lines = text.splitlines()
    assert lines[0].startswith("moejit bench kernels: NVIDIA H200")
    header = next(line for line in lines if line.startswith("model"))
    for column in ("ms", "TFLOP/s", "x dense", "moejit x", "peak MiB", "rel err"):
        assert column in header
    grouped = next(line for line in lines if " sdd " in line and "grouped_mm" in line)
    assert "4.000" in grouped and "FAILED check (out 5.0e-01)" in grouped
    assert "note: megablocks: not installed" in text


def test_write_outputs_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    written, notes = write_outputs(_report(), str(out))
    assert notes == []
    assert sorted(os.path.basename(p) for p in written) == ["chart.png", "results.json", "results.md"]
    png = (out / "chart.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 5000
    # `moejit bench plot` re-renders it from the JSON alone.
    (out / "chart.png").unlink()
    assert main(["bench", "plot", str(out / "results.json")]) == 0
    assert (out / "chart.png").read_bytes().startswith(PNG_SIGNATURE)
    other = tmp_path / "other.png"
    assert main(["bench", "plot", str(out / "results.json"), "--out", str(other)]) == 0
    assert other.read_bytes().startswith(PNG_SIGNATURE)


def test_without_matplotlib_the_chart_is_a_note_not_a_crash(tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    written, notes = write_outputs(_report(), str(tmp_path))
    assert notes == [chart.MISSING_MATPLOTLIB]
    assert "pip install matplotlib" in notes[0] and "moejit bench plot" in notes[0]
    assert sorted(os.path.basename(p) for p in written) == ["results.json", "results.md"]
    assert main(["bench", "plot", str(tmp_path / "results.json")]) == 1
    assert "matplotlib is not installed" in capsys.readouterr().err


def test_plot_errors(tmp_path, capsys):
    assert main(["bench", "plot", str(tmp_path / "nothing.json")]) == 1
    assert "nothing.json: no such file; expected a results.json written by `moejit bench`" in capsys.readouterr().err


def test_default_out_dir_is_timestamped():
    import datetime

    assert default_out_dir("layer", datetime.datetime(2026, 11, 29, 1, 2, 3)) == "moejit-bench-layer-20261129-010203"


def test_parse_against():
    assert systems.parse_against("dense,grouped_mm,bmm", "kernels") == (["dense", "grouped_mm", "bmm"], [])
    peers, notes = systems.parse_against(systems.DEFAULT_AGAINST, "layer")
    assert peers == ["dense", "grouped_mm", "megablocks"]
    assert notes == ["bmm: compared in `moejit bench kernels` only; skipped here",
                     "stk: compared in `moejit bench kernels` only; skipped here"]
    peers, notes = systems.parse_against(systems.DEFAULT_AGAINST, "kernels")
    assert peers == ["dense", "grouped_mm", "bmm", "stk"]
    assert notes == ["megablocks: compared in `moejit bench layer` only; skipped here"]
    assert systems.parse_against(" dense , dense ", "kernels") == (["dense"], [])
    with pytest.raises(ValueError, match="--against: unknown peer 'cutlass'; expected names from dense, grouped_mm"):
        systems.parse_against("dense,cutlass", "kernels")
    with pytest.raises(ValueError, match="--against=',': expected a comma-separated list"):
        systems.parse_against(",", "kernels")


def test_peer_availability_notes(monkeypatch):
    import importlib.util

    assert systems.unavailable("dense") is None and systems.unavailable("bmm") is None
    assert systems.unavailable("grouped_mm") is None       # torch 2.11 has torch._grouped_mm
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("stk", "megablocks") else real_find_spec(name, *a))
    assert systems.unavailable("stk") == "stk: not installed (pip install stanford-stk); skipped"
    assert systems.unavailable("megablocks") == "megablocks: not installed (pip install megablocks); skipped"
    with pytest.raises(ValueError, match="name='tpu': expected one of"):
        systems.unavailable("tpu")


def test_a_broken_install_is_a_note(monkeypatch):
    import importlib

    real_import_module = importlib.import_module
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())

    def broken(name, *a):
        if name == "megablocks":
            raise OSError("libcudart.so.12: cannot open shared object file")
        return real_import_module(name, *a)

    monkeypatch.setattr(importlib, "import_module", broken)
    note = systems.unavailable("megablocks")
    assert note.startswith("megablocks: installed but `import megablocks` failed (OSError: libcudart.so.12")
