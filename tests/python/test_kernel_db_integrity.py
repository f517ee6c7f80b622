"""The kernel database's integrity: every stored field a launch or a lookup reads is
checked, a cache with damaged pages heals, read-only caches serve, a full disk says what
frees space, schema-2 files keep their kernels.

Real NVRTC compiles (CPU only); every test works on its own cache directory."""

import glob
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

import moejit
from moejit import _core
from moejit.tools.cli import main
from moejit.jit.kernel_db import KernelDb
from moejit.jit.runtime import Runtime, database_config

# The same autouse fixtures: _isolated_cache (nothing touches ~/.cache) and _seed_cleanup
# (the seed database _filled_cache copies from goes at the module's end).
from test_kernel_db import (WORKER, _filled_cache, _full_disk, _isolated_cache, _seed_cleanup,  # noqa: F401
                            as_schema, cache_path, cache_runtime, moejit_warnings, reference_cubin, rows, spec, sql)


def layers_only():
    """MOEJIT_KERNEL_DB's read-only layers without a user cache."""
    config = database_config()
    config.cache_path = ""
    return config


def damage_page(path, fraction=0.4, seed=1):
    """Overwrites the 4 KiB page at `fraction` of the file with random bytes: one bad
    sector in the middle of a populated cache."""
    import random

    size = os.path.getsize(path)
    offset = int(size * fraction) // 4096 * 4096
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(random.Random(seed).randbytes(4096))


def compile_all(cache, specs):
    """One 'run': a fresh Runtime on the cache asks for every spec; (runtime, warnings)."""
    with moejit_warnings() as warned:
        r = cache_runtime(cache)
        for s in specs:
            assert r.compile(s).cubin == reference_cubin(s)
    return r, warned


# ---- every field of a row is checked -------------------------------------------------------

TAMPERING = {
    "geometry": "threads = 32, dynamic_shared_bytes = 1",
    "threads": "threads = 32",
    "dynamic_shared_bytes": "dynamic_shared_bytes = dynamic_shared_bytes + 16",
    "tile": "tile = '64x64x32.s4.w2x2'",
    "registers": "registers = registers + 7",
    "spills": "spill_store_bytes = 64",
    "lowered_name": "lowered_name = '_Z5otherv'",
    "cubin": "cubin = cubin || x'00'",
    "ptx": "ptx = '.version 1.0'",
    "record_hash": "record_hash = '0123456789abcdef'",
}


@pytest.mark.parametrize("update", TAMPERING.values(), ids=TAMPERING.keys())
def test_tampered_row_is_dropped_and_recompiled_never_launched(tmp_path, update, capsys):
    cache = tmp_path / "cache"
    path = _filled_cache(cache, n=2)
    s = spec(0)
    sql(path, f"UPDATE kernels SET {update} WHERE spec_text = ?", s.text())
    assert main(["db", "verify", "--db", path, "--no-load"]) == 1
    out = capsys.readouterr().out
    assert "1 damaged" in out and "FAILED" in out and "--repair" in out
    with moejit_warnings() as warned:
        r = cache_runtime(cache)
        k = r.compile(s)
        r.compile(spec(1))
    # Compiled again, with the geometry the spec gives: the tampered row was never used.
    assert (r.core.stats.compiled, r.core.stats.database_hits) == (1, 1)
    assert k.cubin == reference_cubin(s)
    assert (k.threads, k.dynamic_shared_bytes) == (s.threads, s.shared_bytes)
    assert len(warned) == 1 and "failed its integrity check" in warned[0] and s.text() in warned[0], warned
    # The recompiled kernel took the row's place: the next process hits, and verify passes.
    later = cache_runtime(cache)
    assert later.compile(s).cubin == reference_cubin(s) and later.core.stats.database_hits == 1
    assert KernelDb.open(path, read_only=True).verify(load_on_gpu=False).ok


def test_tampered_spec_text_is_flagged(tmp_path, capsys):
    cache = tmp_path / "cache"
    path = _filled_cache(cache, n=2)
    s = spec(0)
    sql(path, "UPDATE kernels SET spec_text = ? WHERE spec_text = ?", spec(5).text(), s.text())
    with KernelDb.open(path, read_only=True) as db:
        result = db.verify(load_on_gpu=False)
    assert len(result.damaged) == 1 and not result.ok
    assert "key hash" in next(iter(result.reasons.values()))
    # Neither the spec it names nor the one it was stored under gets the row.
    r = cache_runtime(cache)
    assert r.compile(spec(5)).cubin == reference_cubin(spec(5))
    assert r.compile(s).cubin == reference_cubin(s)
    assert r.core.stats.compiled == 2


def test_tampered_row_in_a_read_only_layer_is_not_used(tmp_path, monkeypatch):
    layer = _filled_cache(tmp_path / "team", n=2)
    sql(layer, "UPDATE kernels SET threads = 32, dynamic_shared_bytes = 1 WHERE spec_text = ?", spec(0).text())
    monkeypatch.setenv("MOEJIT_KERNEL_DB", layer)
    with moejit_warnings() as warned:
        r = Runtime(database=layers_only())
        k = r.compile(spec(0))
        r.compile(spec(1))
    assert (k.threads, k.dynamic_shared_bytes) == (spec(0).threads, spec(0).shared_bytes)
    assert (r.core.stats.compiled, r.core.stats.database_hits) == (1, 1)
    assert len(warned) == 1 and "not used" in warned[0] and "launch geometry" in warned[0]
    assert len(rows(layer)) == 2   # a read-only layer is never written


# ---- damaged pages --------------------------------------------------------------------------


def test_one_damaged_page_is_repaired_once_and_intact_kernels_kept(tmp_path, capsys):
    """The issue's reproduction: a bad 4 KiB page at 40% of a populated cache, three runs,
    then `db verify`."""
    cache = tmp_path / "cache"
    specs = [spec(i) for i in range(19)]
    path = _filled_cache(cache, n=len(specs))
    damage_page(path)
    first, warned = compile_all(cache, specs)
    assert len(warned) == 1, warned
    assert "is damaged" in warned[0] and "moved it to" in warned[0] and "intact kernel" in warned[0]
    [aside] = [p for p in glob.glob(path + ".corrupt-*") if not p.endswith(("-wal", "-shm"))]
    assert aside in warned[0]
    # One page holds parts of one or two rows: every other kernel survived the move.
    assert first.core.stats.compiled <= 2 and first.core.stats.database_hits >= len(specs) - 2
    for _ in range(2):
        again, warned = compile_all(cache, specs)
        assert warned == []
        assert (again.core.stats.compiled, again.core.stats.database_hits) == (0, len(specs))
    assert main(["db", "verify", "--db", path, "--no-load"]) == 0
    assert main(["db", "list", "--db", path]) == 0
    assert f"{len(specs)} kernels" in capsys.readouterr().out


def test_db_commands_on_a_damaged_file_say_what_to_run_and_repair_rebuilds(tmp_path, capsys):
    path = _filled_cache(tmp_path / "cache", n=19)
    damage_page(path)
    assert main(["db", "verify", "--db", path, "--no-load"]) == 1
    out = capsys.readouterr().out
    assert "integrity  FAILED" in out and f"db verify --db {path} --repair" in out
    with KernelDb.open(path, read_only=True) as db:
        assert not db.verify(load_on_gpu=False).ok
    assert main(["db", "verify", "--db", path, "--repair"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"repaired {path}") and ".corrupt-" in out
    with KernelDb.open(path, read_only=True) as db:
        result = db.verify(load_on_gpu=False)
        assert result.ok and result.kernels >= 17
        assert len(db.tunings()) == 0
    r = cache_runtime(tmp_path / "cache")
    for i in range(19):
        assert r.compile(spec(i)).cubin == reference_cubin(spec(i))
    assert r.core.stats.database_hits >= 17


def test_repair_of_a_file_sqlite_cannot_read_starts_it_empty(tmp_path, capsys):
    path = str(tmp_path / "kernels.sqlite")
    with open(path, "wb") as f:
        f.write(os.urandom(16384))
    assert main(["db", "verify", "--db", path, "--no-load"]) == 1
    assert "--repair" in capsys.readouterr().out
    assert main(["db", "verify", "--db", path, "--repair", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["copied"] == 0 and os.path.exists(report["moved_to"])
    assert KernelDb.open(path, read_only=True).verify(load_on_gpu=False).ok


def test_damaged_read_only_layer_warns_once_with_the_repair_command(tmp_path, monkeypatch):
    layer = _filled_cache(tmp_path / "team", n=19)
    damage_page(layer)
    monkeypatch.setenv("MOEJIT_KERNEL_DB", layer)
    with moejit_warnings() as warned:
        r = Runtime(database=layers_only())
        for i in range(19):
            assert r.compile(spec(i)).cubin == reference_cubin(spec(i))
    assert r.core.stats.database_hits >= 15
    assert len(warned) <= 2
    assert all("--repair" in w or "integrity check" in w for w in warned), warned


# ---- read-only caches ---------------------------------------------------------------------


def _unprivileged():
    """The command prefix that makes file modes bind: none for an ordinary user; for root
    (whom modes do not stop) a user namespace, where root's files are checked by their
    owner bits and root has no capabilities over them."""
    if os.geteuid() != 0:
        return []
    if shutil.which("unshare") and subprocess.run(["unshare", "--user", "true"]).returncode == 0:
        return ["unshare", "--user"]
    pytest.skip("running as root without user namespaces: file modes do not stop root")


def _run_reader(args, env):
    p = subprocess.run([*_unprivileged(), sys.executable, *args], capture_output=True, text=True, timeout=300,
                       env=env, cwd="/")
    return p.returncode, p.stdout, p.stderr


def test_read_only_cache_serves_its_kernels_and_the_cli_reads_it(tmp_path):
    cache = str(tmp_path / "cache")
    path = _filled_cache(cache, n=3)
    # As a pre-warmed cache ships: a WAL-mode file alone, no -wal or -shm beside it (so a
    # reader cannot set up WAL's shared memory in the read-only directory).
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    assert os.listdir(cache) == ["kernels.sqlite"]
    home = str(tmp_path / "home")
    os.makedirs(home)
    out = os.path.join(home, "report.json")
    os.chmod(path, 0o444)
    os.chmod(cache, 0o555)
    try:
        env = dict(os.environ, MOEJIT_CACHE_DIR=cache, HOME=home)
        env.pop("MOEJIT_KERNEL_DB", None)
        args = dict(cache_dir=cache, out=out, specs=[dict(op="sdd", n=128 * (i + 2), k=256) for i in (0, 1, 2, 7)])
        rc, stdout, stderr = _run_reader([WORKER, "fetch-read-only", json.dumps(args)], env)
        assert rc == 0, stderr
        with open(out) as f:
            report = json.load(f)
        assert report["errors"] == []
        assert report["digests"] == [hashlib.sha256(reference_cubin(spec(i))).hexdigest() for i in (0, 1, 2, 7)]
        assert (report["database_hits"], report["compiled"]) == (3, 1)
        # One warning, at the kernel that could not be stored, naming why.
        assert len(report["warnings"]) == 1, report["warnings"]
        assert "read-only" in report["warnings"][0] and "kept in memory only" in report["warnings"][0]
        assert report["warned_before_compiling"] is False
        # The read-only commands work on it, by default and with --db.
        for argv in (["list"], ["list", "--db", path], ["verify", "--no-load"], ["verify", "--db", path, "--no-load"]):
            rc, stdout, stderr = _run_reader(["-m", "moejit", "db", *argv], env)
            assert rc == 0, (argv, stdout, stderr)
        rc, stdout, stderr = _run_reader(["-m", "moejit", "db", "list", "--json"], env)
        key = json.loads(stdout)["kernels"][0]["key_hash"]
        rc, stdout, stderr = _run_reader(["-m", "moejit", "db", "show", key[:10]], env)
        assert rc == 0 and key in stdout, stderr
        # Writing commands say why they cannot.
        rc, stdout, stderr = _run_reader(["-m", "moejit", "db", "prune", "--max-mb", "0"], env)
        assert rc == 1 and "not writable" in stderr, stderr
    finally:
        os.chmod(cache, 0o755)
    assert len(rows(path)) == 3


def test_read_only_opening_of_a_wal_file_needs_no_shm(tmp_path):
    path = _filled_cache(tmp_path / "cache", n=2)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    with KernelDb.open(path, read_only=True) as db:
        assert len(db.entries()) == 2 and db.verify(load_on_gpu=False).ok


# ---- full disk ----------------------------------------------------------------------------


def test_full_disk_warning_says_what_frees_space_in_every_process(tmp_path):
    cache = tmp_path / "cache"
    for attempt in range(2):   # the second process warns again, and again says why
        report = _full_disk(tmp_path, cache, [spec(attempt), spec(attempt + 5)])
        assert report["errors"] == []
        assert len(report["warnings"]) == 1, report["warnings"]
        warning = report["warnings"][0]
        assert "file size limit" in warning
        assert "MOEJIT_CACHE_MAX_MB" in warning and "moejit db prune" in warning
    assert KernelDb.open(cache_path(cache), read_only=True).verify(load_on_gpu=False).ok


def test_cache_that_cannot_even_be_set_up_for_writing_still_serves(tmp_path):
    """A file size limit below what WAL's shared memory needs: the cache cannot be opened
    for writing at all, yet its kernels serve, and the kernel that cannot be stored says
    what frees space."""
    cache = tmp_path / "cache"
    _filled_cache(cache, n=3)
    out = str(tmp_path / "full-disk.json")
    args = dict(cache_dir=str(cache), limit_bytes=8 * 1024, out=out,
                specs=[dict(op="sdd", n=128 * (i + 2), k=256) for i in (0, 1, 2, 9)])
    p = subprocess.run([sys.executable, WORKER, "full-disk", json.dumps(args)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    with open(out) as f:
        report = json.load(f)
    assert report["errors"] == []
    assert (report["database_hits"], report["compiled"]) == (3, 1)
    assert len(report["warnings"]) == 1, report["warnings"]
    assert "file size limit" in report["warnings"][0] and "MOEJIT_CACHE_MAX_MB" in report["warnings"][0]


# ---- schema 2 files -----------------------------------------------------------------------


def _as_schema_2(path):
    as_schema(path, 2)


def test_schema_2_cache_keeps_its_valid_kernels_and_drops_tampered_ones(tmp_path):
    cache = tmp_path / "cache"
    path = _filled_cache(cache, n=3)
    _as_schema_2(path)
    sql(path, "UPDATE kernels SET threads = 32 WHERE spec_text = ?", spec(1).text())
    r, warned = compile_all(cache, [spec(0), spec(1), spec(2)])
    assert warned == []
    assert (r.core.stats.database_hits, r.core.stats.compiled) == (2, 1)
    with KernelDb.open(path, read_only=True) as db:
        assert db.schema_version == 4 and db.verify(load_on_gpu=False).ok and len(db.entries()) == 3


def test_schema_2_read_only_layer_is_served(tmp_path, monkeypatch):
    layer = _filled_cache(tmp_path / "team", n=2)
    _as_schema_2(layer)
    monkeypatch.setenv("MOEJIT_KERNEL_DB", layer)
    r = Runtime(database=layers_only())
    r.compile(spec(0))
    r.compile(spec(1))
    assert r.core.stats.database_hits == 2
    assert _core.KernelDb(layer, True).schema_version == 2
