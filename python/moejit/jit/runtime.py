"""The JIT runtime as Python sees it: compile, load and launch kernels for torch tensors."""

from __future__ import annotations

import functools
import logging
import os
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence, Union

from .. import _core

from . import paths as _paths


class MoejitWarning(UserWarning):
    """Something moejit worked around: an unusable kernel database, a failed cache write."""


def _warn(message: str) -> None:
    warnings.warn(message, MoejitWarning, stacklevel=2)


# Compile, cache and tuning events. MOEJIT_LOG=info (or 1) prints them to stderr,
# MOEJIT_LOG=debug also the tuner's every candidate; applications may attach their own
# handlers to the "moejit" logger instead.
_logger = logging.getLogger("moejit")


def _log(message: str) -> None:
    _logger.info(message)


def _configure_logging() -> None:
    level = os.environ.get("MOEJIT_LOG", "").strip().lower()
    if not level or level in ("0", "off", "none"):
        return
    numeric = logging.DEBUG if level == "debug" else logging.INFO
    if not any(getattr(h, "_moejit", False) for h in _logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("moejit %(relativeCreated)8.0f ms  %(message)s"))
        handler._moejit = True
        _logger.addHandler(handler)
    _logger.setLevel(numeric)


_configure_logging()


@dataclass(frozen=True)
class DebugSwitches:
    """The environment switches for debugging generated kernels (see README.md)."""

    dump_dir: str      # MOEJIT_DUMP_DIR: source, PTX, CUBIN and log of every kernel compiled
    line_info: bool    # MOEJIT_LINEINFO=1: -lineinfo, so profilers map SASS to template lines
    debug: bool        # MOEJIT_DEBUG=1: templates built with bounds checks that trap
    ablate: tuple[str, ...] = ()   # MOEJIT_ABLATE=loads,mma,epilogue: see ABLATIONS


# Stages of the wgmma family's products that MOEJIT_ABLATE (or Runtime(ablate=...)) leaves
# out, for finding where a kernel's time goes by timing it without one stage (the results
# are wrong: timing only). The stage's kernel code is compiled out with -DMOEJIT_ABLATE_<X>,
# a compile option and so part of the kernel database key: an ablated kernel is never
# handed out for a normal one.
ABLATIONS = {
    "loads": "the producer copies nothing: the consumers compute on whatever the stages hold",
    "mma": "the consumers issue no wgmma: the pipeline runs, and the epilogue stores zeros",
    "epilogue": "nothing is written: no rounding, no staging in shared memory, no TMA store",
}


def _ablations(text: str) -> tuple[str, ...]:
    names = tuple(a.strip().lower() for a in text.split(",") if a.strip())
    for name in names:
        if name not in ABLATIONS:
            raise ValueError(f"MOEJIT_ABLATE / ablate: {name!r}: expected a comma-separated list of "
                             f"{', '.join(ABLATIONS)}")
    return names


def debug_switches() -> DebugSwitches:
    def flag(name: str) -> bool:
        return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")

    return DebugSwitches(os.environ.get("MOEJIT_DUMP_DIR", ""), flag("MOEJIT_LINEINFO"), flag("MOEJIT_DEBUG"),
                         _ablations(os.environ.get("MOEJIT_ABLATE", "")))


def gpu_available() -> bool:
    """Whether torch is importable and sees a CUDA GPU."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def database_config(cache_dir: Optional[str] = None) -> _core.KernelDbConfig:
    """The kernel database layers the environment asks for (see KernelDbConfig): the
    user cache, then MOEJIT_KERNEL_DB's files, then the database shipped in the package.
    `cache_dir` overrides MOEJIT_CACHE_DIR."""
    config = _core.KernelDbConfig.from_environment(_paths.packaged_databases())
    if cache_dir is not None:
        config.cache_path = _paths.cache_file(cache_dir)
    return config


class Runtime:
    """Owns a C++ JitRuntime: the in-memory kernel cache in front of the kernel database,
    NVRTC and the CUDA driver.

    Everything is opened lazily: creating a Runtime needs neither a GPU nor NVRTC;
    compiling needs NVRTC; launching needs a GPU. Ops use `default_runtime()` unless
    they are given one. `database`: "environment" (the default) reads the layers from
    the environment (MOEJIT_CACHE_DIR, MOEJIT_KERNEL_DB); None keeps kernels in memory
    only; or an explicit `_core.KernelDbConfig`. `origin` ("compile", "tune" or "bake") is
    recorded with each kernel it stores, for `moejit db list`.
    """

    def __init__(
        self,
        templates_dir: Optional[str] = None,
        nvrtc_wheels: Optional[list[str]] = None,
        line_info: Optional[bool] = None,
        database: Union[str, _core.KernelDbConfig, None] = "environment",
        debug: Optional[bool] = None,
        dump_dir: Optional[str] = None,
        ablate: Optional[Sequence[str]] = None,
        origin: str = "compile",
    ) -> None:
        if database == "environment":
            database = database_config()
        elif database is not None and not isinstance(database, _core.KernelDbConfig):
            raise ValueError(f"database={database!r}: expected 'environment', None or a KernelDbConfig")
        switches = debug_switches()
        line_info = switches.line_info if line_info is None else line_info
        debug = switches.debug if debug is None else debug
        if isinstance(ablate, str):   # one name, or a comma-separated list as in MOEJIT_ABLATE
            ablate = [ablate]
        ablate = switches.ablate if ablate is None else _ablations(",".join(ablate))
        if ablate:
            _warn(f"moejit runtime with ablated kernels ({', '.join(ablate)}): their results are wrong, for "
                  "timing only (MOEJIT_ABLATE)")
        self.ablate = ablate
        self.core = _core.JitRuntime(
            templates_dir or _paths.templates_dir(),
            _paths.nvrtc_wheels() if nvrtc_wheels is None else nvrtc_wheels,
            line_info,
            database,
            _warn,
            (["-DMOEJIT_DEBUG"] if debug else []) + [f"-DMOEJIT_ABLATE_{a.upper()}" for a in ablate],
            switches.dump_dir if dump_dir is None else dump_dir,
            os.path.join(tempfile.gettempdir(), "moejit-failed-compiles"),
            _log if _logger.isEnabledFor(logging.INFO) else None,
            origin,
        )
        self._targets: dict[int, _core.Target] = {}
        self._tuned: dict[tuple[str, int, int], Optional[_core.TileConfig]] = {}
        self._warned_untuned: set[str] = set()
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

    def tuned_spec(self, spec: _core.KernelSpec, device_index: int, bucket: int) -> _core.KernelSpec:
        """`spec` with the tile tuned for its problem on this GPU at the nearest token bucket,
        or unchanged (its heuristic tile) with one warning per problem saying how to tune."""
        key = (spec.problem_text(), device_index, bucket)
        with self._lock:
            cached = key in self._tuned
            tile = self._tuned.get(key)
        if not cached:
            import torch

            gpu = torch.cuda.get_device_name(device_index)
            tile = self.core.tuned_tile(spec, gpu, bucket)
            with self._lock:
                self._tuned[key] = tile
                warn = tile is None and spec.problem_text() not in self._warned_untuned
                self._warned_untuned.add(spec.problem_text())
            if warn:
                _warn(f"{spec.short_name()} was never tuned on {gpu}: using the heuristic tile "
                      f"{spec.tile.text()}. `moejit tune` tunes a model's kernels (see `moejit tune --help`).")
        if tile is None:
            return spec
        tuned = spec.with_tile(tile)
        try:
            tuned.validate()
        except _core.SpecError:
            # Tuned for the other kernel family (a tuning records a tile, not a family):
            # this spec's family cannot run that tile, so it keeps its heuristic one.
            return spec
        return tuned

    def record_tuning(self, entry: _core.TuningEntry) -> bool:
        """Stores a tuning result; later ops in this runtime use it at once."""
        stored = self.core.record_tuning(entry)
        with self._lock:
            self._tuned.clear()
        return stored

    def compile(self, spec: _core.KernelSpec) -> _core.CompiledKernel:
        return self.core.compile(spec)

    def __repr__(self) -> str:
        return f"Runtime(templates={self.core.templates_dir!r}, compiled={self.core.compiled_count})"


@functools.cache
def default_runtime() -> Runtime:
    """The process-wide runtime the ops use when none is passed, created on first use."""
    return Runtime()
