"""The kernel database: round trip, layers and lookup order, LRU eviction, complete keys,
faults, migration, moejit.jit.kernel_db.KernelDb and the `moejit db` command line.

Real NVRTC compiles (CPU only); every test works on its own cache directory."""

import contextlib
import glob
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import types
import warnings

import pytest

import moejit
import moejit.jit.paths
import moejit.jit.runtime
from moejit import _core
from moejit.jit import kernel_db as kdb
from moejit.tools.cli import main
from moejit.jit.kernel_db import KernelDb
from moejit.jit.layer_kernels import layer_kernels
from moejit.jit.runtime import MoejitWarning, Runtime, database_config
from moejit.zoo import model

from conftest import CUDA, requires_gpu

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel_db_worker.py")
MODEL = "megablocks-dmoe-xs"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Nothing touches ~/.cache: the default user cache is a temporary directory."""
    monkeypatch.setenv("MOEJIT_CACHE_DIR", str(tmp_path / "default-cache"))
    monkeypatch.delenv("MOEJIT_KERNEL_DB", raising=False)
    monkeypatch.delenv("MOEJIT_CACHE_MAX_MB", raising=False)
    monkeypatch.delenv("MOEJIT_TEMPLATES_DIR", raising=False)


# ---- helpers -----------------------------------------------------------------------------


def spec(i=0, **kwargs):
    """Small, distinct kernels: i picks the n extent."""
    return moejit.kernel_spec("sdd", n=128 * (i + 2), k=256, **kwargs)


def cache_runtime(cache_dir, **kwargs):
    return Runtime(database=database_config(str(cache_dir)), **kwargs)


def cache_path(cache_dir):
    return os.path.join(str(cache_dir), "kernels.sqlite")


def rows(path):
    """The kernels table as (spec_text, nvrtc_version, moejit_version, template_hash, options, log) rows."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute("SELECT spec_text, nvrtc_version, moejit_version, template_hash, compile_options, log "
                           "FROM kernels ORDER BY spec_text, created_at").fetchall()
    finally:
        con.close()


def sql(path, statement, *params):
    con = sqlite3.connect(path)
    try:
        con.execute(statement, params)
        con.commit()
    finally:
        con.close()


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@contextlib.contextmanager
def moejit_warnings():
    """Collects the MoejitWarnings raised inside (as messages)."""
    messages = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield messages
    messages.extend(str(w.message) for w in caught if issubclass(w.category, MoejitWarning))
    others = [w for w in caught if not issubclass(w.category, MoejitWarning)]
    assert not others, [str(w.message) for w in others]


_reference = {}


def reference_cubin(s):
    """The cubin NVRTC produces for a spec, compiled with no database at all."""
    text = s.text()
    if text not in _reference:
        _reference[text] = Runtime(database=None).compile(s).cubin
    return _reference[text]


def fnv1a64(data, h=0xCBF29CE484222325):
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def key_hash(spec_text, target, template_hash, nvrtc_version, compile_options, moejit_version):
    """KernelKey::hash_hex, recomputed here to forge entries other versions would write: the
    binary parts only (the NVRTC version is provenance)."""
    h = fnv1a64(b"moejit-kernel-key-v2")
    for part in (spec_text, target, template_hash, compile_options, moejit_version):
        h = fnv1a64(b"\x1f", fnv1a64(part.encode(), h))
    return f"{h:016x}"


def key_hash_v1(spec_text, target, template_hash, nvrtc_version, compile_options, moejit_version):
    """The key hash of schemas 1 to 3, over every part."""
    h = fnv1a64(b"moejit-kernel-key-v1")
    for part in (spec_text, target, template_hash, nvrtc_version, compile_options, moejit_version):
        h = fnv1a64(b"\x1f", fnv1a64(part.encode(), h))
    return f"{h:016x}"


def as_schema(path, version):
    """Turns a current database into one of an older schema (1 to 3), as that moejit wrote
    it: without the columns it lacked, keyed by every key part."""
    con = sqlite3.connect(path)
    con.row_factory = sqlite3.Row
    for row in con.execute("SELECT * FROM kernels").fetchall():
        old = key_hash_v1(row["spec_text"], row["target"], row["template_hash"], row["nvrtc_version"],
                          row["compile_options"], row["moejit_version"])
        con.execute("UPDATE kernels SET key_hash = ? WHERE key_hash = ?", (old, row["key_hash"]))
    con.execute("ALTER TABLE kernels DROP COLUMN origin")
    if version < 3:
        con.execute("ALTER TABLE kernels DROP COLUMN record_hash")
    if version < 2:
        con.execute("DROP TABLE tunings")
    con.execute(f"PRAGMA user_version = {version}")
    con.commit()
    con.close()


RECORD_FIELDS = ("spec_text", "target", "template_hash", "nvrtc_version", "compile_options", "moejit_version", "tile",
                 "lowered_name", "cubin", "threads", "dynamic_shared_bytes", "registers", "static_shared_bytes",
                 "stack_bytes", "spill_store_bytes", "spill_load_bytes", "source", "ptx", "log")


def record_hash(row):
    """runtime/kernel_db_record.cpp's record hash of a kernels row (a dict of its columns),
    recomputed here to forge entries and to pin the canonical form down."""
    h = fnv1a64(b"moejit-kernel-record-v1")
    for name in RECORD_FIELDS:
        value = row[name]
        data = value if isinstance(value, bytes) else str(value).encode()
        h = fnv1a64(data, fnv1a64(f"={len(data)}:".encode(), fnv1a64(name.encode(), h)))
    return f"{h:016x}"


def set_columns(path, key_hash, **columns):
    """Changes columns of a stored kernel and writes the record hash its new contents give:
    a consistent row, as another writer could have stored it."""
    con = sqlite3.connect(path)
    con.row_factory = sqlite3.Row
    try:
        assignments = ", ".join(f"{name} = ?" for name in columns)
        con.execute(f"UPDATE kernels SET {assignments} WHERE key_hash = ?", (*columns.values(), key_hash))
        row = dict(con.execute("SELECT * FROM kernels WHERE key_hash = ?", (key_hash,)).fetchone())
        con.execute("UPDATE kernels SET record_hash = ? WHERE key_hash = ?", (record_hash(row), key_hash))
        con.commit()
    finally:
        con.close()


def run_cli(*argv):
    """`python -m moejit ...` in a child process: (exit code, stdout, stderr)."""
    p = subprocess.run([sys.executable, "-m", "moejit", *argv], capture_output=True, text=True, timeout=120,
                       cwd=os.path.dirname(WORKER))
    return p.returncode, p.stdout, p.stderr


# ---- round trip --------------------------------------------------------------------------


def test_round_trip_compile_then_load_from_the_database(tmp_path, capsys, monkeypatch):
    s = spec(0)
    first = cache_runtime(tmp_path / "c")
    compiled = first.compile(s)
    assert (first.core.stats.compiled, first.core.stats.database_hits) == (1, 0)
    assert first.core.database_paths == [cache_path(tmp_path / "c")]
    assert first.core.cache_writable

    second = cache_runtime(tmp_path / "c")
    loaded = second.compile(s)
    assert (second.core.stats.compiled, second.core.stats.database_hits) == (0, 1)
    assert loaded.cubin == compiled.cubin
    assert loaded.spec == s
    assert (loaded.source, loaded.ptx, loaded.log, loaded.lowered_name) == \
           (compiled.source, compiled.ptx, compiled.log, compiled.lowered_name)
    assert loaded.resources.registers == compiled.resources.registers
    assert list(loaded.options) == [o for o in compiled.options if not o.startswith("-I")]
    second.compile(s)
    assert second.core.stats.memory_hits == 1

    key = second.core.kernel_key(s).hash_hex()
    db = KernelDb.open(cache_path(tmp_path / "c"), read_only=True)
    [row] = db.entries()
    assert row.key_hash == key and row.spec_text == s.text() and row.target == "sm_90a"
    assert row.tile == s.tile.text() and row.name == s.short_name()
    assert row.registers == compiled.resources.registers
    assert row.size_bytes == len(compiled.cubin) + len(compiled.source) + len(compiled.ptx) + len(compiled.log)
    assert row.nvrtc_version == second.core.nvrtc_version and row.moejit_version == moejit.__version__
    assert row.template_hash == second.core.templates_hash
    assert row.created_at <= row.last_used_at <= time.time()

    # moejit db list / show, human and --json, on the default user cache (MOEJIT_CACHE_DIR).
    monkeypatch.setenv("MOEJIT_CACHE_DIR", str(tmp_path / "c"))
    assert main(["db", "list"]) == 0
    out = capsys.readouterr().out
    assert key[:12] in out and s.short_name() in out and "1 kernel," in out
    assert main(["db", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["path"] == cache_path(tmp_path / "c")
    assert [k["key_hash"] for k in listed["kernels"]] == [key]
    assert listed["kernels"][0]["spec_text"] == s.text()
    assert main(["db", "show", key[:6]]) == 0
    out = capsys.readouterr().out
    assert s.text() in out and compiled.source in out and "// ---- ptx ----" in out
    assert f"registers      {compiled.resources.registers}" in out
    assert main(["db", "show", key, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["key_hash"] == key and shown["source"] == compiled.source and shown["ptx"] == compiled.ptx
    assert shown["key"]["nvrtc_version"] == row.nvrtc_version
    assert shown["resources"]["registers"] == compiled.resources.registers
    assert shown["cubin_bytes"] == len(compiled.cubin)


def test_python_dash_m_moejit_db(tmp_path):
    cache_runtime(tmp_path / "c").compile(spec(0))
    code, out, err = run_cli("db", "list", "--json", "--db", cache_path(tmp_path / "c"))
    assert code == 0, err
    assert len(json.loads(out)["kernels"]) == 1
    code, out, err = run_cli("db", "show", "zzzz", "--db", cache_path(tmp_path / "c"))
    assert code == 1 and "Traceback" not in err
    assert "key='zzzz': no kernel" in err


# ---- layers ------------------------------------------------------------------------------


def _layer(tmp_path, name, kernels, mark=None):
    """A standalone read-only database holding `kernels`, each marked by its compile time
    (a bookkeeping column outside the record check: the log, which is inside, would make
    the rows fail it)."""
    src = tmp_path / f"build-{name}"
    r = cache_runtime(src)
    for s in kernels:
        r.compile(s)
    del r
    path = str(tmp_path / f"{name}.sqlite")
    KernelDb.open(cache_path(src)).export(path)
    if mark is not None:
        sql(path, "UPDATE kernels SET compile_ms = ?", mark)
    return path


def test_lookup_order_cache_then_kernel_db_list_then_packaged(tmp_path, monkeypatch):
    s = spec(0)
    team1 = _layer(tmp_path, "team1", [s], mark=1001.0)
    team2 = _layer(tmp_path, "team2", [s], mark=1002.0)
    packaged = _layer(tmp_path, "packaged", [s, spec(1)], mark=1003.0)
    before = {p: digest(p) for p in (team1, team2, packaged)}
    monkeypatch.setattr(moejit.jit.paths, "packaged_databases", lambda: [packaged])
    cache = tmp_path / "cache"

    monkeypatch.setenv("MOEJIT_KERNEL_DB", f"{team1}:{team2}")
    config = database_config(str(cache))
    assert list(config.read_only_paths) == [team1, team2, packaged]
    r = Runtime(database=config)
    assert r.compile(s).compile_ms == 1001.0
    assert r.compile(spec(1)).compile_ms == 1003.0   # only the packaged layer holds it
    assert (r.core.stats.database_hits, r.core.stats.compiled) == (2, 0)
    assert r.core.database_paths == [cache_path(cache), team1, team2, packaged]

    monkeypatch.setenv("MOEJIT_KERNEL_DB", f"{team2}:{team1}")
    assert cache_runtime(cache).compile(s).compile_ms == 1002.0

    monkeypatch.delenv("MOEJIT_KERNEL_DB")
    assert cache_runtime(cache).compile(s).compile_ms == 1003.0

    # Hits in read-only layers are not copied into the cache, and the layers are not written.
    assert rows(cache_path(cache)) == []
    assert {p: digest(p) for p in (team1, team2, packaged)} == before

    # The user cache comes first of all.
    config = database_config(str(cache))
    config.read_only_paths = []
    Runtime(database=config).compile(s)   # compiled into the cache
    sql(cache_path(cache), "UPDATE kernels SET compile_ms = 1004.0")
    monkeypatch.setenv("MOEJIT_KERNEL_DB", f"{team1}:{team2}")
    r = cache_runtime(cache)
    assert r.compile(s).compile_ms == 1004.0
    assert r.core.stats.database_hits == 1


def test_kernel_in_a_read_only_layer_is_served_from_it(tmp_path, monkeypatch):
    s = spec(2)
    team = _layer(tmp_path, "team", [s])
    monkeypatch.setenv("MOEJIT_KERNEL_DB", team)
    with moejit_warnings() as warned:
        r = cache_runtime(tmp_path / "cache")
        k = r.compile(s)
    assert warned == []
    assert (r.core.stats.database_hits, r.core.stats.compiled) == (1, 0)
    assert k.cubin == reference_cubin(s)
    assert rows(cache_path(tmp_path / "cache")) == []
    # A kernel no layer holds is compiled and written to the cache only.
    r.compile(spec(3))
    assert r.core.stats.compiled == 1
    assert [row[0] for row in rows(cache_path(tmp_path / "cache"))] == [spec(3).text()]
    assert [row[0] for row in rows(team)] == [s.text()]


def test_missing_kernel_db_file_warns_once_and_is_skipped(tmp_path, monkeypatch):
    s = spec(0)
    team = _layer(tmp_path, "team", [s])
    missing = str(tmp_path / "nowhere" / "team.sqlite")
    monkeypatch.setenv("MOEJIT_KERNEL_DB", f"{missing}:{team}")
    with moejit_warnings() as warned:
        r = cache_runtime(tmp_path / "cache")
        r.compile(s)
        r.compile(spec(1))
    assert len(warned) == 1
    assert missing in warned[0] and "does not exist" in warned[0]
    assert r.core.database_paths == [cache_path(tmp_path / "cache"), team]
    assert (r.core.stats.database_hits, r.core.stats.compiled) == (1, 1)
    assert not os.path.exists(missing)


def test_unusable_read_only_layer_is_skipped(tmp_path, monkeypatch):
    s = spec(0)
    newer = _layer(tmp_path, "newer", [s])
    sql(newer, "PRAGMA user_version = 99")
    garbage = str(tmp_path / "garbage.sqlite")
    with open(garbage, "wb") as f:
        f.write(b"\x00not sqlite at all" * 1000)
    monkeypatch.setenv("MOEJIT_KERNEL_DB", f"{newer}:{garbage}")
    before = digest(newer), digest(garbage)
    with moejit_warnings() as warned:
        r = cache_runtime(tmp_path / "cache")
        assert r.compile(s).cubin == reference_cubin(s)
    assert len(warned) == 2
    assert newer in warned[0] and "newer" in warned[0]
    assert garbage in warned[1]
    assert r.core.stats.compiled == 1
    assert (digest(newer), digest(garbage)) == before


def test_cache_dir_none_disables_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MOEJIT_CACHE_DIR", "none")
    assert database_config().cache_path == ""
    r = Runtime()
    r.compile(spec(0))
    assert r.core.database_paths == [] and not r.core.cache_writable
    with pytest.raises(ValueError, match="MOEJIT_CACHE_DIR=none"):
        KernelDb.open()


# ---- LRU size limit ----------------------------------------------------------------------


def _size(kernel):
    return len(kernel.cubin) + len(kernel.source) + len(kernel.ptx) + len(kernel.log)


def test_lru_eviction_removes_the_least_recently_used(tmp_path):
    a, b, c, d = spec(0), spec(1), spec(2), spec(3)
    cache = tmp_path / "cache"
    r = cache_runtime(cache)
    sizes = {s.text(): _size(r.compile(s)) for s in (a, b, c)}   # created in the order a, b, c
    time.sleep(0.01)
    assert cache_runtime(cache).compile(a) is not None            # a is now the most recently used
    sizes[d.text()] = _size(Runtime(database=None).compile(d))
    config = database_config(str(cache))
    # Room for three of the four (with slack: the NVRTC log's "Compile time = ..." varies in length).
    config.cache_max_bytes = sizes[a.text()] + sizes[c.text()] + sizes[d.text()] + 4096
    r = Runtime(database=config)
    r.compile(d)                                                   # inserting d evicts b only
    assert r.core.stats.compiled == 1
    assert sorted(row[0] for row in rows(cache_path(cache))) == sorted(s.text() for s in (a, c, d))
    assert KernelDb.open(cache_path(cache)).total_bytes() <= config.cache_max_bytes
    again = cache_runtime(cache)
    for s in (a, c, d):
        again.compile(s)
    assert again.core.stats.database_hits == 3
    again.compile(b)
    assert again.core.stats.compiled == 1


def test_evict_to_directly(tmp_path):
    specs = [spec(i) for i in range(3)]
    cache = tmp_path / "cache"
    r = cache_runtime(cache)
    for s in specs:
        r.compile(s)
    db = _core.KernelDb(cache_path(cache))
    keys = [r.core.kernel_key(s) for s in specs]
    for i in (2, 0, 1):                      # use them in this order: 2 is now the least recent
        time.sleep(0.005)
        assert db.find(keys[i]) is not None
    sizes = {e.key_hash: e.size_bytes for e in db.entries()}
    total = db.total_bytes()
    assert total == sum(sizes.values())
    assert db.evict_to(total) == 0
    assert db.evict_to(total - 1) == 1
    assert {e.key.spec_text for e in db.entries()} == {specs[0].text(), specs[1].text()}
    assert db.evict_to(sizes[keys[1].hash_hex()]) == 1
    assert [e.key.spec_text for e in db.entries()] == [specs[1].text()]
    assert db.evict_to(0) == 1 and db.entries() == []


def test_cache_max_mb_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MOEJIT_CACHE_MAX_MB", "1")
    config = database_config(str(tmp_path / "cache"))
    assert config.cache_max_bytes == 1 << 20
    # 18 kernels of about 70 KB used in the order 0..17 (over 1 MB, with room for the
    # kernels' size to change), then one more compiled.
    path = _filled_cache(tmp_path / "cache", n=18)
    assert KernelDb.open(path).total_bytes() > 1 << 20
    r = Runtime(database=config)
    r.compile(spec(18))
    assert r.core.stats.compiled == 1
    specs = [spec(i) for i in range(19)]
    stored = {row[0] for row in rows(path)}
    assert KernelDb.open(path).total_bytes() <= 1 << 20
    assert specs[-1].text() in stored and specs[0].text() not in stored
    # What was evicted is the least recently used: the kept ones are a suffix of the order of use.
    kept = [s.text() in stored for s in specs]
    assert kept == sorted(kept) and 0 < sum(kept) < len(specs)


def test_bad_cache_max_mb_warns(tmp_path, monkeypatch):
    monkeypatch.setenv("MOEJIT_CACHE_MAX_MB", "lots")
    with moejit_warnings() as warned:
        r = cache_runtime(tmp_path / "cache")
    assert len(warned) == 1 and "MOEJIT_CACHE_MAX_MB=lots" in warned[0] and "whole number" in warned[0]
    r.compile(spec(0))
    assert len(rows(cache_path(tmp_path / "cache"))) == 1


# ---- complete keys -----------------------------------------------------------------------


def test_python_key_hash_matches_the_runtime():
    key = Runtime(database=None).core.kernel_key(spec(0))
    assert key_hash(key.spec_text, key.target, key.template_hash, key.nvrtc_version, key.compile_options,
                    key.moejit_version) == key.hash_hex()


def test_python_record_hash_matches_the_stored_one(tmp_path):
    path = _filled_cache(tmp_path / "cache", n=1)
    con = sqlite3.connect(path)
    con.row_factory = sqlite3.Row
    row = dict(con.execute("SELECT * FROM kernels").fetchone())
    con.close()
    assert record_hash(row) == row["record_hash"]
    # A consistent forge passes the check; the same change without it does not.
    set_columns(path, row["key_hash"], source=row["source"] + "// edited\n")
    assert KernelDb.open(path, read_only=True).verify(load_on_gpu=False).damaged == []
    sql(path, "UPDATE kernels SET source = 'int x;'")
    assert KernelDb.open(path, read_only=True).verify(load_on_gpu=False).damaged == [row["key_hash"]]


def test_changed_template_content_recompiles(tmp_path):
    s = spec(0)
    cache = tmp_path / "cache"
    original = cache_runtime(cache)
    original.compile(s)
    # The same templates installed elsewhere: the include path is not a key part.
    copy = tmp_path / "templates"
    shutil.copytree(moejit.jit.paths.templates_dir(), copy)
    same = cache_runtime(cache, templates_dir=str(copy))
    assert same.core.templates_hash == original.core.templates_hash
    same.compile(s)
    assert (same.core.stats.database_hits, same.core.stats.compiled) == (1, 0)
    # One comment more in one header: a new key, the old entry is not used.
    header = sorted(glob.glob(str(copy / "moejit" / "*.cuh")))[0]
    with open(header, "a") as f:
        f.write("\n// a change\n")
    changed = cache_runtime(cache, templates_dir=str(copy))
    assert changed.core.templates_hash != original.core.templates_hash
    changed.compile(s)
    assert (changed.core.stats.database_hits, changed.core.stats.compiled) == (0, 1)
    stored = rows(cache_path(cache))
    assert len(stored) == 2
    assert {row[3] for row in stored} == {original.core.templates_hash, changed.core.templates_hash}


def test_changed_compile_options_recompile(tmp_path):
    s = spec(0)
    cache = tmp_path / "cache"
    cache_runtime(cache).compile(s)
    debug = cache_runtime(cache, line_info=True)
    debug.compile(s)
    assert (debug.core.stats.database_hits, debug.core.stats.compiled) == (0, 1)
    stored = rows(cache_path(cache))
    assert len(stored) == 2 and len({row[4] for row in stored}) == 2
    assert sorted("-lineinfo" in row[4].split("\n") for row in stored) == [False, True]
    # Each runtime gets its own entry from now on.
    for line_info in (False, True):
        r = cache_runtime(cache, line_info=line_info)
        r.compile(s)
        assert r.core.stats.database_hits == 1
    # Directly: the key of one option set does not find the other's entry.
    plain_key = Runtime(database=None).core.kernel_key(s)
    debug_key = Runtime(database=None, line_info=True).core.kernel_key(s)
    assert plain_key.hash_hex() != debug_key.hash_hex()
    db = _core.KernelDb(cache_path(cache), True)
    assert db.find(plain_key).options != db.find(debug_key).options


def test_targets_are_separate_entries(tmp_path):
    cache = tmp_path / "cache"
    r = cache_runtime(cache)
    hopper, ampere = spec(0, target="sm_90a"), spec(0, target="sm_80")
    assert r.compile(hopper).cubin != r.compile(ampere).cubin
    assert r.core.stats.compiled == 2
    stored = KernelDb.open(cache_path(cache)).entries()
    assert sorted(e.target for e in stored) == ["sm_80", "sm_90a"]
    again = cache_runtime(cache)
    assert again.compile(ampere).cubin == reference_cubin(ampere)
    assert again.compile(hopper).cubin == reference_cubin(hopper)
    assert again.core.stats.database_hits == 2


@pytest.mark.parametrize("column,value", [("moejit_version", "0.0.9")])
def test_entry_of_another_moejit_version_is_not_used(tmp_path, column, value):
    s = spec(0)
    cache = tmp_path / "cache"
    cache_runtime(cache).compile(s)
    path = cache_path(cache)
    # Replace the entry by the one that other version would have written: the key part, the
    # key hash and the record hash all change (the cubin stays, so using it would be a
    # wrong kernel).
    db = _core.KernelDb(path)
    [entry] = db.entries()
    parts = {name: getattr(entry.key, name) for name in ("spec_text", "target", "template_hash", "nvrtc_version",
                                                         "compile_options", "moejit_version")}
    assert parts[column] != value
    parts[column] = value
    other_key = _core.KernelKey(**parts)
    assert other_key.hash_hex() == key_hash(**parts)
    kernel = db.load(entry.key_hash)[1]
    assert db.remove(entry.key_hash) and db.insert(other_key, kernel)
    assert len(db.entries()) == 1 and db.verify().damaged == []
    del db

    r = cache_runtime(cache)
    assert r.compile(s).cubin == reference_cubin(s)
    assert (r.core.stats.database_hits, r.core.stats.compiled) == (0, 1)
    versions = sorted(getattr(e, column) for e in KernelDb.open(path).entries())
    current = getattr(r.core.kernel_key(s), column)
    assert versions == sorted([value, current])


def test_find_checks_every_key_part_not_only_the_hash(tmp_path):
    """An entry whose key hash matches but whose stored key parts differ (a collision, or
    a tampered row) is never handed out."""
    s = spec(0)
    cache = tmp_path / "cache"
    r = cache_runtime(cache)
    r.compile(s)
    key = r.core.kernel_key(s)
    db = _core.KernelDb(cache_path(cache), True)
    assert db.find(key) is not None
    del db
    sql(cache_path(cache), "UPDATE kernels SET moejit_version = '0.0.9'")
    db = _core.KernelDb(cache_path(cache), True)
    assert db.find(key) is None
    fresh = cache_runtime(cache)
    assert fresh.compile(s).cubin == reference_cubin(s)
    assert fresh.core.stats.compiled == 1


# ---- faults ------------------------------------------------------------------------------


_seed = {}


@pytest.fixture(autouse=True, scope="module")
def _seed_cleanup():
    yield
    if "dir" in _seed:
        shutil.rmtree(_seed.pop("dir"), ignore_errors=True)


def _seed_db():
    """spec(0) .. spec(18) compiled once for the module (a real Runtime writes them)."""
    if "dir" not in _seed:
        import tempfile

        directory = tempfile.mkdtemp(prefix="moejit-seed-")
        config = _core.KernelDbConfig()
        config.cache_path = cache_path(directory)
        r = Runtime(database=config)
        for i in range(19):
            r.compile(spec(i))
        del r
        _seed["dir"] = directory
    return cache_path(_seed["dir"])


def _filled_cache(cache_dir, n=6):
    """A user cache holding spec(0) .. spec(n-1), stored in that order of use."""
    path = cache_path(cache_dir)
    os.makedirs(str(cache_dir), exist_ok=True)
    seed = _core.KernelDb(_seed_db(), True)
    dest = _core.KernelDb(path)
    for i in range(n):
        key = Runtime(database=None).core.kernel_key(spec(i))
        dest.insert(key, seed.find(key))
    del dest, seed   # closed: the WAL is checkpointed into the file
    assert len(rows(path)) == n
    return path


def _truncate(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def _garbage(path):
    with open(path, "wb") as f:
        f.write(os.urandom(8192) + b"this is not a database" * 1000)


def _other_program(path):
    os.remove(path)
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE bookmarks(url TEXT, title TEXT)")
    con.execute("INSERT INTO bookmarks VALUES('https://example.com', 'example')")
    con.commit()
    con.close()


@pytest.mark.parametrize("damage", [_truncate, _garbage, _other_program],
                         ids=["truncated", "garbage", "another-program"])
def test_unusable_cache_is_moved_aside_and_restarted(tmp_path, damage):
    cache = tmp_path / "cache"
    path = _filled_cache(cache)
    damage(path)
    damaged = digest(path)
    s = spec(0)
    with moejit_warnings() as warned:
        r = cache_runtime(cache)
        k = r.compile(s)
    assert k.cubin == reference_cubin(s)
    assert r.core.stats.compiled == 1
    assert len(warned) == 1, warned
    assert path in warned[0] and "moved it to" in warned[0]
    [aside] = [p for p in glob.glob(path + ".corrupt-*") if not p.endswith(("-wal", "-shm"))]
    if damage is _other_program:          # kept, with the other program's data intact
        con = sqlite3.connect(aside)
        assert con.execute("SELECT * FROM bookmarks").fetchall() == [("https://example.com", "example")]
        con.close()
    else:
        assert digest(aside) == damaged   # kept as it was, for inspection
    assert r.core.cache_writable
    # The fresh cache works: the next process gets the kernel from it.
    again = cache_runtime(cache)
    assert again.compile(s).cubin == k.cubin
    assert again.core.stats.database_hits == 1
    assert KernelDb.open(path).verify().ok


def test_newer_schema_cache_is_left_untouched(tmp_path):
    cache = tmp_path / "cache"
    path = _filled_cache(cache, n=2)
    sql(path, "PRAGMA user_version = 99")
    before = digest(path)
    s = spec(0)
    with moejit_warnings() as warned:
        r = cache_runtime(cache)
        k = r.compile(s)
        r.compile(spec(7))
    assert k.cubin == reference_cubin(s)
    assert r.core.stats.compiled == 2 and r.core.stats.database_hits == 0
    assert len(warned) == 1
    assert "schema 99" in warned[0] and "newer" in warned[0] and "in memory only" in warned[0]
    assert not r.core.cache_writable
    del r
    assert digest(path) == before
    assert glob.glob(path + ".corrupt-*") == []
    with pytest.raises(_core.KernelDbError, match="schema 99"):
        KernelDb.open(path, read_only=True)


def test_unusable_cache_directory(tmp_path):
    parent = tmp_path / "a-file"
    parent.write_text("not a directory")
    s = spec(0)
    with moejit_warnings() as warned:
        r = Runtime(database=database_config(str(parent / "cache")))
        k = r.compile(s)
        r.compile(s)
    assert k.cubin == reference_cubin(s)
    assert len(warned) == 1 and "unusable" in warned[0] and "in memory only" in warned[0]
    assert (r.core.stats.compiled, r.core.stats.memory_hits) == (1, 1)
    assert r.core.database_paths == [] and not r.core.cache_writable
    assert parent.read_text() == "not a directory"


def _full_disk(tmp_path, cache, specs):
    out = str(tmp_path / "full-disk.json")
    args = dict(cache_dir=str(cache), limit_bytes=64 * 1024, out=out,
                specs=[dict(op="sdd", n=s.n, k=s.k) for s in specs])
    p = subprocess.run([sys.executable, WORKER, "full-disk", json.dumps(args)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    with open(out) as f:
        return json.load(f)


def test_full_disk_keeps_kernels_in_memory(tmp_path):
    cache = tmp_path / "cache"
    specs = [spec(0), spec(1)]
    report = _full_disk(tmp_path, cache, specs)
    assert report["errors"] == []
    assert report["digests"] == [hashlib.sha256(reference_cubin(s)).hexdigest() for s in specs]
    assert (report["compiled"], report["memory_hits"]) == (2, 2)
    assert len(report["warnings"]) == 1, report["warnings"]
    assert report["warnings"][0].startswith("MoejitWarning: writing kernel cache")
    assert "in memory only" in report["warnings"][0]
    assert not report["cache_writable"]
    # The file the failed writes left behind is valid, and usable once there is room.
    path = cache_path(cache)
    assert KernelDb.open(path).verify().ok
    r = cache_runtime(cache)
    r.compile(specs[0])
    assert len(rows(path)) == 1


def test_full_disk_still_serves_stored_kernels(tmp_path):
    cache = tmp_path / "cache"
    path = _filled_cache(cache, n=3)
    specs = [spec(0), spec(9), spec(2)]        # stored, new (the write fails), stored
    report = _full_disk(tmp_path, cache, specs)
    assert report["errors"] == []
    assert report["digests"] == [hashlib.sha256(reference_cubin(s)).hexdigest() for s in specs]
    assert (report["database_hits"], report["compiled"]) == (2, 1)
    assert len(report["warnings"]) == 1 and "in memory only" in report["warnings"][0]
    assert KernelDb.open(path).verify().ok
    assert len(rows(path)) == 3


def test_full_disk_does_not_discard_stored_kernels(tmp_path):
    cache = tmp_path / "cache"
    _filled_cache(cache, n=7)
    # Room for the -shm file and a few WAL frames: the last-use updates soon fail.
    out = str(tmp_path / "full-disk.json")
    args = dict(cache_dir=str(cache), limit_bytes=40000, out=out, specs=[dict(op="sdd", n=128 * (i + 2), k=256)
                                                                        for i in range(7)])
    p = subprocess.run([sys.executable, WORKER, "full-disk", json.dumps(args)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    with open(out) as f:
        report = json.load(f)
    assert report["errors"] == []
    assert report["digests"] == [hashlib.sha256(reference_cubin(spec(i))).hexdigest() for i in range(7)]
    assert len(report["warnings"]) <= 1, report["warnings"]
    assert (report["database_hits"], report["compiled"]) == (7, 0)


def _flip_cubin_byte(path, s):
    con = sqlite3.connect(path)
    cubin = con.execute("SELECT cubin FROM kernels WHERE spec_text = ?", (s.text(),)).fetchone()[0]
    bad = bytearray(cubin)
    bad[len(bad) // 2] ^= 0xFF
    con.execute("UPDATE kernels SET cubin = ? WHERE spec_text = ?", (bytes(bad), s.text()))
    con.commit()
    con.close()


def test_damaged_entry_is_replaced_by_the_recompiled_kernel(tmp_path):
    cache = tmp_path / "cache"
    path = _filled_cache(cache, n=1)
    _flip_cubin_byte(path, spec(0))
    cache_runtime(cache).compile(spec(0))
    later = cache_runtime(cache)
    assert later.compile(spec(0)).cubin == reference_cubin(spec(0))
    assert later.core.stats.database_hits == 1
    assert KernelDb.open(path).verify(load_on_gpu=False).ok


def test_damaged_entry_is_never_handed_out(tmp_path, capsys):
    cache = tmp_path / "cache"
    path = _filled_cache(cache, n=2)
    s = spec(0)
    # Flip a byte inside the stored cubin: SQLite's structure is intact, the content is not.
    _flip_cubin_byte(path, s)
    key = cache_runtime(cache).core.kernel_key(s).hash_hex()
    with KernelDb.open(path, read_only=True) as db:
        result = db.verify(load_on_gpu=False)
        assert result.integrity_ok and result.damaged == [key] and not result.ok
        with pytest.raises(ValueError, match="damaged"):
            db.show(key)
    assert main(["db", "verify", "--db", path, "--no-load"]) == 1
    out = capsys.readouterr().out
    assert f"damaged  {key}" in out and "FAILED" in out
    # A lookup never returns the damaged cubin: it compiles the kernel again.
    r = cache_runtime(cache)
    assert r.compile(s).cubin == reference_cubin(s)
    assert r.core.stats.compiled == 1
    assert r.compile(spec(1)).cubin == reference_cubin(spec(1))
    assert r.core.stats.database_hits == 1


def test_schema_1_database_is_migrated(tmp_path):
    cache = tmp_path / "cache"
    path = _filled_cache(cache, n=1)
    as_schema(path, 1)
    assert _core.KernelDb(path, True).schema_version == 1
    assert KernelDb.open(path, read_only=True).tunings() == []
    with moejit_warnings() as warned:
        r = cache_runtime(cache)
        r.compile(spec(0))
    assert warned == [] and r.core.stats.database_hits == 1
    db = KernelDb.open(path)
    assert db.schema_version == _core.KernelDb.SCHEMA_VERSION == 4
    db.core.put_tuning(_tuning("sm_90a"))
    assert len(db.tunings()) == 1


def test_schema_3_database_is_rekeyed_and_keeps_its_kernels(tmp_path):
    """Schema 4 keys rows by their binary parts: a schema-3 file's rows get their new keys,
    keep their records and are served; two rows that differ only in their NVRTC are one."""
    cache = tmp_path / "cache"
    path = _filled_cache(cache, n=2)
    db = _core.KernelDb(path)
    entry = next(e for e in db.entries() if e.key.spec_text == spec(0).text())
    key, kernel = db.load(entry.key_hash)
    parts = {name: getattr(key, name) for name in ("spec_text", "target", "template_hash", "nvrtc_version",
                                                   "compile_options", "moejit_version")}
    del db
    as_schema(path, 3)
    # The same binary from another NVRTC, as schema 3 kept it: a row of its own.
    con = sqlite3.connect(path)
    con.row_factory = sqlite3.Row
    row = dict(con.execute("SELECT * FROM kernels WHERE spec_text = ?", (spec(0).text(),)).fetchone())
    row.update(nvrtc_version="12.8", last_used_at=0.0)
    row["key_hash"] = key_hash_v1(**{**parts, "nvrtc_version": "12.8"})
    row["record_hash"] = record_hash(row)
    con.execute(f"INSERT INTO kernels({', '.join(row)}) VALUES({', '.join('?' * len(row))})", tuple(row.values()))
    con.commit()
    con.close()
    assert len(_core.KernelDb(path, True).entries()) == 3
    with moejit_warnings() as warned:
        r = cache_runtime(cache)
        r.compile(spec(0))
        r.compile(spec(1))
    assert warned == [] and (r.core.stats.database_hits, r.core.stats.compiled) == (2, 0)
    db = KernelDb.open(path, read_only=True)
    assert db.schema_version == 4 and db.verify(load_on_gpu=False).ok
    rows = db.entries()
    assert len(rows) == 2 and {r.origin for r in rows} == {"compile"}
    assert next(r for r in rows if r.spec_text == spec(0).text()).nvrtc_version == parts["nvrtc_version"]


# ---- KernelDb (Python) -------------------------------------------------------------------


def _tuning(target, problem=None):
    t = _core.TuningEntry()
    t.problem = problem or kdb.problem_text(spec(0, target=target).text())
    t.target = target
    t.gpu_name = "NVIDIA H200"
    t.token_bucket = 8192
    t.best_tile = "128x128x32.s4.w2x2"
    t.best_ms = 0.25
    t.candidates_json = json.dumps([{"tile": "128x128x32.s4.w2x2", "ms": 0.25}, {"tile": "64x64x32.s4.w2x2",
                                                                                 "ms": 0.5}])
    t.tuned_at = 1.7e9
    t.template_hash = "t"
    t.nvrtc_version = "13.0"
    t.moejit_version = moejit.__version__
    return t


@pytest.fixture(scope="module")
def model_db(tmp_path_factory):
    """A database with the kernels of MODEL (sm_90a: the three heuristic kernels and one
    tuned with another tile; sm_80: one), unrelated small kernels, and tuning results."""
    directory = tmp_path_factory.mktemp("model-db")
    config = _core.KernelDbConfig()
    config.cache_path = cache_path(directory)
    r = Runtime(database=config)
    hopper = [k.spec for k in layer_kernels(model(MODEL), target="sm_90a")]
    first = hopper[0]
    tuned = moejit.kernel_spec("sdd", n=first.n, k=first.k, trans_b=True, tile="64x128x32.s4.w2x2")
    ampere = layer_kernels(model(MODEL), target="sm_80", dtype="fp16", block_size=64)[1].spec
    others = [spec(0), spec(1), spec(0, target="sm_80")]
    for s in hopper + [tuned, ampere] + others:
        r.compile(s)
    del r
    db = _core.KernelDb(config.cache_path)
    db.put_tuning(_tuning("sm_90a"))
    db.put_tuning(_tuning("sm_80"))
    del db
    return types.SimpleNamespace(path=config.cache_path, hopper=hopper, tuned=tuned, ampere=ampere, others=others)


def _copy(model_db, tmp_path):
    path = str(tmp_path / "copy.sqlite")
    KernelDb.open(model_db.path, read_only=True).export(path)
    return path


def _texts(path):
    return sorted(row[0] for row in rows(path))


def test_open_and_entries(model_db, tmp_path):
    db = KernelDb.open(model_db.path, read_only=True)
    assert db.path == model_db.path and db.read_only
    assert "read_only=True" in repr(db)
    entries = db.entries()
    assert len(entries) == 8
    assert [e.spec_text for e in entries] == sorted(e.spec_text for e in entries)
    tuned = next(e for e in entries if e.spec_text == model_db.tuned.text())
    assert tuned.tile == "64x128x32.s4.w2x2" and tuned.target == "sm_90a"
    assert tuned.compile_options and all(isinstance(o, str) for o in tuned.compile_options)
    assert tuned.spill_bytes == tuned.spill_store_bytes + tuned.spill_load_bytes
    tunings = db.tunings()
    assert {t.target for t in tunings} == {"sm_80", "sm_90a"}
    assert tunings[0].candidates[1] == {"tile": "64x64x32.s4.w2x2", "ms": 0.5}
    db.close()
    with pytest.raises(ValueError, match="closed"):
        db.entries()
    # The default path is the user cache of the environment.
    default = KernelDb.open()
    assert default.path == database_config().cache_path and default.entries() == []


def test_open_errors(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        KernelDb.open(str(tmp_path / "missing.sqlite"), read_only=True)
    with pytest.raises(ValueError, match="is a directory"):
        KernelDb.open(str(tmp_path))
    with pytest.raises(ValueError, match="path=42"):
        KernelDb.open(42)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(ValueError, match="cannot create its directory"):
        KernelDb.open(str(not_a_dir / "sub" / "kernels.sqlite"))
    other = str(tmp_path / "other.sqlite")
    _other_program_at(other)
    with pytest.raises(_core.KernelDbError, match="not a moejit kernel database"):
        KernelDb.open(other, read_only=True)
    ro = KernelDb.open(_filled_cache(tmp_path / "c", n=1), read_only=True)
    with pytest.raises(ValueError, match="opened read-only"):
        ro.prune(max_mb=1)


def _other_program_at(path):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t(x)")
    con.commit()
    con.close()


def test_show_by_unique_prefix(model_db):
    db = KernelDb.open(model_db.path, read_only=True)
    entries = db.entries()
    target = entries[0]
    prefix = next(target.key_hash[:n] for n in range(1, 17)
                  if sum(e.key_hash.startswith(target.key_hash[:n]) for e in entries) == 1)
    info = db.show(prefix.upper())
    assert info["key_hash"] == target.key_hash and info["spec"] == target.spec_text
    assert set(info) >= {"source", "ptx", "log", "resources", "key", "tile"}
    assert set(info["key"]) == {"spec_text", "target", "template_hash", "nvrtc_version", "compile_options",
                                "moejit_version"}
    assert info["source"] == _core.generate_source(_core.KernelSpec.parse(target.spec_text)).source
    assert info["ptx"].lstrip().startswith("//")
    assert db.load(prefix).cubin[:4] == b"\x7fELF"
    with pytest.raises(ValueError, match=r"key='ffffffffffffffffff': no kernel .* has a key hash starting"):
        db.show("ffffffffffffffffff")
    # Eight hashes over sixteen hex digits: some one-digit prefix is shared, or use ''.
    with pytest.raises(ValueError, match="expected a kernel's key hash"):
        db.show("")
    firsts = [e.key_hash[0] for e in entries]
    shared = next((c for c in firsts if firsts.count(c) > 1), None)
    if shared is not None:
        with pytest.raises(ValueError, match=rf"key='{shared}' is ambiguous: \d+ kernels match"):
            db.show(shared)


def test_export_by_model_target_and_both(model_db, tmp_path):
    db = KernelDb.open(model_db.path, read_only=True)
    hopper = sorted(s.text() for s in model_db.hopper + [model_db.tuned])

    out = str(tmp_path / "model.sqlite")
    assert db.export(out, model=MODEL) == 5
    assert _texts(out) == sorted(hopper + [model_db.ampere.text()])

    out = str(tmp_path / "model-hopper.sqlite")
    assert db.export(out, model=model(MODEL), target="sm_90a") == 4
    assert _texts(out) == hopper
    exported = KernelDb.open(out, read_only=True)
    assert [t.target for t in exported.tunings()] == ["sm_90a"]   # tunings of the exported targets only
    assert exported.verify(load_on_gpu=False).ok

    out = str(tmp_path / "ampere.sqlite")
    assert db.export(out, target=_core.Target("sm_80")) == 2
    assert _texts(out) == sorted([model_db.ampere.text(), spec(0, target="sm_80").text()])

    out = str(tmp_path / "all.sqlite")
    assert db.export(out) == 8
    assert _texts(out) == _texts(model_db.path)

    out = str(tmp_path / "none.sqlite")
    assert db.export(out, model="olmoe-1b-7b") == 0
    assert _texts(out) == []


def test_exported_file_is_standalone_and_ships(model_db, tmp_path, monkeypatch):
    ship = tmp_path / "ship"
    ship.mkdir()
    path = str(ship / "team.sqlite")
    KernelDb.open(model_db.path, read_only=True).export(path, model=MODEL, target="sm_90a")
    assert os.listdir(ship) == ["team.sqlite"]                 # no -wal/-shm or partial files
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    # Ranks that list it in MOEJIT_KERNEL_DB compile nothing.
    monkeypatch.setenv("MOEJIT_KERNEL_DB", path)
    r = cache_runtime(tmp_path / "rank-cache")
    for s in model_db.hopper:
        r.compile(s)
    assert (r.core.stats.database_hits, r.core.stats.compiled) == (3, 0)
    assert os.listdir(ship) == ["team.sqlite"]


def test_export_errors(model_db, tmp_path):
    db = KernelDb.open(model_db.path, read_only=True)
    existing = tmp_path / "exists.sqlite"
    existing.write_bytes(b"precious")
    with pytest.raises(ValueError, match="already exists: expected a new file"):
        db.export(str(existing))
    assert existing.read_bytes() == b"precious"
    with pytest.raises(ValueError, match="model='gpt-5': expected one of"):
        db.export(str(tmp_path / "x.sqlite"), model="gpt-5")
    with pytest.raises(ValueError, match="target"):
        db.export(str(tmp_path / "x.sqlite"), target="hopper")
    with pytest.raises(ValueError, match="does not exist"):
        db.export(str(tmp_path / "no-dir" / "x.sqlite"))
    assert not os.path.exists(tmp_path / "x.sqlite")
    assert [p for p in os.listdir(tmp_path) if "partial" in p] == []


def test_import_merges(model_db, tmp_path):
    team = str(tmp_path / "team.sqlite")
    KernelDb.open(model_db.path, read_only=True).export(team, target="sm_90a")
    cache = KernelDb.open(str(tmp_path / "cache" / "kernels.sqlite"))
    assert cache.entries() == []
    assert cache.import_(team) == 6
    assert _texts(cache.path) == _texts(team)
    assert [t.target for t in cache.tunings()] == ["sm_90a"]
    assert cache.import_(team) == 0                        # already there: kept as they are
    assert cache.import_(model_db.path) == 2               # the sm_80 ones are new
    assert len(cache.entries()) == 8
    with pytest.raises(ValueError, match="no such file"):
        cache.import_(str(tmp_path / "missing.sqlite"))
    with pytest.raises(ValueError, match="this database itself"):
        cache.import_(cache.path)
    # The imported kernels serve a runtime.
    r = cache_runtime(tmp_path / "cache")
    for s in model_db.hopper:
        r.compile(s)
    assert r.core.stats.database_hits == 3


def test_prune(model_db, tmp_path):
    path = _copy(model_db, tmp_path)
    db = KernelDb.open(path)
    with pytest.raises(ValueError, match="expected max_age_days .* and/or max_mb"):
        db.prune()
    with pytest.raises(ValueError, match="max_mb=-1: expected a number >= 0"):
        db.prune(max_mb=-1)
    with pytest.raises(ValueError, match="max_age_days='30': expected a number"):
        db.prune(max_age_days="30")
    old = time.time() - 40 * 86400
    sql(path, "UPDATE kernels SET last_used_at = ? WHERE target = 'sm_80'", old)
    assert db.prune(max_age_days=30) == 2
    assert all(e.target == "sm_90a" for e in db.entries())
    assert db.prune(max_age_days=30) == 0
    entries = sorted(db.entries(), key=lambda e: e.last_used_at)
    keep = sum(e.size_bytes for e in entries[2:])
    assert db.prune(max_mb=keep / (1 << 20)) == 2
    assert [e.key_hash for e in sorted(db.entries(), key=lambda e: e.last_used_at)] == \
           [e.key_hash for e in entries[2:]]
    assert db.prune(max_mb=0) == 4 and db.entries() == []


class _FakeCore:
    """A GPU for verify's load check: sm_90, rejecting one chosen cubin."""

    def __init__(self, reject):
        self.reject = reject
        self.loaded = []

    def device_info(self, device):
        assert device == 0
        return types.SimpleNamespace(name="Fake H100", major=9, minor=0)

    def check_loads(self, kernel, device):
        if kernel.spec.text() == self.reject:
            raise RuntimeError("cuModuleLoadData: CUDA_ERROR_INVALID_IMAGE")
        self.loaded.append(kernel.spec.text())


def test_verify_loads_cubins_for_the_gpu(model_db, monkeypatch, capsys):
    fake = _FakeCore(reject=model_db.tuned.text())

    class FakeRuntime:
        def __init__(self, database="environment"):
            assert database is None
            self.core = fake

    monkeypatch.setattr(kdb, "Runtime", FakeRuntime)
    monkeypatch.setattr(kdb, "gpu_available", lambda: True)
    result = KernelDb.open(model_db.path, read_only=True).verify()
    assert result.load_checked and result.device == "Fake H100 (sm_90a)"
    hopper = sorted(s.text() for s in model_db.hopper + [spec(0), spec(1)])
    assert sorted(fake.loaded) == hopper
    assert result.loaded == 5 and result.other_targets == 2      # the sm_80 cubins cannot load on sm_90
    assert [f.name for f in result.load_failures] == [model_db.tuned.short_name()]
    assert "INVALID_IMAGE" in result.load_failures[0].message
    assert not result.ok and result.integrity_ok
    assert main(["db", "verify", "--db", model_db.path]) == 1
    out = capsys.readouterr().out
    assert "Fake H100 (sm_90a): 5 loaded, 1 failed, 2 for other architectures" in out and "INVALID_IMAGE" in out
    # --no-load skips it.
    assert main(["db", "verify", "--db", model_db.path, "--no-load", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and not report["load_checked"]


@pytest.mark.skipif(CUDA, reason="checks the error without a GPU")
def test_verify_load_without_gpu_is_a_clear_error(model_db, capsys):
    db = KernelDb.open(model_db.path, read_only=True)
    assert not db.verify().load_checked                 # auto: no GPU, no load check
    with pytest.raises(RuntimeError, match="load_on_gpu=True: expected a usable CUDA GPU 0"):
        db.verify(load_on_gpu=True)
    with pytest.raises(ValueError, match="load_on_gpu='yes'"):
        db.verify(load_on_gpu="yes")
    assert main(["db", "verify", "--db", model_db.path, "--load"]) == 1
    assert "expected a usable CUDA GPU" in capsys.readouterr().err


@requires_gpu
def test_verify_loads_real_cubins(tmp_path):
    r = cache_runtime(tmp_path / "cache")
    target = r.target_for(0)
    for i in range(2):
        r.compile(spec(i, target=target))
    result = KernelDb.open(cache_path(tmp_path / "cache"), read_only=True).verify()
    assert result.load_checked and result.loaded == 2 and result.ok


# ---- command line ------------------------------------------------------------------------


def test_cli_export_import_verify_prune(model_db, tmp_path, capsys):
    source = _copy(model_db, tmp_path)
    team = str(tmp_path / "team.sqlite")
    assert main(["db", "export", team, "--db", source, "--model", MODEL, "--target", "sm_90a"]) == 0
    assert "exported 4 kernels" in capsys.readouterr().out
    ampere = str(tmp_path / "ampere.sqlite")
    assert main(["db", "export", ampere, "--db", source, "--target", "sm_80", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kernels"] == 2

    # import into the (empty) user cache, the default --db
    assert main(["db", "import", team]) == 0
    assert "imported 4 new kernels" in capsys.readouterr().out
    assert main(["db", "import", ampere, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"path": database_config().cache_path, "source": ampere,
                                                   "imported": 2, "kernels": 6}
    assert main(["db", "list", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["kernels"]) == 6

    assert main(["db", "verify", "--no-load"]) == 0
    out = capsys.readouterr().out
    assert "integrity  ok" in out and "kernels    6, 0 damaged" in out and out.rstrip().endswith("OK")
    assert main(["db", "verify", "--no-load", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["kernels"] == 6 and report["damaged"] == []

    cache = database_config().cache_path
    sql(cache, "UPDATE kernels SET last_used_at = ? WHERE target = 'sm_80'", time.time() - 10 * 86400)
    assert main(["db", "prune", "--older-than-days", "7"]) == 0
    assert "removed 2 kernels" in capsys.readouterr().out
    total = KernelDb.open(cache).total_bytes()
    assert main(["db", "prune", "--max-mb", str(total / 2 / (1 << 20)), "--json"]) == 0
    pruned = json.loads(capsys.readouterr().out)
    assert pruned["removed"] >= 2 and pruned["total_bytes"] <= total / 2 and pruned["kernels"] == 4 - pruned["removed"]


def test_cli_errors(model_db, tmp_path, capsys):
    source = _copy(model_db, tmp_path)
    cases = [
        (["db", "show", "ffffffffffffffffffff", "--db", source], "key='ffffffffffffffffffff': no kernel"),
        (["db", "prune", "--db", source], "expected --older-than-days N and/or --max-mb N"),
        (["db", "prune", "--db", source, "--max-mb", "-3"], "max_mb=-3.0: expected a number >= 0"),
        (["db", "export", source, "--db", source], "already exists"),
        (["db", "export", str(tmp_path / "x.sqlite"), "--db", source, "--model", "gpt-5"], "model='gpt-5'"),
        (["db", "export", str(tmp_path / "y.sqlite"), "--db", source, "--target", "hopper"], "target"),
        (["db", "list", "--db", str(tmp_path / "missing.sqlite")], "--db"),
        (["db", "import", str(tmp_path / "missing.sqlite")], "no such file"),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        captured = capsys.readouterr()
        assert message in captured.err, (argv, captured.err)
        assert captured.err.startswith("moejit: ") and "Traceback" not in captured.err
    newer = str(tmp_path / "newer.sqlite")
    KernelDb.open(model_db.path, read_only=True).export(newer)
    sql(newer, "PRAGMA user_version = 99")
    assert main(["db", "list", "--db", newer]) == 1
    assert "newer than this moejit understands" in capsys.readouterr().err


def test_cli_subprocess_exit_codes(model_db, tmp_path):
    path = _copy(model_db, tmp_path)
    code, out, err = run_cli("db", "verify", "--db", path, "--json")
    assert code == 0, err
    assert json.loads(out)["ok"] is True
    code, out, err = run_cli("db", "prune", "--db", path)
    assert code == 1 and "expected --older-than-days N and/or --max-mb N" in err and "Traceback" not in err
