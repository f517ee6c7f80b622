"""`moejit bench kernels` and `moejit bench layer` end to end on a small shape on the GPU:
every system checked against the float32 reference, timed, and the files written."""

import json

import pytest

from moejit.tools.cli import main
from conftest import requires_gpu

pytestmark = [pytest.mark.gpu, requires_gpu]

SMALL = ["--hidden", "256", "--ffn", "256", "--experts", "4", "--top-k", "2", "--tokens", "1000",
         "--warmup", "1", "--reps", "3"]


def _load(out):
    data = json.loads((out / "results.json").read_text())
    assert (out / "results.md").exists()
    return data


def test_bench_kernels_small_shape(tmp_path, capsys):
    out = tmp_path / "kernels"
    assert main(["bench", "kernels", *SMALL, "--against", "dense,grouped_mm,bmm,stk", "--out", str(out)]) == 0
    data = _load(out)
    assert [c["case"] for c in data["cases"]] == ["sdd", "dsd", "dsd_t"]
    assert data["environment"]["gpu"]
    for case in data["cases"]:
        assert case["routing"]["routed_tokens"] == 2000
        by = {r["system"]: r for r in case["results"]}
        for system in ("moejit", "grouped_mm", "bmm"):
            assert by[system]["passed"] is True, (case["case"], system, by[system])
            assert by[system]["ms"] > 0 and by[system]["peak_memory_bytes"] >= 0
        assert by["dense"]["ratio_to_dense"] == 1.0 and by["dense"]["passed"] is None
        assert set(case["speedups"]) >= {"dense", "grouped_mm", "bmm"}
    assert "moejit x" in capsys.readouterr().out


def test_bench_layer_small_shape(tmp_path):
    out = tmp_path / "layer"
    assert main(["bench", "layer", *SMALL, "--against", "dense,grouped_mm", "--out", str(out)]) == 0
    data = _load(out)
    assert [c["case"] for c in data["cases"]] == ["forward", "forward+backward"]
    for case in data["cases"]:
        by = {r["system"]: r for r in case["results"]}
        assert by["grouped_mm"]["passed"] is True, by["grouped_mm"]
        assert by["dense"]["ms"] > 0
        if "moejit" in by:        # moejit.dMoE exists in this build
            assert by["moejit"]["passed"] is True, by["moejit"]
        else:
            assert any(n.startswith("moejit:") for n in data["notes"])
