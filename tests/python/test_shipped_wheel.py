"""A wheel that ships a baked kernel database starts warm with no compiler: bake a small
model for sm_90a and sm_80, build a wheel with it (meson option kernel_db), install the
wheel into a fresh virtual environment, and run `moejit build` there with no user cache
and NVRTC hidden: every kernel must come from the shipped database, and a kernel that is
not there must fail with an error that says how to get it.

Builds the extension once more (the wheel), so it takes a few minutes; it needs no GPU.
"""

import os
import shutil
import subprocess
import sys
import venv
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = "megablocks-dmoe-xs"


def _run(cmd, env=None, cwd=None, check=True):
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}\n"
                    f"--- stderr\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    if shutil.which("meson", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")) is None:
        pytest.fail("meson not found next to this python: run the tests through `bash .ci/test`")
    work = tmp_path_factory.mktemp("wheel")
    baked = work / "baked.sqlite"
    env = dict(os.environ, MOEJIT_CACHE_DIR="none")
    _run([sys.executable, "-m", "moejit", "db", "bake", str(baked), "--model", MODEL, "--target", "sm_90a", "sm_80",
          "--dtype", "bf16", "--block-size", "128"], env=env, cwd=work)
    build_env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    _run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-w", str(work / "dist"),
          f"-Csetup-args=-Dkernel_db={baked}", REPO], env=build_env)
    wheels = list((work / "dist").glob("moejit-*.whl"))
    assert len(wheels) == 1, wheels
    fresh = work / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(fresh)
    python = fresh / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(wheels[0])])
    return {"wheel": wheels[0], "python": python, "baked": baked, "work": work}


def _isolated_env(**extra) -> dict:
    # No user cache, no NVRTC: only the package's own database can serve a kernel.
    keep = {k: v for k, v in os.environ.items() if k in ("HOME", "PATH", "LANG", "TMPDIR")}
    return keep | {"MOEJIT_CACHE_DIR": "none", "MOEJIT_NVRTC": "none", "PYTHONNOUSERSITE": "1"} | extra


def test_wheel_carries_the_baked_database(shipped):
    with zipfile.ZipFile(shipped["wheel"]) as wheel:
        names = wheel.namelist()
        assert "moejit/kernels/kernels.sqlite" in names
        info = wheel.getinfo("moejit/kernels/kernels.sqlite")
    assert info.file_size == os.path.getsize(shipped["baked"])


@pytest.mark.parametrize("target", ["sm_90a", "sm_80"])
def test_installed_wheel_builds_every_kernel_from_the_shipped_database(shipped, target):
    proc = _run([str(shipped["python"]), "-m", "moejit", "build", "--model", MODEL, "--no-run", "--target", target],
                env=_isolated_env(), cwd=shipped["work"])
    assert "0 compiled" in proc.stdout, proc.stdout
    assert "from the kernel database" in proc.stdout, proc.stdout


def test_a_kernel_missing_from_every_database_says_how_to_get_it(shipped):
    proc = _run([str(shipped["python"]), "-m", "moejit", "build", "--model", "qwen3-30b-a3b", "--no-run",
                 "--target", "sm_90a"], env=_isolated_env(), cwd=shipped["work"], check=False)
    assert proc.returncode != 0
    message = proc.stderr + proc.stdout
    assert "not in any kernel database" in message, message
    assert "moejit db bake" in message and "NVRTC" in message, message
