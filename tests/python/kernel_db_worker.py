"""A child process for the kernel database tests (test_kernel_db*.py), run as
    python kernel_db_worker.py MODE JSON_ARGUMENTS
It reports what it saw (stats, cubin digests, every warning and exception) as JSON in
args["out"], so the parent can assert on it.

Modes:
  fetch        wait for the start signal, then ask a fresh Runtime on a shared cache for
               a list of kernels (the many-processes test)
  insert-loop  insert one big kernel under ever new keys until killed (the SIGKILL test)
  full-disk    compile with the file size limit set low, so cache writes fail with EFBIG
  fetch-read-only  ask a fresh Runtime for kernels from a cache it cannot write (the last
               spec is one the cache lacks), noting whether anything warned before that one
"""

import hashlib
import json
import os
import sys
import time
import traceback
import warnings


def specs(items):
    import moejit

    return [moejit.kernel_spec(**item) for item in items]


def wait_for(path, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"start signal {path} never came")
        time.sleep(0.001)


def fetch(args, report):
    from moejit.jit.runtime import Runtime, database_config

    kernel_specs = specs(args["specs"])
    # Ready: everything imported and the specs built. Then start together.
    open(os.path.join(args["barrier"], f"ready-{args['index']}"), "w").close()
    wait_for(os.path.join(args["barrier"], "go"))
    report["started_at"] = time.time()
    runtime = Runtime(database=database_config(args["cache_dir"]))
    digests = []
    for spec in kernel_specs:
        kernel = runtime.compile(spec)
        digests.append(hashlib.sha256(kernel.cubin).hexdigest())
        if kernel.spec.text() != spec.text():
            report["errors"].append(f"asked for {spec.text()}, got {kernel.spec.text()}")
    stats = runtime.core.stats
    report.update(digests=digests, compiled=stats.compiled, database_hits=stats.database_hits,
                  cache_writable=runtime.core.cache_writable, finished_at=time.time())


def insert_loop(args, report):
    from moejit import _core

    # The big kernel to write again and again, under ever new keys: its own key with another
    # moejit version each time (a row must stay consistent with its spec to pass its check).
    source = _core.KernelDb(args["source"], True)
    key, kernel = source.load(args["key_hash"])
    db = _core.KernelDb(args["db"], False)
    i = args.get("start", 0)
    while True:
        db.insert(_core.KernelKey(key.spec_text, key.target, key.template_hash, key.nvrtc_version,
                                  key.compile_options, f"{key.moejit_version}+{i}"), kernel)
        i += 1
        if i == args.get("start", 0) + 1:
            print("inserting", flush=True)


def full_disk(args, report):
    import resource
    import signal

    from moejit.jit.runtime import Runtime, database_config

    kernel_specs = specs(args["specs"])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # writes past the limit fail with EFBIG instead
    limit = args["limit_bytes"]
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    runtime = Runtime(database=database_config(args["cache_dir"]))
    digests = []
    for spec in kernel_specs:
        digests.append(hashlib.sha256(runtime.compile(spec).cubin).hexdigest())
    # Asking again is served from memory, with no further warning.
    for spec in kernel_specs:
        runtime.compile(spec)
    stats = runtime.core.stats
    report.update(digests=digests, compiled=stats.compiled, database_hits=stats.database_hits,
                  memory_hits=stats.memory_hits, cache_writable=runtime.core.cache_writable)


def fetch_read_only(args, report):
    from moejit.jit.runtime import Runtime, database_config

    kernel_specs = specs(args["specs"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runtime = Runtime(database=database_config(args["cache_dir"]))
        digests = [hashlib.sha256(runtime.compile(spec).cubin).hexdigest() for spec in kernel_specs[:-1]]
        report["warned_before_compiling"] = bool(caught)
        digests.append(hashlib.sha256(runtime.compile(kernel_specs[-1]).cubin).hexdigest())
    report["warnings"] += [f"{w.category.__name__}: {w.message}" for w in caught]
    stats = runtime.core.stats
    report.update(digests=digests, compiled=stats.compiled, database_hits=stats.database_hits,
                  cache_writable=runtime.core.cache_writable)


def main():
    mode, args = sys.argv[1], json.loads(sys.argv[2])
    report = {"warnings": [], "errors": []}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            {"fetch": fetch, "insert-loop": insert_loop, "full-disk": full_disk,
             "fetch-read-only": fetch_read_only}[mode](args, report)
        except BaseException:
            report["errors"].append(traceback.format_exc())
        report["warnings"] += [f"{w.category.__name__}: {w.message}" for w in caught]
    out = args.get("out")
    if out:
        with open(out + ".tmp", "w") as f:
            json.dump(report, f)
        os.replace(out + ".tmp", out)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
