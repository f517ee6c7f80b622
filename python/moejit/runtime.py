"""The JIT runtime as Python sees it: compile, load and launch kernels for torch tensors."""

from __future__ import annotations

import functools
import threading
from typing import Optional

from . import _core, _paths


class Runtime:
    """Owns a C++ JitRuntime: the in-memory kernel cache, NVRTC and the CUDA driver.

    Everything is opened lazily: creating a Runtime needs neither a GPU nor NVRTC;
    compiling needs NVRTC; launching needs a GPU. Ops use `default_runtime()` unless
    they are given one.
    """

    def __init__(
        self,
        templates_dir: Optional[str] = None,
        nvrtc_candidates: Optional[list[str]] = None,
        line_info: bool = False,
    ) -> None:
        self.core = _core.JitRuntime(
            templates_dir or _paths.templates_dir(),
            _paths.nvrtc_candidates() if nvrtc_candidates is None else nvrtc_candidates,
            line_info,
        )
        self._targets: dict[int, _core.Target] = {}
        self._lock = threading.Lock()

    def target_for(self, device_index: int) -> _core.Target:
        """The most specific compile target for a CUDA device (sm_90a on Hopper)."""
        with self._lock:
            target = self._targets.get(device_index)
            if target is None:
                import torch

                major, minor = torch.cuda.get_device_capability(device_index)
                target = _core.target_for_device(major, minor)
                self._targets[device_index] = target
            return target

    def compile(self, spec: _core.KernelSpec) -> _core.CompiledKernel:
        return self.core.compile(spec)

    def __repr__(self) -> str:
        return f"Runtime(templates={self.core.templates_dir!r}, compiled={self.core.compiled_count})"


@functools.cache
def default_runtime() -> Runtime:
    """The process-wide runtime the ops use when none is passed, created on first use."""
    return Runtime()
