"""A fault matrix for the kernel database, run by hand (not collected by pytest):

    python tests/python/kernel_db_fault_matrix.py [--quick]

Each case damages or constrains a cache the way a real machine can (racing processes,
kill -9 mid-write, truncated / garbage / zero-byte / newer-schema files, read-only
directories and mounts, full disks, tampered rows of every column, damaged pages, tiny LRU
bounds), runs fresh Runtimes on it and prints `case -> outcome`. An outcome is FAIL when a
kernel handed out differs from a fresh compile (CUBIN, entry point or launch geometry),
something raised, a damaged row was served or verify disagrees. Cases that need mount(8)
(a tmpfs for a full disk, a read-only bind mount) run where this process may mount.
Exit status 1 if any case failed."""

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "kernel_db_worker.py")
sys.path.insert(0, HERE)

import moejit  # noqa: E402
from moejit import _core  # noqa: E402
from moejit.jit.kernel_db import KernelDb  # noqa: E402
from moejit.jit.runtime import MoejitWarning, Runtime  # noqa: E402

N = 12
ITEMS = [dict(op="sdd", n=128 * (i + 2), k=256) for i in range(N)]
SPECS = [moejit.kernel_spec(**item) for item in ITEMS]
_reference = {}
results = []


def reference(spec):
    if spec.text() not in _reference:
        k = Runtime(database=None).compile(spec)
        _reference[spec.text()] = (k.cubin, k.lowered_name, k.threads, k.dynamic_shared_bytes)
    return _reference[spec.text()]


def config(cache_dir=None, layers=()):
    c = _core.KernelDbConfig()
    c.cache_path = os.path.join(cache_dir, "kernels.sqlite") if cache_dir else ""
    c.read_only_paths = list(layers)
    return c


def run(cache_dir=None, layers=(), specs=SPECS, max_mb=None):
    """One process's worth of lookups: (stats, warnings); raises on a wrong kernel."""
    c = config(cache_dir, layers)
    if max_mb is not None:
        c.cache_max_bytes = int(max_mb * (1 << 20))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = Runtime(database=c)
        for s in specs:
            k = r.compile(s)
            got = (k.cubin, k.lowered_name, k.threads, k.dynamic_shared_bytes)
            if got != reference(s):
                raise AssertionError(f"WRONG KERNEL handed out for {s.short_name()}")
    return r.core.stats, [str(w.message) for w in caught if issubclass(w.category, MoejitWarning)]


def seeded(directory, n=N):
    """A cache directory holding SPECS[:n], copied from one seed."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "kernels.sqlite")
    if "seed" not in _reference:
        seed_dir = tempfile.mkdtemp(prefix="moejit-matrix-seed-")
        run(seed_dir)
        _reference["seed"] = os.path.join(seed_dir, "kernels.sqlite")
    KernelDb.open(_reference["seed"], read_only=True).export(path + ".tmp")
    os.replace(path + ".tmp", path)
    if n < N:
        con = sqlite3.connect(path)
        for s in SPECS[n:]:
            con.execute("DELETE FROM kernels WHERE spec_text = ?", (s.text(),))
        con.commit()
        con.close()
    return path


def verify_ok(path):
    with KernelDb.open(path, read_only=True) as db:
        return db.verify(load_on_gpu=False).ok


def case(name):
    def wrap(fn):
        def runner(tmp):
            directory = os.path.join(tmp, name.replace(" ", "-").replace("/", "-"))
            os.makedirs(directory, exist_ok=True)
            start = time.monotonic()
            try:
                outcome = fn(directory)
                status = "ok"
            except Exception as e:   # noqa: BLE001 - the matrix reports every failure
                outcome, status = f"{type(e).__name__}: {e}", "FAIL"
            results.append((name, status, outcome, time.monotonic() - start))
            print(f"{name:48s} -> {status}: {outcome}", flush=True)
        runner.case_name = name
        CASES.append(runner)
        return fn
    return wrap


CASES = []


def warn_summary(warned):
    return "; ".join(w[:160] for w in warned) if warned else "no warning"


@case("16 processes racing on a fresh cache")
def race(d):
    barrier = os.path.join(d, "barrier")
    os.makedirs(barrier)
    outs = [os.path.join(d, f"r{i}.json") for i in range(16)]
    procs = [subprocess.Popen([sys.executable, WORKER, "fetch", json.dumps(dict(
        specs=ITEMS[:6], cache_dir=os.path.join(d, "cache"), barrier=barrier, index=i, out=outs[i]))])
        for i in range(16)]
    while len([p for p in os.listdir(barrier) if p.startswith("ready-")]) < 16:
        time.sleep(0.05)
    open(os.path.join(barrier, "go"), "w").close()
    for p in procs:
        p.wait(timeout=300)
    reports = [json.load(open(o)) for o in outs]
    digests = [hashlib.sha256(reference(s)[0]).hexdigest() for s in SPECS[:6]]
    assert all(r["errors"] == [] and r["digests"] == digests for r in reports), "a worker got a wrong kernel"
    compiles = sum(r["compiled"] for r in reports)
    assert compiles <= 6 * 3, f"{compiles} compiles for 6 kernels"
    assert verify_ok(os.path.join(d, "cache", "kernels.sqlite"))
    return f"all 16 got the right 6 kernels; {compiles} compiles in all; verify ok"


@case("kill -9 mid-write")
def kill_mid_write(d):
    path = seeded(os.path.join(d, "cache"), n=2)
    key = Runtime(database=None).core.kernel_key(SPECS[0]).hash_hex()
    p = subprocess.Popen([sys.executable, WORKER, "insert-loop", json.dumps(dict(
        source=_reference["seed"], key_hash=key, db=path, start=100))], stdout=subprocess.PIPE, text=True)
    p.stdout.readline()
    time.sleep(1.0)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert verify_ok(path)
    stats, warned = run(os.path.join(d, "cache"))
    assert warned == [], warned
    return f"verify ok; next process: {stats.database_hits} hits, {stats.compiled} compiled, no warning"


def _replace_file(path, data):
    with open(path, "wb") as f:
        f.write(data)


for label, damage in [("truncated file", lambda p: os.truncate(p, os.path.getsize(p) // 2)),
                      ("garbage file", lambda p: _replace_file(p, os.urandom(65536))),
                      ("zero-byte file", lambda p: _replace_file(p, b""))]:
    def make(damage):
        def fn(d):
            path = seeded(os.path.join(d, "cache"))
            damage(path)
            stats, warned = run(os.path.join(d, "cache"))
            assert len(warned) <= 1, warned
            again, warned2 = run(os.path.join(d, "cache"))
            assert warned2 == [] and again.compiled == 0, warned2
            assert verify_ok(path)
            return (f"{stats.database_hits} hits, {stats.compiled} compiled; {warn_summary(warned)}; "
                    f"next process all hits, verify ok")
        return fn
    case(label)(make(damage))


@case("newer-schema file")
def newer(d):
    path = seeded(os.path.join(d, "cache"))
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    before = hashlib.sha256(open(path, "rb").read()).hexdigest()
    stats, warned = run(os.path.join(d, "cache"))
    assert len(warned) == 1 and "newer" in warned[0]
    assert hashlib.sha256(open(path, "rb").read()).hexdigest() == before
    return f"left untouched; {stats.compiled} compiled in memory; {warn_summary(warned)}"


def _unprivileged():
    """Root ignores file modes; in a user namespace root's files are checked by their owner bits."""
    return ["unshare", "--user"] if os.geteuid() == 0 else []


@case("read-only directory and file (mode 555/444)")
def read_only_mode(d):
    os.chmod(d, 0o755)
    cache = os.path.join(d, "cache")
    path = seeded(cache, n=N - 1)
    os.chmod(path, 0o444)
    os.chmod(cache, 0o555)
    home = os.path.join(d, "home")
    os.makedirs(home)
    os.chmod(home, 0o777)
    out = os.path.join(home, "r.json")
    env = dict(os.environ, HOME=home)
    p = subprocess.run([*_unprivileged(), sys.executable, WORKER, "fetch-read-only",
                        json.dumps(dict(cache_dir=cache, out=out, specs=ITEMS))],
                       env=env, capture_output=True, text=True, timeout=300)
    r = json.load(open(out))
    assert p.returncode == 0 and r["errors"] == [], p.stderr + str(r["errors"])
    assert r["digests"] == [hashlib.sha256(reference(s)[0]).hexdigest() for s in SPECS]
    cli = [subprocess.run([*_unprivileged(), sys.executable, "-m", "moejit", "db", *argv], capture_output=True,
                          text=True, env=dict(env, MOEJIT_CACHE_DIR=cache), timeout=300).returncode
           for argv in (["list"], ["verify", "--no-load"], ["list", "--db", path])]
    os.chmod(cache, 0o755)
    assert cli == [0, 0, 0], cli
    return (f"{r['database_hits']} hits, {r['compiled']} compiled; {warn_summary(r['warnings'])}; "
            f"db list/verify/--db exit {cli}")


def _mount(*args):
    return subprocess.run(["mount", *args], capture_output=True, text=True).returncode == 0


@case("read-only bind mount")
def read_only_mount(d):
    src, ro = os.path.join(d, "src"), os.path.join(d, "ro")
    path = seeded(src)
    os.makedirs(ro)
    if not (_mount("--bind", src, ro) and _mount("-o", "remount,ro,bind", ro)):
        return "skipped (cannot mount here)"
    try:
        stats, warned = run(ro)
        assert stats.database_hits == N and warned == [], warned
        extra = moejit.kernel_spec("dsd", n=256, k=256)
        stats2, warned2 = run(ro, specs=[extra])
        codes = [subprocess.run([sys.executable, "-m", "moejit", "db", *argv], capture_output=True,
                                env=dict(os.environ, MOEJIT_CACHE_DIR=ro), timeout=300).returncode
                 for argv in (["list"], ["verify", "--no-load"], ["show", "--db", os.path.join(ro, "kernels.sqlite"),
                                                                   KernelDb.open(path, True).entries()[0].key_hash])]
        assert codes == [0, 0, 0], codes
        return (f"{stats.database_hits} hits, no warning; a new kernel: {warn_summary(warned2)}; "
                f"db list/verify/show exit {codes}")
    finally:
        _mount_off(ro)


def _mount_off(path):
    subprocess.run(["umount", path], capture_output=True)


@case("full disk (8 MB tmpfs)")
def full_tmpfs(d):
    mnt = os.path.join(d, "mnt")
    os.makedirs(mnt)
    if not _mount("-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt):
        return "skipped (cannot mount here)"
    try:
        seeded(os.path.join(mnt, "cache"))
        filler = os.path.join(mnt, "filler")
        try:
            with open(filler, "wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
        except OSError:
            pass
        outcomes = []
        extra = [moejit.kernel_spec("dsd", n=256, k=128 * (i + 2)) for i in range(2)]
        for i in range(2):   # a later process also says why
            stats, warned = run(os.path.join(mnt, "cache"), specs=SPECS + extra[i:i + 1])
            assert len(warned) == 1, warned
            assert len(warned) <= 1 and all("MOEJIT_CACHE_MAX_MB" in w and "db prune" in w for w in warned), warned
            outcomes.append(f"{stats.database_hits} hits/{stats.compiled} compiled")
        os.remove(filler)
        assert verify_ok(os.path.join(mnt, "cache", "kernels.sqlite"))
        return f"{', '.join(outcomes)}; {warn_summary(warned)}; verify ok after"
    finally:
        _mount_off(mnt)


@case("full disk (file size limit, EFBIG)")
def full_rlimit(d):
    out = os.path.join(d, "r.json")
    subprocess.run([sys.executable, WORKER, "full-disk", json.dumps(dict(cache_dir=os.path.join(d, "cache"),
                                                                         limit_bytes=64 * 1024, out=out,
                                                                         specs=ITEMS[:3]))], timeout=300)
    r = json.load(open(out))
    assert r["errors"] == [] and len(r["warnings"]) == 1 and "MOEJIT_CACHE_MAX_MB" in r["warnings"][0]
    return f"{r['compiled']} compiled, kept in memory; {warn_summary(r['warnings'])}"


TAMPER = {
    "spec_text": "spec_text = replace(spec_text, 'k=256', 'k=384')",
    "target": "target = 'sm_80'", "template_hash": "template_hash = 'x'", "nvrtc_version": "nvrtc_version = '1.0'",
    "compile_options": "compile_options = ''", "moejit_version": "moejit_version = '0'",
    "tile": "tile = '64x64x32.s4.w2x2'", "lowered_name": "lowered_name = '_Z1fv'",
    "cubin": "cubin = cubin || x'00'", "cubin_hash (unused since schema 3)": "cubin_hash = '0'",
    "source": "source = ''", "ptx": "ptx = ''",
    "log": "log = 'x'", "registers": "registers = 1", "static_shared_bytes": "static_shared_bytes = 1",
    "stack_bytes": "stack_bytes = 1", "spill_store_bytes": "spill_store_bytes = 1",
    "spill_load_bytes": "spill_load_bytes = 1", "threads": "threads = 32",
    "dynamic_shared_bytes": "dynamic_shared_bytes = 1", "threads+dynamic_shared_bytes":
        "threads = 32, dynamic_shared_bytes = 1", "record_hash": "record_hash = 'x'",
    "compile_ms (bookkeeping)": "compile_ms = 1", "last_used_at (bookkeeping)": "last_used_at = 1",
    "size_bytes (bookkeeping)": "size_bytes = 1",
}

for column, update in TAMPER.items():
    def make(column, update):
        def fn(d):
            path = seeded(os.path.join(d, "cache"), n=3)
            con = sqlite3.connect(path)
            con.execute(f"UPDATE kernels SET {update} WHERE spec_text = ?", (SPECS[0].text(),))
            con.commit()
            con.close()
            flagged = not verify_ok(path)
            stats, warned = run(os.path.join(d, "cache"), specs=SPECS[:3])
            bookkeeping = "bookkeeping" in column or "unused" in column
            if bookkeeping:
                assert not flagged and stats.database_hits == 3, (flagged, stats.database_hits)
            else:
                assert flagged and stats.compiled == 1, (flagged, stats.compiled)
            assert verify_ok(path)
            return (f"verify {'flags it' if flagged else 'ok'}; {stats.database_hits} hits, {stats.compiled} "
                    f"compiled; {warn_summary(warned)}")
        return fn
    case(f"tampered {column}")(make(column, update))


for fraction in (0.1, 0.4, 0.7, 0.95):
    def make(fraction):
        def fn(d):
            path = seeded(os.path.join(d, "cache"))
            with open(path, "r+b") as f:
                f.seek(int(os.path.getsize(path) * fraction) // 4096 * 4096)
                f.write(random.Random(fraction).randbytes(4096))
            runs = [run(os.path.join(d, "cache")) for _ in range(3)]
            assert sum(len(w) for _, w in runs) <= 1, [w for _, w in runs]
            assert runs[1][0].compiled == 0 and runs[2][0].compiled == 0
            assert verify_ok(path)
            return (f"run 1: {runs[0][0].database_hits} hits/{runs[0][0].compiled} compiled, "
                    f"{warn_summary(runs[0][1])}; runs 2-3 all hits, no warning; verify ok")
        return fn
    case(f"damaged page at {int(fraction * 100)}%")(make(fraction))


@case("damaged page in a read-only layer")
def damaged_layer(d):
    path = seeded(os.path.join(d, "team"))
    with open(path, "r+b") as f:
        f.seek(int(os.path.getsize(path) * 0.4) // 4096 * 4096)
        f.write(random.Random(4).randbytes(4096))
    stats, warned = run(None, layers=[path])
    assert len(warned) <= 2
    return f"{stats.database_hits} hits, {stats.compiled} compiled; {warn_summary(warned)}"


@case("garbage -wal beside the cache")
def garbage_wal(d):
    path = seeded(os.path.join(d, "cache"))
    _replace_file(path + "-wal", os.urandom(40000))
    stats, warned = run(os.path.join(d, "cache"))
    assert verify_ok(path)
    return f"{stats.database_hits} hits, {stats.compiled} compiled; {warn_summary(warned)}"


@case("schema-2 file")
def schema_2(d):
    path = seeded(os.path.join(d, "cache"))
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE kernels DROP COLUMN record_hash")
    con.execute("PRAGMA user_version = 2")
    con.commit()
    con.close()
    stats, warned = run(os.path.join(d, "cache"))
    assert stats.database_hits == N and verify_ok(path)
    return f"migrated; {stats.database_hits} hits; {warn_summary(warned)}"


for max_mb in (0, 0.05, 0.2):
    def make(max_mb):
        def fn(d):
            stats, warned = run(os.path.join(d, "cache"), max_mb=max_mb)
            again, warned2 = run(os.path.join(d, "cache"), max_mb=max_mb)
            path = os.path.join(d, "cache", "kernels.sqlite")
            size = KernelDb.open(path, read_only=True).total_bytes()
            assert size <= max(max_mb * (1 << 20), 0) or max_mb == 0
            assert verify_ok(path) and warned == warned2 == []
            return f"{again.database_hits} hits on the second run; {size} bytes kept; verify ok"
        return fn
    case(f"LRU bound {max_mb} MB")(make(max_mb))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="skip the 16-process race")
    parser.add_argument("--only", help="run the cases whose name contains this")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="moejit-fault-matrix-")
    os.chmod(tmp, 0o755)
    try:
        for c in CASES:
            if args.quick and c.case_name.startswith("16 processes"):
                continue
            if args.only and args.only not in c.case_name:
                continue
            c(tmp)
    finally:
        for root, dirs, _ in os.walk(tmp):
            for x in dirs:
                try:
                    os.chmod(os.path.join(root, x), 0o755)
                except OSError:
                    pass
        shutil.rmtree(tmp, ignore_errors=True)
        if "seed" in _reference:
            shutil.rmtree(os.path.dirname(_reference["seed"]), ignore_errors=True)
    failed = [r for r in results if r[1] != "ok"]
    print(f"\n{len(results)} cases, {len(results) - len(failed)} ok, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
