"""Everything about one generated kernel, for debugging: `moejit.inspect(...)` returns it
as an object, `moejit show` prints it. A kernel is named by its spec (text or KernelSpec),
by its key in a kernel database, or by a model shape and the layer product it computes."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Union

from .. import _core
from .runtime import Runtime

# The layer's products by name (layer_kernels() order).
LAYER_OPS = ("sdd", "dsd", "dsd-t")

# Per-multiprocessor limits (CUDA programming guide): registers, threads, resident blocks
# and shared memory, by compute capability.
_SM_LIMITS = {80: (65536, 2048, 32, 167936), 86: (65536, 1536, 16, 102400), 87: (65536, 2048, 32, 167936),
              89: (65536, 1536, 24, 102400), 90: (65536, 2048, 32, 233472)}


@dataclass
class Occupancy:
    blocks_per_sm: int
    warps_per_sm: int
    limited_by: str   # "registers", "shared memory", "threads" or "blocks"


@dataclass(repr=False)
class KernelInspection:
    """One kernel's source, PTX, SASS, resources and tuning results (moejit.inspect); the
    fields hold the whole texts, the repr is a one-line summary."""

    spec: str
    name: str
    origin: str                       # "kernel database", "compiled" or "memory"
    key: dict[str, Any]
    template: str                     # the header the generated source instantiates
    lowered_name: str
    resources: dict[str, Any]
    occupancy: Optional[Occupancy]
    source: str
    ptx: str
    sass: Optional[str]               # None where no disassembler is installed
    sass_note: str
    log: str
    tunings: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __repr__(self) -> str:
        r = self.resources
        shared = r["dynamic_shared_bytes"] + r["static_shared_bytes"]
        return (f"<KernelInspection {self.name} from {self.origin}: {r['registers']} registers, {shared} bytes of "
                f"shared memory, {r['threads']} threads; source {len(self.source)} chars, PTX {len(self.ptx)} chars, "
                f"SASS {'none' if self.sass is None else f'{len(self.sass)} chars'}, "
                f"{len(self.tunings)} tuning result(s)>")


def occupancy(target: _core.Target, registers: int, threads: int, shared_bytes: int) -> Optional[Occupancy]:
    """Resident thread blocks per multiprocessor, and what limits them."""
    limits = _SM_LIMITS.get(target.major * 10 + target.minor) or _SM_LIMITS.get(90 if target.major >= 9 else 80)
    regs_per_sm, threads_per_sm, blocks_per_sm, smem_per_sm = limits
    warps = (threads + 31) // 32
    # Registers are allocated per warp in units of 256.
    regs_per_warp = ((max(registers, 1) * 32 + 255) // 256) * 256
    by = {
        "registers": regs_per_sm // (regs_per_warp * warps),
        "shared memory": smem_per_sm // (shared_bytes + 1024) if shared_bytes else blocks_per_sm,
        "threads": threads_per_sm // threads,
        "blocks": blocks_per_sm,
    }
    limit = min(by, key=lambda k: by[k])
    return Occupancy(by[limit], by[limit] * warps, limit)


def _tool_dirs() -> list[str]:
    """Where a disassembler may be: the CUDA toolkit, and the copy Triton's wheel carries
    (PyTorch installs Triton, so most GPU machines have one even without the toolkit)."""
    dirs = [os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin")]
    spec = importlib.util.find_spec("triton")
    if spec is not None and spec.submodule_search_locations:
        dirs += [os.path.join(root, "backends", "nvidia", "bin") for root in spec.submodule_search_locations]
    return dirs


def _find_tool(tool: str) -> Optional[str]:
    found = shutil.which(tool)
    if found:
        return found
    for directory in _tool_dirs():
        path = os.path.join(directory, tool)
        if os.access(path, os.X_OK):
            return path
    return None


def _disassemble(cubin: bytes) -> tuple[Optional[str], str]:
    for tool, args in [("cuobjdump", ["--dump-sass"]), ("nvdisasm", [])]:
        path = _find_tool(tool)
        if path is None:
            continue
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(cubin)
            f.flush()
            result = subprocess.run([path, *args, f.name], capture_output=True, text=True, timeout=60)
        if result.returncode == 0:
            return result.stdout, f"from {path}"
        return None, f"{path} failed: {result.stderr.strip()[:200]}"
    return None, "no cuobjdump or nvdisasm found: install the CUDA toolkit (or put its bin/ on PATH) to see SASS"


def _spec_of(spec: Union[str, _core.KernelSpec]) -> _core.KernelSpec:
    if isinstance(spec, _core.KernelSpec):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"spec={spec!r}: expected a canonical spec text or a KernelSpec")
    return _core.KernelSpec.parse(spec)


def _layer_spec(model: str, op: str, target: _core.Target, dtype: str, block_size: int) -> _core.KernelSpec:
    from .layer_kernels import layer_kernels
    from ..zoo import model as lookup

    if op not in LAYER_OPS:
        raise ValueError(f"op={op!r}: expected one of {', '.join(LAYER_OPS)} (the layer's products)")
    kernels = layer_kernels(lookup(model), target=target, dtype=dtype, block_size=block_size)
    return kernels[LAYER_OPS.index(op)].spec


def inspect(
    spec: Union[str, _core.KernelSpec, None] = None,
    *,
    key: Optional[str] = None,
    db: Optional[str] = None,
    model: Optional[str] = None,
    op: Optional[str] = None,
    target: str = "sm_90a",
    dtype: str = "bf16",
    block_size: int = 128,
    gpu_name: Optional[str] = None,
    runtime: Optional[Runtime] = None,
    progress: Optional[Callable[[str], None]] = None,
) -> KernelInspection:
    """Source, PTX, SASS (where a disassembler is installed), resources, occupancy, key
    parts and tuning results of one kernel. Name it by `spec`, by `key` (a key hash or a
    unique prefix, in `db` or the user cache), or by `model` and `op` (one of LAYER_OPS,
    with `target`, `dtype`, `block_size`). A spec is fetched from the kernel database or
    compiled; no GPU is needed. `progress` is told of each slow step before it starts."""
    progress = progress or (lambda message: None)
    named = [spec is not None, key is not None, model is not None or op is not None]
    if sum(named) != 1:
        raise ValueError("inspect: name the kernel by exactly one of spec=, key= or model= with op=")
    runtime = runtime or Runtime()
    if key is not None:
        from .kernel_db import KernelDb

        with KernelDb.open(db, read_only=True) as kdb:
            loaded = kdb.core.load(kdb.resolve(key))
            if loaded is None:
                raise ValueError(f"key={key!r}: the stored kernel is damaged; `moejit db verify` lists such entries")
            kernel_key, kernel = loaded
            origin = f"kernel database {kdb.path}"
    else:
        if model is not None or op is not None:
            if model is None or op is None:
                raise ValueError("inspect: model= and op= go together")
            the_spec = _layer_spec(model, op, _core.Target(target), dtype, block_size)
        else:
            the_spec = _spec_of(spec)
        before = runtime.core.stats
        progress(f"{the_spec.short_name()}: from the kernel database, or compiling for {the_spec.target.text()} "
                 "(seconds) ...")
        kernel = runtime.compile(the_spec)
        after = runtime.core.stats
        origin = ("kernel database" if after.database_hits > before.database_hits else
                  "compiled" if after.compiled > before.compiled else "memory")
        kernel_key = runtime.core.kernel_key(the_spec)
    s = kernel.spec
    r = kernel.resources
    resources = dict(registers=r.registers, static_shared_bytes=r.static_shared_bytes,
                     dynamic_shared_bytes=kernel.dynamic_shared_bytes, stack_bytes=r.stack_bytes,
                     spill_store_bytes=r.spill_store_bytes, spill_load_bytes=r.spill_load_bytes,
                     threads=kernel.threads, compile_ms=kernel.compile_ms)
    # A key built for a lookup leaves the NVRTC version (provenance, not part of the hash)
    # empty: show the NVRTC this runtime compiles with.
    nvrtc_version = kernel_key.nvrtc_version
    if not nvrtc_version:
        try:
            nvrtc_version = runtime.core.nvrtc_version
        except RuntimeError:
            nvrtc_version = "none"
    key_parts = dict(hash=kernel_key.hash_hex(), spec_text=kernel_key.spec_text, target=kernel_key.target,
                     template_hash=kernel_key.template_hash, nvrtc_version=nvrtc_version,
                     compile_options=kernel_key.compile_options.splitlines(),
                     moejit_version=kernel_key.moejit_version)
    progress("disassembling the cubin to SASS ...")
    sass, note = _disassemble(bytes(kernel.cubin))
    tunings = []
    if gpu_name is None:
        from .runtime import gpu_available

        if gpu_available():
            import torch

            gpu_name = torch.cuda.get_device_name(0)
    if gpu_name:
        for t in runtime.core.tunings(s, gpu_name):
            tunings.append(dict(gpu_name=t.gpu_name, token_bucket=t.token_bucket, best_tile=t.best_tile,
                                best_ms=t.best_ms, candidates=json.loads(t.candidates_json or "[]")))
    template = os.path.join(runtime.core.templates_dir, _core.generate_source(s).template_header)
    return KernelInspection(
        spec=s.text(), name=s.short_name(), origin=origin, key=key_parts, template=template,
        lowered_name=kernel.lowered_name, resources=resources,
        occupancy=occupancy(s.target, r.registers, kernel.threads, kernel.dynamic_shared_bytes + r.static_shared_bytes),
        source=kernel.source, ptx=kernel.ptx, sass=sass, sass_note=note, log=kernel.log, tunings=tunings)
