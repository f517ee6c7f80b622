"""Where a benchmark ran: the GPU, its driver, and the versions of everything timed."""

from __future__ import annotations

import platform
import subprocess
from typing import Any, Optional

from .systems import version_of


def _nvidia_smi_driver() -> Optional[str]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    return lines[0] if out.returncode == 0 and lines else None


def _runtime_versions() -> dict[str, Optional[str]]:
    """The CUDA version the driver supports and NVRTC's, as moejit's own runtime finds them."""
    found: dict[str, Optional[str]] = {"driver_cuda": None, "nvrtc": None}
    try:
        from ...jit.runtime import Runtime

        core = Runtime(database=None).core
    except Exception:   # moejit's core cannot start here: not reported
        return found
    for key, read in (("driver_cuda", lambda: core.driver_version), ("nvrtc", lambda: core.nvrtc_version)):
        try:
            value = read()
        except Exception:   # no driver, or no NVRTC: that field is just not reported
            continue
        if key == "driver_cuda" and isinstance(value, int):
            value = f"{value // 1000}.{value % 1000 // 10}" if value else None
        found[key] = None if value is None else str(value)
    return found


def environment() -> dict[str, Any]:
    """GPU name, compute capability, SMs, memory; driver; CUDA, torch, triton, moejit, stk,
    MegaBlocks and Python versions. Fields that cannot be found here are None."""
    from ... import __version__ as moejit_version

    env: dict[str, Any] = {"moejit": moejit_version, "python": platform.python_version(),
                           "torch": None, "cuda": None, "triton": version_of("triton"),
                           "stk": version_of("stanford-stk"), "megablocks": version_of("megablocks"),
                           "gpu": None, "compute_capability": None, "sms": None, "gpu_memory_gib": None,
                           "driver": _nvidia_smi_driver(), **_runtime_versions()}
    try:
        import torch
    except ImportError:
        return env
    env["torch"] = torch.__version__
    env["cuda"] = torch.version.cuda
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, compute_capability=f"{p.major}.{p.minor}", sms=p.multi_processor_count,
                   gpu_memory_gib=round(p.total_memory / 2**30, 1))
    return env


def describe(env: dict[str, Any]) -> str:
    """One line: 'NVIDIA H200 (sm 9.0, 132 SMs), driver 580.65, CUDA 13.0, torch 2.11.0, ...'."""
    gpu = env.get("gpu") or "no GPU"
    if env.get("gpu"):
        gpu += f" (sm {env.get('compute_capability')}, {env.get('sms')} SMs)"
    parts = [gpu]
    for key, label in (("driver", "driver"), ("cuda", "CUDA"), ("torch", "torch"), ("triton", "triton"),
                       ("moejit", "moejit"), ("nvrtc", "NVRTC"), ("stk", "stk"), ("megablocks", "megablocks")):
        if env.get(key):
            parts.append(f"{label} {env[key]}")
    return ", ".join(parts)
