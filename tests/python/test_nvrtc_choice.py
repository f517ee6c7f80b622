"""One NVRTC per machine: which libnvrtc moejit loads follows a fixed rule
(_core.nvrtc_search_order), so installing torch (which brings pip's nvidia-cuda-nvrtc)
does not change it where a CUDA toolkit is present. Checked with fake library
directories whose libnvrtc files link to the real one."""

import json
import os
import subprocess
import sys

import pytest

import moejit
from moejit import _core


def _real_nvrtc():
    """The file of an NVRTC this machine has, for the fake directories to link to."""
    try:
        return os.path.realpath(moejit.Runtime(database=None).core.nvrtc_path)
    except RuntimeError:
        return None


REAL = _real_nvrtc()
needs_nvrtc = pytest.mark.skipif(REAL is None, reason="no CUDA toolkit NVRTC on this machine")


def _fake_library(root, *parts):
    directory = os.path.join(root, *parts[:-1])
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, parts[-1])
    os.symlink(REAL, path)
    return path


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("MOEJIT_NVRTC", "CUDA_HOME", "CUDA_PATH")}
    env.update(extra)
    return env


def _loaded_nvrtc(env):
    """(path, reason) of the NVRTC a fresh process's Runtime loads under `env`."""
    code = ("import json, moejit; c = moejit.Runtime(database=None).core; "
            "print(json.dumps([c.nvrtc_path, c.nvrtc_reason]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


@needs_nvrtc
def test_a_pip_wheel_does_not_displace_the_toolkit(tmp_path):
    """A fake nvidia-cuda-nvrtc wheel on the path, as `pip install torch` leaves one: the
    toolkit's NVRTC is still the one loaded."""
    wheel = _fake_library(str(tmp_path / "site"), "nvidia", "cu13", "lib", "libnvrtc.so.13")
    env = _clean_env(PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]))
    path, reason = _loaded_nvrtc(env)
    assert path != wheel and "site" not in path
    assert "toolkit" in reason
    # The wheel is seen, and listed after every toolkit.
    code = "import moejit.jit.paths as p; print('\\n'.join(p.nvrtc_wheels()))"
    seen = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert wheel in seen.stdout.split()


@needs_nvrtc
def test_cuda_home_comes_before_the_build_toolkit_and_wheels(tmp_path):
    toolkit = _fake_library(str(tmp_path / "toolkit"), "lib64", "libnvrtc.so.13")
    wheel = _fake_library(str(tmp_path / "site"), "nvidia", "cu13", "lib", "libnvrtc.so.13")
    env = _clean_env(CUDA_HOME=str(tmp_path / "toolkit"),
                     PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]))
    assert _loaded_nvrtc(env) == [toolkit, "the CUDA toolkit CUDA_HOME names"]
    assert wheel != toolkit


@needs_nvrtc
def test_moejit_nvrtc_overrides_everything(tmp_path):
    chosen = _fake_library(str(tmp_path / "mine"), "libnvrtc.so.13")
    _fake_library(str(tmp_path / "toolkit"), "lib64", "libnvrtc.so.13")
    env = _clean_env(MOEJIT_NVRTC=chosen, CUDA_HOME=str(tmp_path / "toolkit"))
    assert _loaded_nvrtc(env) == [chosen, "MOEJIT_NVRTC is set"]


def test_the_order_toolkits_then_wheels_then_the_loader(tmp_path, monkeypatch):
    for var in ("MOEJIT_NVRTC", "CUDA_HOME", "CUDA_PATH"):
        monkeypatch.delenv(var, raising=False)
    empty = tmp_path / "no-toolkit"
    (empty / "lib64").mkdir(parents=True)
    monkeypatch.setenv("CUDA_HOME", str(empty))   # holds no libnvrtc: left out
    build = tmp_path / "build-toolkit"
    (build / "lib64").mkdir(parents=True)
    (build / "lib64" / "libnvrtc.so.12").write_bytes(b"")
    wheel = str(tmp_path / "site" / "nvidia" / "cu13" / "lib" / "libnvrtc.so.13")
    order = _core.nvrtc_search_order([wheel], build_toolkit=str(build))
    paths = [p for p, _ in order]
    assert not any(p.startswith(str(empty)) for p in paths)
    assert paths[0] == str(build / "lib64" / "libnvrtc.so.12")
    assert order[0][1] == "the CUDA toolkit moejit was built with"
    at_wheel = paths.index(wheel)
    assert all(os.path.isabs(p) and "toolkit" in r for p, r in order[:at_wheel])
    assert all(not os.path.isabs(p) and "loader" in r for p, r in order[at_wheel + 1:])
    assert "no CUDA toolkit" in order[at_wheel][1]


@needs_nvrtc
def test_doctor_says_which_nvrtc_and_why(capsys):
    from moejit.tools.cli import main

    assert main(["doctor"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if "NVRTC (compiling)" in l)
    assert "chosen as" in line and ("toolkit" in line or "MOEJIT_NVRTC" in line)
