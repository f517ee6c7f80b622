"""`moejit doctor` reports each piece, and a fix for each missing one, without crashing."""

import json

import moejit
from moejit.tools.cli import main
from moejit.tools.doctor import diagnose


def checks(report):
    return {c.name: c for c in report.checks}


def test_everything_compiling_needs_is_found_here(capsys):
    report = diagnose()
    found = checks(report)
    assert report.ok
    assert found["NVRTC (compiling)"].ok and "NVRTC 1" in found["NVRTC (compiling)"].detail
    assert found["code generation and compile"].ok and "registers" in found["code generation and compile"].detail
    assert found["kernel templates"].ok and found["kernel cache"].ok
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "moejit can generate and compile kernels here." in out


def test_json_lists_every_check_with_its_fix(capsys):
    assert main(["doctor", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = [c["name"] for c in data["checks"]]
    assert names[:4] == ["moejit", "kernel templates", "NVRTC (compiling)", "code generation and compile"]
    assert "CUDA driver and GPUs (running)" in names and "kernel cache" in names
    for c in data["checks"]:
        assert set(c) == {"name", "ok", "detail", "fix", "required"}
        assert bool(c["fix"]) == (not c["ok"])   # a fix exactly where something is missing


def test_a_missing_team_database_is_a_problem_with_its_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOEJIT_KERNEL_DB", str(tmp_path / "team.sqlite"))
    report = diagnose()
    layer = checks(report)["kernel database (MOEJIT_KERNEL_DB)"]
    assert not layer.ok and "does not exist" in layer.detail and "MOEJIT_KERNEL_DB" in layer.fix
    assert not report.ok
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "!! kernel database (MOEJIT_KERNEL_DB)" in out and "cannot compile kernels here" in out


def test_a_damaged_cache_is_reported_not_fatal(tmp_path, monkeypatch):
    monkeypatch.setenv("MOEJIT_CACHE_DIR", str(tmp_path))
    (tmp_path / "kernels.sqlite").write_bytes(b"this is not a database" * 100)
    cache = checks(diagnose())["kernel cache"]
    assert not cache.ok and "moejit db verify" in cache.fix


def test_missing_templates_skip_what_depends_on_them(tmp_path, monkeypatch):
    monkeypatch.setenv("MOEJIT_TEMPLATES_DIR", str(tmp_path))
    found = checks(diagnose())
    assert not found["kernel templates"].ok and "kernel templates not found" in found["kernel templates"].detail
    assert not found["NVRTC (compiling)"].ok and "needs the kernel templates" in found["NVRTC (compiling)"].detail
    assert moejit.__version__ in found["moejit"].detail
