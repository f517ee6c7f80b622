"""`moejit doctor`: what moejit finds on this machine, and for each missing piece the
command that fixes it. Each check runs on its own, so one failure never hides the rest."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

from .. import __version__

from .. import _core

from ..jit import paths as _paths
from ..jit.runtime import Runtime, database_config
from ..jit.specs import kernel_spec


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""          # what to run or set when not ok
    required: bool = True  # False: only some features need it (a GPU for running)


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether everything generating and compiling needs is there."""
        return all(c.ok for c in self.checks if c.required)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}


def _check(report: Report, name: str, probe: Callable[[], tuple[bool, str]], fix: str, required: bool = True) -> None:
    try:
        ok, detail = probe()
    except Exception as e:   # a probe's failure is a finding, never a crash of the doctor
        ok, detail = False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    report.checks.append(Check(name, ok, detail, "" if ok else fix, required))


def diagnose(runtime: Optional[Runtime] = None) -> Report:
    report = Report()
    report.checks.append(Check("moejit", True, f"{__version__} (Python {platform.python_version()}, "
                                               f"{platform.machine()}, {sys.executable})"))
    rt: dict[str, Runtime] = {}

    def the_runtime() -> Runtime:
        if "runtime" not in rt:
            raise RuntimeError("not checked: it needs the kernel templates (see above)")
        return rt["runtime"]

    def templates() -> tuple[bool, str]:
        rt["runtime"] = runtime or Runtime(database=None)
        return True, f"{rt['runtime'].core.templates_dir} (content hash {rt['runtime'].core.templates_hash})"

    _check(report, "kernel templates", templates, "reinstall moejit: `pip install --force-reinstall moejit`")

    def nvrtc() -> tuple[bool, str]:
        core = the_runtime().core
        detail = f"NVRTC {core.nvrtc_version} at {core.nvrtc_path}, chosen as {core.nvrtc_reason}"
        # The others it would have taken, in order: the rule is _core.nvrtc_search_order's.
        others = [path for path, _ in _core.nvrtc_search_order(_paths.nvrtc_wheels())
                  if os.path.isabs(path) and os.path.exists(path) and
                  os.path.realpath(path) != os.path.realpath(core.nvrtc_path)]
        if others:
            detail += f"; also here, not used: {', '.join(others)}"
        return True, detail

    _check(report, "NVRTC (compiling)", nvrtc,
           "install the CUDA toolkit, or `pip install nvidia-cuda-nvrtc`, or set MOEJIT_NVRTC=/path/to/libnvrtc.so")

    def compile_probe() -> tuple[bool, str]:
        kernel = the_runtime().compile(kernel_spec("sdd", n=256, k=256, trans_b=True))
        r = kernel.resources
        return True, f"a test kernel compiled for sm_90a in {kernel.compile_ms:.0f} ms ({r.registers} registers)"

    _check(report, "code generation and compile", compile_probe,
           "see the NVRTC check above; `moejit build --no-run` shows the full compiler error")

    def toolkit_headers() -> tuple[bool, str]:
        root = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
        include = os.path.join(root, "include")
        found = os.path.exists(os.path.join(include, "cuda.h"))
        return found, f"{include} ({'has' if found else 'no'} cuda.h; needed to build moejit, not to run it)"

    _check(report, "CUDA include directory", toolkit_headers,
           "install the CUDA toolkit or set CUDA_HOME (only for building moejit from source)", required=False)

    def driver() -> tuple[bool, str]:
        core = the_runtime().core
        version = core.driver_version
        gpus = []
        for i in range(core.device_count()):
            info = core.device_info(i)
            target = _core.target_for_device(info.major, info.minor)
            gpus.append(f"{i}: {info.name} (sm_{info.major}{info.minor}, target {target.text()}, "
                        f"{info.multiprocessors} SMs)")
        return bool(gpus), f"driver {version // 1000}.{version % 1000 // 10}; " + ("; ".join(gpus) or "no GPU")

    _check(report, "CUDA driver and GPUs (running)", driver,
           "running kernels needs an NVIDIA GPU and its driver (libcuda.so.1); generating and compiling do not",
           required=False)

    def torch_probe() -> tuple[bool, str]:
        import torch

        cuda = torch.cuda.is_available()
        return True, (f"torch {torch.__version__} (CUDA {torch.version.cuda}), "
                      f"{'sees ' + str(torch.cuda.device_count()) + ' GPU(s)' if cuda else 'sees no GPU'}")

    _check(report, "PyTorch (ops on tensors)", torch_probe,
           "`pip install torch` (a CUDA build): moejit.ops and `moejit tune` need it", required=False)

    config = database_config()

    def cache() -> tuple[bool, str]:
        if not config.cache_path:
            return True, "disabled (MOEJIT_CACHE_DIR=none): kernels are compiled in every process"
        if not os.path.exists(config.cache_path):
            return True, f"{config.cache_path} (not created yet)"
        db = _core.KernelDb(config.cache_path, True)
        result = db.verify()
        size = db.total_bytes()
        healthy = result.integrity_ok and not result.damaged
        return healthy, (f"{config.cache_path}: {result.kernels} kernels, {size / 2**20:.1f} MB of "
                         f"{config.cache_max_bytes / 2**20:.0f} MB, "
                         + ("healthy" if healthy else f"integrity {result.integrity_message}, "
                                                      f"{len(result.damaged)} damaged"))

    _check(report, "kernel cache", cache,
           "`moejit db verify` for details; `moejit db prune --max-mb 0` or delete the file to start afresh")

    for path in config.read_only_paths:
        def layer(path: str = path) -> tuple[bool, str]:
            if not os.path.exists(path):
                return False, f"{path} does not exist"
            db = _core.KernelDb(path, True)
            return True, f"{path}: {len(db.entries())} kernels, {len(db.tunings())} tuning results (read-only)"

        listed = path not in _paths.packaged_databases()
        _check(report, "kernel database" + (" (MOEJIT_KERNEL_DB)" if listed else " (packaged)"), layer,
               "fix or remove the entry in MOEJIT_KERNEL_DB" if listed else "reinstall moejit")
    return report


def render(report: Report) -> str:
    width = max(len(c.name) for c in report.checks)
    lines = []
    for c in report.checks:
        mark = "ok " if c.ok else ("!! " if c.required else "-- ")
        lines.append(f"{mark}{c.name.ljust(width)}  {c.detail}")
        if c.fix:
            lines.append(f"   {' ' * width}  fix: {c.fix}")
    lines.append("")
    lines.append("moejit can generate and compile kernels here." if report.ok else
                 "moejit cannot compile kernels here: see the lines marked !!")
    return "\n".join(lines)
