"""The kernel database from Python: open, query, export, import, verify and prune.

Every compiled kernel is stored in an SQLite file under its *complete key*: the spec's
canonical text (tile and target included), the content hash of the templates, the NVRTC
version, the compile options and the moejit version. Change any part and an old entry is
never used for the new request, so a hit in any database is a correct kernel.

A runtime reads a stack of databases (`moejit.jit.runtime.database_config()`). Lookup order:

1. the writable user cache, ``$MOEJIT_CACHE_DIR/kernels.sqlite`` (default
   ``$XDG_CACHE_HOME/moejit``, else ``~/.cache/moejit``; ``MOEJIT_CACHE_DIR=none``
   disables it), bounded by ``MOEJIT_CACHE_MAX_MB`` (default 4096 MB) with
   least-recently-used eviction;
2. the read-only databases listed in ``MOEJIT_KERNEL_DB`` (``:``-separated), in the
   order listed;
3. the database shipped inside the package (``moejit/kernels/kernels.sqlite``), if any.

The first layer holding the key serves the kernel; a kernel found in a read-only layer
is not copied into the cache. A kernel found nowhere is compiled with NVRTC and written
to the user cache only. A layer that cannot be used (missing, damaged, written by a newer
moejit, not a kernel database, on a full disk) produces one `MoejitWarning` and is
skipped; a damaged user cache is moved aside to ``kernels.sqlite.corrupt-<time>`` and a
fresh one is started, while a newer moejit's cache is left untouched.

Every row is checked before it is used: a hash over the whole record (key parts, tile,
entry point, CUBIN, launch geometry, resources, source, PTX and log), and the fields that
follow from others recomputed (geometry from the spec, resources from the CUBIN and log).
A row that fails is never used: it is dropped and the kernel compiled again. A user cache
whose pages are damaged (SQLite's quick_check at start for caches up to 256 MB, or a read
that fails) is moved aside to ``kernels.sqlite.corrupt-<time>-<pid>`` and the intact
kernels it still holds are copied into a fresh cache; ``moejit db verify --repair`` does
the same for any file. A user cache that cannot be written (a read-only mount, a shared
pre-warmed directory) still serves its kernels; new ones are kept in memory.

`KernelDb` below is one such file, for tools and the ``moejit db`` command line::

    db = moejit.KernelDb.open()                      # the user cache
    for row in db.entries(): print(row.key_hash, row.spec_text)
    db.export("team.sqlite", model="mixtral-8x7b", target="sm_90a")
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Union

from .. import _core
from .runtime import Runtime, database_config, gpu_available
from .specs import BLOCK_SIZES, DTYPES

__all__ = ["KernelDb", "KernelRow", "TuningRow", "VerifyResult", "RepairResult", "LoadFailure"]



def problem_text(spec_text: str) -> str:
    """A spec text without its implementation choices (tile and family): what stays the
    same when the autotuner picks another tile for the same product (KernelSpec.problem_text)."""
    return _core.KernelSpec.parse(spec_text).problem_text()


@dataclass(frozen=True)
class KernelRow:
    """One stored kernel, without its artifacts (see `KernelDb.show` for those)."""

    key_hash: str
    spec_text: str
    name: str                  # the spec's short name, e.g. sdd_nt_bf16_b128_n4096_k512
    target: str
    tile: str
    registers: int
    spill_store_bytes: int
    spill_load_bytes: int
    static_shared_bytes: int
    dynamic_shared_bytes: int
    stack_bytes: int
    threads: int
    size_bytes: int            # cubin, source, PTX and log together
    compile_ms: float
    created_at: float          # seconds since the epoch
    last_used_at: float
    template_hash: str
    nvrtc_version: str
    moejit_version: str
    compile_options: list[str] = field(default_factory=list)
    origin: str = "compile"    # what made it: a user's compile, `moejit tune` or `moejit db bake`

    @property
    def spill_bytes(self) -> int:
        return self.spill_store_bytes + self.spill_load_bytes


@dataclass(frozen=True)
class TuningRow:
    """The autotuner's result for one problem (a spec without its tile) on one GPU."""

    problem: str
    target: str
    gpu_name: str
    token_bucket: int
    best_tile: str
    best_ms: float
    candidates: list[Any]
    tuned_at: float
    template_hash: str
    nvrtc_version: str
    moejit_version: str


@dataclass(frozen=True)
class LoadFailure:
    key_hash: str
    name: str
    message: str


@dataclass
class VerifyResult:
    """What `KernelDb.verify` found. `ok` is false for damaged pages (SQLite's
    integrity_check, or rows it cannot read back), a damaged entry (one that fails its
    record check; `reasons` says why) or a cubin the GPU rejects."""

    path: str
    integrity_ok: bool
    integrity_message: str
    kernels: int
    damaged: list[str]
    reasons: dict[str, str] = field(default_factory=dict)   # key hash -> why it fails its check
    unreadable: int = 0                   # rows SQLite could not read back
    read_only: bool = False               # opened read-only (a read-only file, directory or mount)
    load_checked: bool = False            # whether cubins were loaded on a GPU
    device: Optional[str] = None          # "NVIDIA H200 (sm_90a)" when checked
    loaded: int = 0                       # cubins for this GPU that loaded
    other_targets: int = 0                # cubins for other architectures (not loadable here)
    load_failures: list[LoadFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.integrity_ok and not self.unreadable and not self.damaged and not self.load_failures

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["ok"] = self.ok
        return d


@dataclass(frozen=True)
class RepairResult:
    """What `KernelDb.repair` did: the damaged file moved to `moved_to`, and a fresh file
    at `path` holding the `copied` kernels (and `tunings` results) that were intact."""

    path: str
    moved_to: str
    copied: int
    dropped: int        # read back but failing their check
    unreadable: int     # rows (or runs of rows) SQLite could not read
    tunings: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _row(e: _core.KernelEntry) -> KernelRow:
    k, r = e.key, e.resources
    try:
        name = _core.KernelSpec.parse(k.spec_text).short_name()
    except Exception:   # a row written by another moejit may not parse here
        name = k.spec_text
    return KernelRow(
        key_hash=e.key_hash, spec_text=k.spec_text, name=name, target=k.target, tile=e.tile,
        registers=r.registers, spill_store_bytes=r.spill_store_bytes, spill_load_bytes=r.spill_load_bytes,
        static_shared_bytes=r.static_shared_bytes, dynamic_shared_bytes=e.dynamic_shared_bytes,
        stack_bytes=r.stack_bytes, threads=e.threads, size_bytes=e.size_bytes, compile_ms=e.compile_ms,
        created_at=e.created_at, last_used_at=e.last_used_at, template_hash=k.template_hash,
        nvrtc_version=k.nvrtc_version, moejit_version=k.moejit_version,
        compile_options=[o for o in k.compile_options.split("\n") if o], origin=e.origin,
    )


def _tuning_row(t: _core.TuningEntry) -> TuningRow:
    try:
        candidates = json.loads(t.candidates_json) if t.candidates_json else []
    except ValueError:
        candidates = [t.candidates_json]
    return TuningRow(t.problem, t.target, t.gpu_name, t.token_bucket, t.best_tile, t.best_ms, candidates,
                     t.tuned_at, t.template_hash, t.nvrtc_version, t.moejit_version)


def _default_cache_path() -> str:
    path = database_config().cache_path
    if not path:
        raise ValueError("path=None: the user kernel cache is disabled (MOEJIT_CACHE_DIR=none); expected an "
                         "explicit path of a kernel database")
    return path


def _target_text(target: Any) -> str:
    if isinstance(target, _core.Target):
        return target.text()
    if not isinstance(target, str):
        raise ValueError(f"target={target!r}: expected an architecture such as 'sm_90a' or 'sm_80'")
    return _core.Target(target).text()   # SpecError (a ValueError) names the field


def _model_shape(model: Any):
    from ..zoo import ModelShape, model as lookup

    if isinstance(model, ModelShape):
        return model
    if not isinstance(model, str):
        raise ValueError(f"model={model!r}: expected a model name (see `moejit models`) or a ModelShape")
    return lookup(model)


def _model_problems(shape, targets: Iterable[str]) -> set[str]:
    """Problem texts (spec texts without tile) of every kernel the model's layer needs,
    in both dtypes and block sizes, for the given targets."""
    from .layer_kernels import all_layer_kernels

    problems: set[str] = set()
    for target in targets:
        for dtype in DTYPES:
            for block_size in BLOCK_SIZES:
                try:
                    kernels = all_layer_kernels(shape, target=target, dtype=dtype, block_size=block_size)
                except ValueError:   # a combination the model cannot use (e.g. an extent not a block multiple)
                    continue
                problems.update(problem_text(k.spec.text()) for k in kernels)
    return problems


class KernelDb:
    """One kernel database file. Open with `KernelDb.open(path)`; `path=None` is the
    user cache the environment names (MOEJIT_CACHE_DIR)."""

    def __init__(self, db: _core.KernelDb) -> None:
        self._db: Optional[_core.KernelDb] = db

    # -- opening ---------------------------------------------------------------

    @classmethod
    def open(cls, path: Union[str, os.PathLike, None] = None, read_only: bool = False,
             busy_timeout_ms: int = 60000) -> "KernelDb":
        """Opens a database. Writable opening creates the file (and its directory) when
        missing and migrates an older schema; read-only opening needs an existing file.
        Raises `_core.KernelDbError` for a file of a newer moejit or of another program."""
        if path is None:
            path = _default_cache_path()
        elif not isinstance(path, (str, os.PathLike)):
            raise ValueError(f"path={path!r}: expected the path of a kernel database file, or None for the user cache")
        path = os.fspath(path)
        if not path:
            raise ValueError("path='': expected the path of a kernel database file, or None for the user cache")
        if os.path.isdir(path):
            raise ValueError(f"path={path!r} is a directory: expected a kernel database file (such as "
                             f"{os.path.join(path, 'kernels.sqlite')})")
        if read_only and not os.path.exists(path):
            raise ValueError(f"path={path!r}: no such file; expected an existing kernel database")
        if not read_only and os.path.exists(path):
            for p in (path, os.path.dirname(os.path.abspath(path))):
                if not os.access(p, os.W_OK):
                    raise ValueError(f"path={path!r}: {p} is not writable (a read-only file, directory or mount); "
                                     f"expected a writable database, or read_only=True to read it")
        if not read_only:
            parent = os.path.dirname(os.path.abspath(path))
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as e:
                raise ValueError(f"path={path!r}: cannot create its directory ({e.strerror}); expected a "
                                 f"writable location") from None
        return cls(_core.KernelDb(path, read_only, busy_timeout_ms))

    def close(self) -> None:
        """Closes the file (also done when the object is garbage-collected)."""
        self._db = None

    def __enter__(self) -> "KernelDb":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def core(self) -> _core.KernelDb:
        if self._db is None:
            raise ValueError("this KernelDb is closed")
        return self._db

    @property
    def path(self) -> str:
        return self.core.path

    @property
    def read_only(self) -> bool:
        return self.core.read_only

    @property
    def schema_version(self) -> int:
        return self.core.schema_version

    def __repr__(self) -> str:
        if self._db is None:
            return "KernelDb(closed)"
        return f"KernelDb({self.path!r}{', read_only=True' if self.read_only else ''})"

    def _writable(self, what: str) -> _core.KernelDb:
        if self.core.read_only:
            raise ValueError(f"{what}: {self.path} was opened read-only; expected KernelDb.open(..., read_only=False)")
        return self.core

    # -- queries ---------------------------------------------------------------

    def entries(self) -> list[KernelRow]:
        """Every stored kernel, ordered by spec text."""
        return [_row(e) for e in self.core.entries()]

    def total_bytes(self) -> int:
        return self.core.total_bytes()

    def tunings(self) -> list[TuningRow]:
        """The autotuner's results stored here."""
        return [_tuning_row(t) for t in self.core.tunings()]

    def resolve(self, key: str) -> str:
        """The full key hash a hash or unique hash prefix names."""
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f"key={key!r}: expected a kernel's key hash or a unique prefix of it (see `moejit db list`)")
        prefix = key.strip().lower()
        matches = [e.key_hash for e in self.core.entries() if e.key_hash.startswith(prefix)]
        if not matches:
            raise ValueError(f"key={key!r}: no kernel in {self.path} has a key hash starting with it; expected a "
                             f"prefix of one of the hashes `moejit db list` shows")
        if len(matches) > 1:
            shown = ", ".join(sorted(matches)[:5]) + (", ..." if len(matches) > 5 else "")
            raise ValueError(f"key={key!r} is ambiguous: {len(matches)} kernels match ({shown}); expected a longer "
                             f"prefix")
        return matches[0]

    def tuned_on(self, rows: Iterable[KernelRow]) -> dict[str, list[str]]:
        """key hash -> the GPUs whose tuning (in this file) chose that kernel's tile for its
        problem; kernels no tuning chose are left out."""
        chosen: dict[tuple[str, str], set[str]] = {}
        for t in self.tunings():
            chosen.setdefault((t.problem, t.best_tile), set()).add(t.gpu_name)
        out = {}
        for r in rows:
            try:
                gpus = chosen.get((problem_text(r.spec_text), r.tile))
            except ValueError:   # a row of another moejit whose spec does not parse here
                continue
            if gpus:
                out[r.key_hash] = sorted(gpus)
        return out

    def show(self, key: str) -> dict[str, Any]:
        """One kernel by key hash or unique prefix: its key parts, resources, generated
        source, PTX and NVRTC log."""
        key_hash = self.resolve(key)
        row = next(r for r in self.entries() if r.key_hash == key_hash)
        loaded = self.core.load(key_hash)
        if loaded is None:
            raise ValueError(f"key={key!r}: kernel {key_hash} in {self.path} is damaged ({self.core.check(key_hash)}); "
                             f"it is never used: `moejit db verify` lists damaged kernels, `moejit db verify "
                             f"--repair` or a recompile replaces them")
        stored_key, kernel = loaded
        return {
            "key_hash": key_hash,
            "name": row.name,
            "spec": stored_key.spec_text,
            "key": {
                "spec_text": stored_key.spec_text,
                "target": stored_key.target,
                "template_hash": stored_key.template_hash,
                "nvrtc_version": stored_key.nvrtc_version,
                "compile_options": [o for o in stored_key.compile_options.split("\n") if o],
                "moejit_version": stored_key.moejit_version,
            },
            "tile": row.tile,
            "origin": row.origin,
            "tuned_on": self.tuned_on([row]).get(key_hash, []),
            "lowered_name": kernel.lowered_name,
            "resources": {
                "registers": kernel.resources.registers,
                "static_shared_bytes": kernel.resources.static_shared_bytes,
                "dynamic_shared_bytes": kernel.dynamic_shared_bytes,
                "stack_bytes": kernel.resources.stack_bytes,
                "spill_store_bytes": kernel.resources.spill_store_bytes,
                "spill_load_bytes": kernel.resources.spill_load_bytes,
                "threads": kernel.threads,
            },
            "compile_ms": kernel.compile_ms,
            "cubin_bytes": len(kernel.cubin),
            "size_bytes": row.size_bytes,
            "created_at": row.created_at,
            "last_used_at": row.last_used_at,
            "source": kernel.source,
            "ptx": kernel.ptx,
            "log": kernel.log,
        }

    def load(self, key: str) -> _core.CompiledKernel:
        """The stored kernel (cubin and artifacts) by key hash or unique prefix."""
        key_hash = self.resolve(key)
        loaded = self.core.load(key_hash)
        if loaded is None:
            raise ValueError(f"key={key!r}: kernel {key_hash} in {self.path} is damaged ({self.core.check(key_hash)})")
        return loaded[1]

    # -- export / import -------------------------------------------------------

    def select(self, model: Any = None, target: Any = None) -> list[KernelRow]:
        """The entries `export` would copy (see there)."""
        rows = self.entries()
        if target is not None:
            wanted = _target_text(target)
            rows = [r for r in rows if r.target == wanted]
        if model is not None:
            shape = _model_shape(model)
            problems = _model_problems(shape, sorted({r.target for r in rows}))
            rows = [r for r in rows if problem_text(r.spec_text) in problems]
        return rows

    def export(self, path: Union[str, os.PathLike], model: Any = None, target: Any = None) -> int:
        """Writes a standalone database file (one file, no journal beside it) holding the
        selected kernels and the tuning results of their targets; returns how many kernels
        it holds. `model` (a name from `moejit models`, or a ModelShape) keeps the kernels
        that model's dMoE layer needs, forward and backward, in either dtype and block
        size; they are matched on the spec text without its tile, since tuned kernels
        differ there. `target` ("sm_90a") keeps one architecture. Neither: everything.

        `path` must not exist yet: export never merges (use `import_` on the receiving
        side). The file is built beside `path` and renamed into place when complete."""
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ValueError(f"path={path!r}: expected the path of a new database file")
        path = os.path.abspath(os.fspath(path))
        if os.path.exists(path):
            raise ValueError(f"path={path!r} already exists: expected a new file (export writes a fresh database; "
                             f"`moejit db import` merges into an existing one)")
        selected = {r.key_hash for r in self.select(model=model, target=target)}
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            raise ValueError(f"path={path!r}: directory {directory} does not exist")
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".partial", dir=directory)
        os.close(fd)
        os.unlink(tmp)   # SQLite creates it; an empty file would also do, but this is cleaner
        try:
            destination = _core.KernelDb(tmp, False)
            count = self.core.copy_into(destination, lambda e: e.key_hash in selected)
            del destination   # closes the connection
            _make_standalone(tmp)
            os.replace(tmp, path)
        except BaseException:
            for p in (tmp, tmp + "-wal", tmp + "-shm"):
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
            raise
        return count

    def import_(self, path: Union[str, os.PathLike]) -> int:
        """Merges the kernels and tuning results of another database file into this one;
        returns how many kernels were new here (kernels already present are kept)."""
        core = self._writable("import_")
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ValueError(f"path={path!r}: expected the path of a kernel database file")
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ValueError(f"path={path!r}: no such file; expected an existing kernel database")
        if os.path.exists(self.path) and os.path.samefile(path, self.path):
            raise ValueError(f"path={path!r} is this database itself; expected another kernel database")
        source = _core.KernelDb(path, True)
        return source.copy_into(core, lambda e: True)

    # -- maintenance -----------------------------------------------------------

    def verify(self, load_on_gpu: Optional[bool] = None) -> VerifyResult:
        """Checks the file's integrity (SQLite's integrity_check) and every cubin against
        its stored hash. With a CUDA GPU (`load_on_gpu=None`: when torch sees one;
        True: required), also loads every cubin built for GPU 0's architecture."""
        if load_on_gpu not in (None, True, False):
            raise ValueError(f"load_on_gpu={load_on_gpu!r}: expected None (when a GPU is present), True or False")
        report = self.core.verify()
        reasons = dict(zip(report.damaged, report.reasons))
        result = VerifyResult(self.path, report.integrity_ok, report.integrity_message, report.kernels,
                              sorted(report.damaged), reasons, report.unreadable, self.read_only)
        if load_on_gpu is None:
            load_on_gpu = gpu_available()
        if load_on_gpu:
            self._check_loads(result)
        return result

    def repair(self) -> RepairResult:
        """Rebuilds the file from what is intact in it: every row SQLite can still read and
        that passes its check, and the tuning results, go into a fresh file built beside it;
        the damaged file is moved to ``<path>.corrupt-<time>-<pid>`` (kept for inspection)
        and the fresh one takes its place. Needs a writable directory. Processes that have
        the old file open keep using it until they restart."""
        path, read_only = self.path, self.read_only
        self._db = None   # closed before its file moves
        result = repair_file(path)
        self._db = _core.KernelDb(path, read_only)
        return result

    def _check_loads(self, result: VerifyResult) -> None:
        runtime = Runtime(database=None)
        try:
            info = runtime.core.device_info(0)
        except Exception as e:
            raise RuntimeError(f"load_on_gpu=True: expected a usable CUDA GPU 0, but {e}") from None
        device_target = _core.target_for_device(info.major, info.minor)
        result.load_checked = True
        result.device = f"{info.name} ({device_target.text()})"
        damaged = set(result.damaged)
        for row in self.entries():
            if row.key_hash in damaged:
                continue
            try:
                target = _core.Target(row.target)
            except ValueError:
                result.other_targets += 1
                continue
            if not target.runs_on(info.major, info.minor):
                result.other_targets += 1
                continue
            loaded = self.core.load(row.key_hash)
            if loaded is None:   # damaged since the check above
                result.damaged.append(row.key_hash)
                continue
            try:
                runtime.core.check_loads(loaded[1], 0)
                result.loaded += 1
            except Exception as e:
                result.load_failures.append(LoadFailure(row.key_hash, row.name, str(e)))

    def prune(self, max_age_days: Optional[float] = None, max_mb: Optional[float] = None) -> int:
        """Removes kernels not used for `max_age_days`, then least-recently-used kernels
        until at most `max_mb` megabytes remain; returns how many were removed."""
        core = self._writable("prune")
        if max_age_days is None and max_mb is None:
            raise ValueError("prune: expected max_age_days (remove kernels unused for that many days) and/or max_mb "
                             "(keep at most that many megabytes, least recently used removed first)")
        for name, value in (("max_age_days", max_age_days), ("max_mb", max_mb)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or value != value or value < 0):
                raise ValueError(f"{name}={value!r}: expected a number >= 0")
        removed = 0
        if max_age_days is not None:
            removed += core.prune_older_than(float(max_age_days) * 86400.0)
        if max_mb is not None:
            removed += core.evict_to(int(float(max_mb) * (1 << 20)))
        return removed


def _aside_name(path: str) -> str:
    return f"{path}.corrupt-{int(time.time())}-{os.getpid()}"


def repair_file(path: Union[str, os.PathLike]) -> RepairResult:
    """`KernelDb.repair` for a file that may not even open: a file SQLite cannot read at
    all is moved aside and replaced by an empty database."""
    path = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(path)
    if not os.path.isfile(path):
        raise ValueError(f"path={path!r}: no such file; expected an existing kernel database")
    if not os.access(directory, os.W_OK):
        raise ValueError(f"path={path!r}: repairing builds a fresh file beside it, but directory {directory} is not "
                         f"writable; expected a writable location (copy the file there first)")
    try:
        source: Optional[_core.KernelDb] = _core.KernelDb(path, True)
    except (_core.KernelDbError, RuntimeError) as e:
        if "newer than this moejit" in str(e):
            raise ValueError(f"path={path!r}: {e}") from None
        source = None   # nothing readable: the fresh file starts empty
    tmp = f"{path}.repair-{os.getpid()}"
    for p in (tmp, tmp + "-wal", tmp + "-shm"):
        if os.path.exists(p):
            os.unlink(p)
    try:
        destination = _core.KernelDb(tmp, False)
        if source is not None:
            salvage = source.salvage_into(destination)
            counts = (salvage.copied, salvage.dropped, salvage.unreadable, salvage.tunings)
        else:
            counts = (0, 0, 1, 0)
        del destination, source   # closed before files move
        _make_standalone(tmp)
        aside = _aside_name(path)
        os.replace(path, aside)
        for suffix in ("-wal",):   # committed writes not yet in the file stay with it
            if os.path.exists(path + suffix):
                os.replace(path + suffix, aside + suffix)
        if os.path.exists(path + "-shm"):
            os.unlink(path + "-shm")
        os.replace(tmp, path)
    except BaseException:
        for p in (tmp, tmp + "-wal", tmp + "-shm"):
            if os.path.exists(p):
                os.unlink(p)
        raise
    return RepairResult(path, aside, *counts)


def _make_standalone(path: str) -> None:
    """Checkpoints the WAL into the main file and switches the journal off WAL, so the
    file is complete on its own and opens read-only where its directory is not writable
    (a WAL-mode file needs its -shm beside it)."""
    import sqlite3

    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=DELETE").fetchall()
    finally:
        con.close()


def format_time(seconds: float) -> str:
    """A timestamp for tables: local time to the minute."""
    if not seconds:
        return "-"
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M")
