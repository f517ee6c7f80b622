"""Inspecting generated kernels (moejit.inspect, moejit show) and the debugging switches
(MOEJIT_DUMP_DIR, MOEJIT_DEBUG, MOEJIT_LINEINFO, MOEJIT_LOG, kept failed compiles)."""

import json
import logging
import os
import shutil

import pytest

import moejit
from moejit import _core
from moejit.jit import paths as _paths
from moejit.tools.cli import main

SPEC = "op=sdd trans=nt dtype=bf16 block=128 m=dyn n=512 k=256 tile=128x128x64.s3.w2x2 family=mma target=sm_90a"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MOEJIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_inspect_by_spec_then_from_the_database(cache):
    info = moejit.inspect(SPEC)
    assert info.name == "sdd_nt_bf16_b128_n512_k256" and info.origin == "compiled"
    assert "moejit::bsr_gemm_sm80<moejit::OpKind::sdd, false, true" in info.source
    assert info.template.endswith("moejit/bsr_gemm_sm80.cuh") and os.path.exists(info.template)
    assert "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" in info.ptx
    assert info.resources["registers"] > 0 and info.resources["dynamic_shared_bytes"] == 98304
    assert info.occupancy.blocks_per_sm >= 1 and info.occupancy.limited_by in ("registers", "shared memory")
    assert info.key["target"] == "sm_90a" and "--gpu-architecture=sm_90a" in info.key["compile_options"]
    if info.sass is None:
        assert "cuobjdump" in info.sass_note
    else:
        assert "HMMA" in info.sass
    again = moejit.inspect(SPEC)   # a new runtime: served by the kernel database
    assert again.origin == "kernel database" and again.key["hash"] == info.key["hash"]
    by_key = moejit.inspect(key=info.key["hash"][:8])
    assert by_key.spec == SPEC and by_key.origin.startswith("kernel database")


def test_inspect_by_model_and_op(cache):
    info = moejit.inspect(model="qwen3-30b-a3b", op="dsd-t")
    assert info.name == "dsd_tn_bf16_b128_m98304_n2048"
    # Hopper's default family: the transposed sparse operand is read M-major by wgmma.
    assert "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16" in info.ptx
    assert "p, 1, 1, 1, 1;" in info.ptx


@pytest.mark.parametrize("kwargs,message", [
    (dict(), "exactly one of spec=, key= or model="),
    (dict(spec=SPEC, model="mixtral-8x7b", op="sdd"), "exactly one of"),
    (dict(model="mixtral-8x7b"), "model= and op= go together"),
    (dict(model="mixtral-8x7b", op="ddd"), r"op='ddd': expected one of sdd, dsd, dsd-t"),
    (dict(spec="op=sdd"), "missing"),
])
def test_inspect_bad_names(cache, kwargs, message):
    with pytest.raises(ValueError, match=message):
        moejit.inspect(**kwargs)


def test_inspect_shows_tuning_results(cache):
    runtime = moejit.Runtime()
    spec = _core.KernelSpec.parse(SPEC)
    entry = _core.TuningEntry()
    entry.problem, entry.target, entry.gpu_name, entry.token_bucket = spec.problem_text(), "sm_90a", "FakeGPU", 512
    entry.best_tile, entry.best_ms = "128x128x64.s3.w2x2", 0.5
    entry.candidates_json = json.dumps([{"tile": "128x128x64.s3.w2x2", "ms": 0.5, "failure": "", "registers": 242},
                                        {"tile": "64x64x32.s3.w2x2", "ms": None, "failure": "spills (8 bytes)",
                                         "registers": 255}])
    assert runtime.record_tuning(entry)
    info = moejit.inspect(SPEC, gpu_name="FakeGPU", runtime=runtime)
    (tuning,) = info.tunings
    assert tuning["token_bucket"] == 512 and tuning["best_tile"] == "128x128x64.s3.w2x2"
    assert [c["tile"] for c in tuning["candidates"]] == ["128x128x64.s3.w2x2", "64x64x32.s3.w2x2"]


def test_show_lists_the_tuners_final_first(cache, capsys, monkeypatch):
    import torch

    import moejit.jit.runtime

    # `moejit show` lists the tunings of this machine's GPU: pretend to be one.
    monkeypatch.setattr(moejit.jit.runtime, "gpu_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "FakeGPU")
    runtime = moejit.Runtime()
    spec = _core.KernelSpec.parse(SPEC)
    entry = _core.TuningEntry()
    entry.problem, entry.target, entry.gpu_name, entry.token_bucket = spec.problem_text(), "sm_90a", "FakeGPU", 512
    entry.best_tile, entry.best_ms = "128x64x32.s4.w2x2", 0.52
    entry.candidates_json = json.dumps([
        {"tile": "128x128x64.s3.w2x2", "ms": 0.5, "failure": "", "registers": 242, "final_ms": 0.55,
         "final_score": 1.02, "final_times": [0.55]},
        {"tile": "64x64x32.s3.w2x2", "ms": 0.49, "failure": "", "registers": 128},
        {"tile": "128x64x32.s4.w2x2", "ms": 0.51, "failure": "", "registers": 200, "final_ms": 0.52,
         "final_score": 0.98, "final_times": [0.52]},
        {"tile": "64x128x32.s3.w2x2", "ms": None, "failure": "spills (8 bytes)", "registers": 255}])
    assert runtime.record_tuning(entry)
    assert main(["show", "--spec", SPEC]) == 0
    out = capsys.readouterr().out
    rows = out.split("== tuning results")[1].split("== source")[0].strip().splitlines()[1:]
    assert [r.split()[0] for r in rows] == ["128x64x32.s4.w2x2", "128x128x64.s3.w2x2", "64x64x32.s3.w2x2",
                                            "64x128x32.s3.w2x2"]
    assert rows[0].split(None, 1)[1] == "0.520 ms in the final (screen 0.510 ms)"
    assert rows[2].split(None, 1)[1] == "0.490 ms" and rows[3].split(None, 1)[1] == "spills (8 bytes)"


def test_show_prints_plain_text_when_piped_and_json(cache, capsys):
    assert main(["show", "--spec", SPEC]) == 0
    out = capsys.readouterr().out
    assert "\033[" not in out   # no colours when not a terminal
    assert "registers" in out and "== source" in out and "== ptx" in out
    # One section alone is that text and nothing else.
    assert main(["show", "--spec", SPEC, "--section", "source"]) == 0
    assert capsys.readouterr().out == moejit.generate_source(_core.KernelSpec.parse(SPEC)).source
    assert main(["show", "--spec", SPEC, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["name"] == "sdd_nt_bf16_b128_n512_k256" and data["occupancy"]["blocks_per_sm"] >= 1
    with pytest.raises(SystemExit):   # argparse rejects an op the layer does not have
        main(["show", "--model", "mixtral-8x7b", "--op", "ddd"])


def test_dump_dir_writes_every_compiled_kernel(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("MOEJIT_DUMP_DIR", str(tmp_path / "dumps"))
    moejit.Runtime(database=None).compile(_core.KernelSpec.parse(SPEC))
    files = sorted(os.listdir(tmp_path / "dumps"))
    stems = {os.path.splitext(f)[0] for f in files}
    assert len(stems) == 1 and stems.pop().startswith("sdd_nt_bf16_b128_n512_k256-")
    assert sorted(os.path.splitext(f)[1] for f in files) == [".cu", ".cubin", ".log", ".ptx", ".spec"]
    spec_file = [f for f in files if f.endswith(".spec")][0]
    assert (tmp_path / "dumps" / spec_file).read_text().strip() == SPEC


def test_debug_and_line_info_switches(cache, monkeypatch):
    monkeypatch.setenv("MOEJIT_DEBUG", "1")
    monkeypatch.setenv("MOEJIT_LINEINFO", "1")
    runtime = moejit.Runtime(database=None)
    spec = _core.KernelSpec.parse(SPEC)
    kernel = runtime.compile(spec)
    assert "trap;" in kernel.ptx                       # the bounds checks are compiled in
    assert ".loc" in kernel.ptx                        # line info
    options = runtime.core.kernel_key(spec).compile_options.splitlines()
    assert "-DMOEJIT_DEBUG" in options and "-lineinfo" in options
    release = moejit.Runtime(database=None, debug=False, line_info=False).compile(spec)
    assert "trap;" not in release.ptx


def test_log_reports_compiles_and_database_hits(cache, caplog):
    caplog.set_level(logging.INFO, logger="moejit")
    moejit.Runtime().compile(_core.KernelSpec.parse(SPEC))
    moejit.Runtime().compile(_core.KernelSpec.parse(SPEC))
    messages = [r.getMessage() for r in caplog.records if r.name == "moejit"]
    assert any(m.startswith("compiled sdd_nt_bf16_b128_n512_k256 in ") for m in messages)
    assert "kernel database hit: sdd_nt_bf16_b128_n512_k256" in messages


def test_a_failed_compile_keeps_what_reproduces_it(cache, tmp_path, monkeypatch):
    broken = tmp_path / "templates"
    shutil.copytree(_paths.templates_dir(), broken)
    with open(broken / "moejit" / "warp_mma.cuh", "a") as f:
        f.write("\nthis is not C++;\n")
    monkeypatch.setenv("MOEJIT_DUMP_DIR", str(tmp_path / "dumps"))
    runtime = moejit.Runtime(templates_dir=str(broken), database=None)
    with pytest.raises(moejit.CompileError) as error:
        runtime.compile(_core.KernelSpec.parse(SPEC))
    message = str(error.value)
    assert "warp_mma.cuh" in message and "this is not C++;" in message   # the offending template line
    assert "source, log and options kept in" in message
    kept = [f for f in os.listdir(tmp_path / "dumps")]
    assert sorted(os.path.splitext(f)[1] for f in kept) == [".cu", ".log", ".options"]
    options = (tmp_path / "dumps" / [f for f in kept if f.endswith(".options")][0]).read_text()
    assert "--gpu-architecture=sm_90a" in options and "# reproduce with the CUDA toolkit:" in options


WGMMA_SPEC = ("op=dsd trans=tn dtype=bf16 block=128 m=4096 n=2048 k=dyn tile=128x256x64.s3.w8x1 family=wgmma "
              "target=sm_90a")
TMA_LOAD = "cp.async.bulk.tensor.3d.shared::cluster.global"   # both operands MN-major: 3-D maps
TMA_STORE = "cp.async.bulk.tensor.2d.global.shared::cta"
ROUNDING = "cvt.rn.bf16x2.f32"   # the epilogue's rounding of two fp32 accumulators


def test_ablations_compile_out_one_stage_each(cache, monkeypatch):
    """MOEJIT_ABLATE / Runtime(ablate=...): each ablation leaves its stage out of the PTX,
    keeps the others, and is part of the kernel's key; without it the kernel is the normal one."""
    spec = _core.KernelSpec.parse(WGMMA_SPEC)
    normal = moejit.Runtime(database=None).compile(spec).ptx
    assert TMA_LOAD in normal and "wgmma.mma_async" in normal and TMA_STORE in normal
    expected_missing = {"loads": TMA_LOAD, "mma": "wgmma.mma_async", "epilogue": TMA_STORE}
    for name, missing in expected_missing.items():
        with pytest.warns(moejit.MoejitWarning, match=f"ablated kernels \\({name}\\): their results are wrong"):
            runtime = moejit.Runtime(database=None, ablate=[name])
        ptx = runtime.compile(spec).ptx
        assert missing not in ptx, name
        for other in set(expected_missing.values()) - {missing}:
            assert other in ptx, (name, other)
        assert f"-DMOEJIT_ABLATE_{name.upper()}" in runtime.core.kernel_key(spec).compile_options.splitlines()
        if name == "epilogue":
            # The accumulators are still rounded (and the rounded values kept): dead, they
            # take their wgmmas with them in ptxas, which the PTX would not show.
            assert ptx.count(ROUNDING) == normal.count(ROUNDING) > 0
    with pytest.warns(moejit.MoejitWarning, match=r"ablated kernels \(epilogue\)"):
        assert moejit.Runtime(database=None, ablate="epilogue").ablate == ("epilogue",)
    monkeypatch.setenv("MOEJIT_ABLATE", "mma, epilogue")
    with pytest.warns(moejit.MoejitWarning, match=r"ablated kernels \(mma, epilogue\)"):
        assert moejit.Runtime(database=None).ablate == ("mma", "epilogue")
    monkeypatch.setenv("MOEJIT_ABLATE", "stores")
    with pytest.raises(ValueError, match="'stores': expected a comma-separated list of loads, mma, epilogue"):
        moejit.Runtime(database=None)
