"""The kernel database under real concurrent processes: 16 processes starting together
on one cache, and a writer SIGKILLed in the middle of its transactions."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

import moejit
from moejit import _core
from moejit.jit.runtime import Runtime, database_config

from test_kernel_db import set_columns

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel_db_worker.py")
PROCESSES = 16
KERNELS = 20


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MOEJIT_CACHE_DIR", str(tmp_path / "default-cache"))
    monkeypatch.delenv("MOEJIT_KERNEL_DB", raising=False)
    monkeypatch.delenv("MOEJIT_CACHE_MAX_MB", raising=False)


def _spawn(mode, args, **kwargs):
    return subprocess.Popen([sys.executable, WORKER, mode, json.dumps(args)], **kwargs)


def _integrity(path):
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in con.execute("PRAGMA integrity_check")]
    finally:
        con.close()


ITEMS = [dict(op="sdd", n=128 * (i + 2), k=256) for i in range(KERNELS // 2)] + \
        [dict(op="dsd", n=256, k=128 * (i + 2)) for i in range(KERNELS // 2)]   # 20 small, distinct kernels


@pytest.fixture(scope="module")
def sixteen(tmp_path_factory):
    """16 processes, started together, each asking a fresh Runtime on one shared cache
    directory (created by them) for the same 20 kernels; their reports."""
    tmp = tmp_path_factory.mktemp("sixteen")
    cache, barrier = tmp / "cache", tmp / "barrier"
    barrier.mkdir()
    outs = [str(tmp / f"report-{i}.json") for i in range(PROCESSES)]
    env = {k: v for k, v in os.environ.items() if k not in ("MOEJIT_KERNEL_DB", "MOEJIT_CACHE_MAX_MB")}
    procs = [_spawn("fetch", dict(specs=ITEMS, cache_dir=str(cache), barrier=str(barrier), index=i, out=outs[i]),
                    env=env)
             for i in range(PROCESSES)]
    try:
        deadline = time.monotonic() + 60
        while len([p for p in os.listdir(barrier) if p.startswith("ready-")]) < PROCESSES:
            assert all(p.poll() is None for p in procs), "a worker died before the start"
            assert time.monotonic() < deadline, "workers did not get ready"
            time.sleep(0.01)
        (barrier / "go").touch()
        for p in procs:
            p.wait(timeout=150)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    reports = [json.load(open(o)) for o in outs]
    print(f"\n{PROCESSES} processes x {KERNELS} kernels: {sum(r.get('compiled', 0) for r in reports)} compiles, "
          f"{sum(r.get('database_hits', 0) for r in reports)} database hits")
    return cache, reports


def test_sixteen_processes_share_one_cache(sixteen):
    cache, reports = sixteen
    for i, r in enumerate(reports):
        assert r["errors"] == [], f"process {i}: {r['errors']}"
        assert r["warnings"] == [], f"process {i}: {r['warnings']}"   # "database is locked" among others
        assert r["cache_writable"]
        assert r["compiled"] + r["database_hits"] == KERNELS
    starts = [r["started_at"] for r in reports]
    assert max(starts) - min(starts) < 5, "the processes did not start together"
    # Every process got the same cubin for each kernel (and no half-written one).
    for i, r in enumerate(reports[1:], 1):
        assert r["digests"] == reports[0]["digests"], f"process {i} got different cubins"
    db = _core.KernelDb(str(cache / "kernels.sqlite"), True)
    report = db.verify()
    assert report.integrity_ok, report.integrity_message
    assert report.damaged == [] and report.kernels == KERNELS
    entries = db.entries()
    assert len(entries) == KERNELS
    assert sorted(e.key.spec_text for e in entries) == sorted(moejit.kernel_spec(**i).text() for i in ITEMS)
    assert _integrity(str(cache / "kernels.sqlite")) == ["ok"]
    # A process starting afterwards compiles nothing.
    late = Runtime(database=database_config(str(cache)))
    for item in ITEMS:
        late.compile(moejit.kernel_spec(**item))
    assert late.core.stats.compiled == 0 and late.core.stats.database_hits == KERNELS


def test_sixteen_processes_compile_each_kernel_at_most_a_few_times(sixteen):
    _, reports = sixteen
    assert sum(r["compiled"] for r in reports) <= 3 * KERNELS


def _big_kernel_db(tmp_path):
    """A database holding one kernel with a multi-megabyte PTX (its record hash written
    for it, so the entry stays valid): inserts of it are long transactions."""
    path = str(tmp_path / "big.sqlite")
    runtime = Runtime(database=None)
    spec = moejit.kernel_spec("sdd", n=256, k=256)
    key = runtime.core.kernel_key(spec)
    db = _core.KernelDb(path, False)
    db.insert(key, runtime.compile(spec))
    del db
    ptx = db_rows_ptx(path) + "// padding\n" * 400_000
    set_columns(path, key.hash_hex(), ptx=ptx)
    return path, key.hash_hex()


def db_rows_ptx(path):
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT ptx FROM kernels").fetchone()[0]
    finally:
        con.close()


def test_sigkill_while_writing_leaves_a_valid_database(tmp_path):
    source, key_hash = _big_kernel_db(tmp_path)
    target = str(tmp_path / "cache" / "kernels.sqlite")
    os.makedirs(os.path.dirname(target))
    previous = 0
    for round, delay in enumerate((0.05, 0.13, 0.31)):
        start = round * 100_000   # new keys each round
        proc = _spawn("insert-loop", dict(source=source, key_hash=key_hash, db=target, start=start),
                      stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "inserting"
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert _integrity(target) == ["ok"]
        db = _core.KernelDb(target, False)   # a writer opening it recovers the WAL
        report = db.verify()
        assert report.integrity_ok and report.damaged == [], (report.integrity_message, report.damaged)
        entries = db.entries()
        assert len(entries) > previous
        for e in entries:
            loaded = db.load(e.key_hash)
            assert loaded is not None, e.key_hash
            assert loaded[0] == e.key
        previous = len(entries)
        del db


def _hold_write_lock(path, seconds):
    """Another process in the middle of a write transaction on `path` (rollback journal, as
    a new file or a shipped standalone file is): it holds SQLite's RESERVED lock."""
    code = (f"import sqlite3, time\n"
            f"c = sqlite3.connect({path!r}, isolation_level=None)\n"
            f"c.execute('BEGIN IMMEDIATE')\n"
            f"print('held', flush=True)\n"
            f"time.sleep({seconds})\n"
            f"c.execute('COMMIT')\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("existing", [False, True], ids=["new-file", "shipped-file-as-cache"])
def test_opening_while_another_process_writes_waits(tmp_path, existing):
    """Switching a file to WAL needs an exclusive lock; while another process holds the
    write lock SQLite answers "database is locked" at once, without the busy timeout.
    Opening must wait for it like any other write, not give up on the cache."""
    import warnings

    from moejit.jit.kernel_db import KernelDb
    from moejit.jit.runtime import MoejitWarning

    cache = tmp_path / "cache"
    cache.mkdir()
    path = str(cache / "kernels.sqlite")
    s = moejit.kernel_spec("sdd", n=256, k=256)
    if existing:
        source = tmp_path / "source"
        Runtime(database=database_config(str(source))).compile(moejit.kernel_spec("sdd", n=384, k=256))
        KernelDb.open(str(source / "kernels.sqlite"), read_only=True).export(path)   # rollback journal
    holder = _hold_write_lock(path, 0.5)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = Runtime(database=database_config(str(cache)))
            r.compile(s)
    finally:
        holder.wait(timeout=30)
    assert [str(w.message) for w in caught if issubclass(w.category, MoejitWarning)] == []
    assert r.core.cache_writable
    assert len(_core.KernelDb(path, True).entries()) == (2 if existing else 1)
