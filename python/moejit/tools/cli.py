"""The `moejit` command line (also `python -m moejit`).

  moejit build  --model NAME | --hidden H --ffn F --experts E --top-k K [--activation A] [--glu]
      generate and compile every kernel the model's dMoE layer needs (forward and
      backward); where a GPU is present, also run each one on random routing, check it
      against a float32 reference and time it next to dense cuBLAS with the same FLOPs.
  moejit tune   (the same shape flags)
      autotune the layer's block-sparse products on this GPU into the kernel database.
  moejit show --model NAME --op sdd|dsd|dsd-t | --spec TEXT | --key HASH [--section ptx]
      one kernel's source, PTX, SASS, resources and tuning results.
  moejit doctor
      what moejit finds on this machine (NVRTC and why that one, driver, GPUs, databases).
  moejit source --op sdd --trans nt --n 114688 --k 4096 [...] | --spec "<spec text>"
      print the CUDA source generated for one kernel.
  moejit models
      list the model shapes moejit knows.
  moejit bench kernels|layer --model NAME [NAME ...] [--against dense,grouped_mm,bmm,stk,megablocks] [--out DIR]
      time moejit next to its peers on the same work in one process (the layer's three
      kernels, or the whole layer forward and forward+backward), each checked against a
      float32 reference first; writes results.json, results.md and chart.png.
  moejit bench plot RESULTS.json [--out PNG]
      render a results.json's chart (where matplotlib is installed).
  moejit db list | show KEY | export PATH [--model NAME] [--target sm_90a] | import PATH
            | verify [--repair] | prune [--older-than-days N] [--max-mb N]
      inspect and maintain a kernel database (default: the user cache; --db PATH for
      another file; --json for scripts). See moejit.jit.kernel_db for the lookup order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from typing import Optional, Sequence

from .. import _core
from ..jit.layer_kernels import (LayerKernel, LayerShapeError, activation_kernels, check_layer_shape, layer_kernels,
                            routing_kernels)
from ..jit.runtime import MoejitWarning, Runtime, gpu_available
from ..jit.specs import BLOCK_SIZES, DTYPES, kernel_spec
from ..zoo import DEFAULT_MODEL, MODELS, ModelShape, model


class UsageError(ValueError):
    """A command line the user must change: printed as one line, exit status 2."""


# The command line's names of the layer's sizes, for check_layer_shape's messages.
_SHAPE_FLAGS = {"hidden": "--hidden", "ffn": "--ffn", "experts": "--experts", "top_k": "--top-k",
                "block_size": "--block-size"}


def _shape_from_args(args: argparse.Namespace, target: str = "sm_90a") -> ModelShape:
    """The layer shape the flags describe, checked by the rule dMoE uses (check_layer_shape)
    for `target` before any work."""
    # `tune` takes several token counts; the shape carries the first.
    tokens = args.tokens[0] if isinstance(args.tokens, list) else args.tokens
    explicit = [args.hidden, args.ffn, args.experts, args.top_k]
    activation, glu = getattr(args, "activation", None), getattr(args, "glu", False)
    if any(v is not None for v in explicit):
        if args.model is not None:
            raise UsageError("give either --model or --hidden/--ffn/--experts/--top-k, not both")
        if any(v is None for v in explicit):
            missing = [flag for flag, v in zip(("--hidden", "--ffn", "--experts", "--top-k"), explicit) if v is None]
            raise UsageError(f"explicit dimensions need all of --hidden, --ffn, --experts and --top-k "
                             f"(missing {', '.join(missing)})")
        shape = ModelShape("custom", args.hidden, args.ffn, args.experts, args.top_k, tokens or 16384,
                           activation or "gelu", glu)
    else:
        if activation is not None or glu:
            raise UsageError(f"--activation and --glu describe a shape given by --hidden/--ffn/--experts/--top-k; "
                             f"model {args.model or DEFAULT_MODEL} has its own (see `moejit models`)")
        shape = model(args.model or DEFAULT_MODEL)
        if tokens is not None:
            shape = ModelShape(**{**shape.__dict__, "tokens": tokens})
    check_layer_shape(shape.hidden, shape.ffn, shape.experts, shape.top_k, block_size=args.block_size,
                      dtype=args.dtype, target=target, names=_SHAPE_FLAGS, separator=" ")
    return shape


def _shapes_from_args(args: argparse.Namespace) -> list[ModelShape]:
    """Every shape of `--model A B ...`, or the one of explicit dimensions."""
    names = args.model if args.model else [None]
    shapes = []
    for name in names:
        one = argparse.Namespace(**{**vars(args), "model": name})
        if name is None and all(v is None for v in (args.hidden, args.ffn, args.experts, args.top_k)):
            one.model = DEFAULT_MODEL
        shapes.append(_shape_from_args(one))
    return shapes


def _process_age() -> Optional[float]:
    """Seconds since this process started (Linux), for cold-start figures; None elsewhere."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")   # field 22: start time in ticks
    except (OSError, ValueError, IndexError):
        return None


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def cmd_build(args: argparse.Namespace) -> int:
    target = _core.Target(args.target) if args.target else None
    shape = _shape_from_args(args, target.text() if target else "sm_90a")
    runtime = Runtime()
    run = gpu_available() and not args.no_run
    if target is None:
        target = runtime.target_for(0) if run else _core.Target("sm_90a")
        shape = _shape_from_args(args, target.text())
    print(f"moejit build: {shape.describe()}")
    try:
        compiler = f"NVRTC {runtime.core.nvrtc_version} ({runtime.core.nvrtc_path})"
    except RuntimeError:
        compiler = "no NVRTC: kernels only from the kernel databases"
    print(f"target {target.text()}, dtype {args.dtype}, block {args.block_size}, {compiler}")
    products = layer_kernels(shape, target=target, dtype=args.dtype, block_size=args.block_size)
    on_gpu = run and target == runtime.target_for(0)
    if on_gpu:
        # The tiles `moejit tune` chose on this GPU for the nearest token bucket, where tuned.
        bucket = _core.token_bucket(shape.tokens * shape.top_k, shape.experts)
        products = [LayerKernel(runtime.tuned_spec(k.spec, 0, bucket), k.uses) for k in products]
    common = dict(target=target, dtype=args.dtype, block_size=args.block_size)
    kernels = products + routing_kernels(shape, **common) + activation_kernels(shape, **common)
    rows = []
    start = time.perf_counter()
    for i, kernel in enumerate(kernels, 1):
        before = runtime.core.stats
        print(f"[{i}/{len(kernels)}] {kernel.spec.short_name()}: ", end="", flush=True)
        compiled = runtime.compile(kernel.spec)
        if on_gpu:
            runtime.core.prepare(kernel.spec, 0)   # load it: launchable from now on
        stats = runtime.core.stats
        origin = ("database" if stats.database_hits > before.database_hits else
                  "compiled" if stats.compiled > before.compiled else "memory")
        # A kernel from the database was compiled by another process: no compile time here.
        compile_ms = f"{compiled.compile_ms:.0f}" if origin == "compiled" else "-"
        print(f"compiled in {compiled.compile_ms:.0f} ms" if origin == "compiled" else
              "from the kernel database" if origin == "database" else "already in memory", flush=True)
        r = compiled.resources
        tile = "-" if _core.is_routing(kernel.spec.op) else kernel.spec.tile.text()
        rows.append([kernel.spec.short_name(), tile, r.registers, compiled.dynamic_shared_bytes,
                     r.spill_store_bytes + r.spill_load_bytes, compile_ms, origin, "; ".join(kernel.uses)])
    ready = time.perf_counter() - start
    stats = runtime.core.stats
    print()
    _print_table(["kernel", "tile", "regs", "smem", "spill", "compile ms", "from", "computes"], rows)
    age = _process_age()
    print(f"\n{len(kernels)} kernels ready{' (loaded on GPU 0)' if on_gpu else ''} in {ready:.2f} s: "
          f"{stats.compiled} compiled, {stats.database_hits} from the kernel database"
          + (f"; {age:.2f} s after the process started" if age is not None else ""))
    print(f"kernel database: {', '.join(runtime.core.database_paths) or 'none (kernels kept in memory)'}")
    if args.show_source:
        for kernel in kernels:
            print(f"\n// ---- {kernel.spec.short_name()} ----")
            print(_core.generate_source(kernel.spec).source, end="")
    if not run:
        if not args.no_run:
            print("no GPU found: the kernels are ready, not run")
        return 0
    if not on_gpu:
        print(f"target {target.text()} does not match GPU 0 ({runtime.target_for(0).text()}): not running")
        return 0
    if args.no_measure:
        return 0
    from .measure_layer import measure_layer_kernels

    results = measure_layer_kernels(shape, products, dtype=args.dtype, runtime=runtime, seed=args.seed)
    print()
    _print_table(
        ["kernel", "product", "rel err", "ms", "TFLOP/s", "dense TFLOP/s", "ratio"],
        [[r.kernel, r.product, f"{r.rel_error:.1e}", f"{r.ms:.3f}", f"{r.tflops:.0f}", f"{r.dense_tflops:.0f}",
          f"{r.tflops / r.dense_tflops:.2f}"] for r in results],
    )
    bad = [r for r in results if not r.passed]
    if bad:
        print(f"\nFAILED: {len(bad)} kernel(s) disagree with the float32 reference", file=sys.stderr)
        return 1
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    import dataclasses
    import functools

    shape = _shape_from_args(args)
    if not gpu_available():
        print("moejit tune: needs a CUDA GPU (and torch) to time candidates; `moejit build` compiles "
              "without one", file=sys.stderr)
        return 1
    import torch

    from .measure_layer import LayerData, RoleWorkload
    from .timing import median_ms, tflops
    from .tuner import Progress, tune_problem

    runtime = Runtime(origin="tune")
    target = runtime.target_for(0)
    shape = _shape_from_args(args, target.text())   # the rule for this GPU's target
    gpu = torch.cuda.get_device_name(0)
    kernels = layer_kernels(shape, target=target, dtype=args.dtype, block_size=args.block_size)
    roles = ["sdd", "dsd", "dsd_t"]   # layer_kernels() order
    timer = functools.partial(median_ms, warmup=3, reps=15)
    print(f"moejit tune: {shape.describe()}")
    print(f"on {gpu} ({target.text()}), dtype {args.dtype}, block {args.block_size}; "
          f"results go to {', '.join(runtime.core.database_paths) or 'nowhere (no kernel cache)'}")
    rows, start = [], time.perf_counter()
    for tokens in args.tokens or [shape.tokens]:
        data = LayerData(dataclasses.replace(shape, tokens=tokens), dtype=args.dtype, block_size=args.block_size,
                         seed=args.seed, runtime=runtime)
        dense = data.dense_tflops()
        for kernel, role in zip(kernels, roles):
            space = len(_core.search_space(kernel.spec))
            total = min(space, args.max_candidates) if args.max_candidates else space
            progress = Progress(f"{kernel.spec.short_name()} bucket {data.bucket}", total)
            result = tune_problem(kernel.spec, RoleWorkload(data, role), bucket=data.bucket, gpu_name=gpu,
                                  runtime=runtime, timer=timer, max_candidates=args.max_candidates,
                                  progress=progress)
            best = tflops(data.useful_flops, result.best.best_ms)
            untuned = tflops(data.useful_flops, result.heuristic.best_ms) if result.heuristic.usable else float("nan")
            rows.append([kernel.spec.short_name(), data.bucket, result.best.tile, f"{result.best.best_ms:.3f}",
                         f"{best:.0f}", f"{untuned:.0f}", f"{result.speedup:.2f}", f"{dense:.0f}",
                         f"{best / dense:.2f}"])
        del data
        torch.cuda.empty_cache()
    print()
    _print_table(["kernel", "bucket", "chosen tile", "ms", "TFLOP/s", "untuned", "speedup", "dense", "ratio"], rows)
    print(f"\ntuned {len(rows)} kernel(s) in {time.perf_counter() - start:.1f} s")
    return 0


def cmd_source(args: argparse.Namespace) -> int:
    if args.spec:
        spec = _core.KernelSpec.parse(args.spec)
    else:
        if not args.op:
            raise SystemExit("moejit source: give --op (with its extents) or --spec")
        trans = args.trans or "nn"
        if len(trans) != 2 or any(c not in "nt" for c in trans):
            raise SystemExit(f"moejit source: --trans={trans}: expected two letters n|t, such as nt")
        spec = kernel_spec(args.op, m=args.m, n=args.n, k=args.k, trans_a=trans[0] == "t", trans_b=trans[1] == "t",
                           dtype=args.dtype, block_size=args.block_size, target=args.target or "sm_90a",
                           tile=args.tile)
    print(_core.generate_source(spec).source, end="")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from ..jit.inspection import inspect

    def progress(message: str) -> None:
        print(f"moejit show: {message}", file=sys.stderr, flush=True)

    info = inspect(args.spec, key=args.key, db=args.db, model=args.model, op=args.op,
                   target=args.target or "sm_90a", dtype=args.dtype, block_size=args.block_size, progress=progress)
    if args.json:
        _print_json(info.to_dict())
        return 0
    if args.section != "all":
        # One section alone is that text and nothing else, so `> k.ptx` is a PTX file.
        text = getattr(info, args.section)
        if args.section == "sass" and text is None:
            print(f"moejit show: no SASS: {info.sass_note}", file=sys.stderr)
            return 1
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return 0
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    bold = (lambda t: f"\033[1m{t}\033[0m") if color else (lambda t: t)
    name_of = (lambda t: f"\033[36m{t}\033[0m") if color else (lambda t: t)
    r, occ = info.resources, info.occupancy
    rows = [
        ("kernel", info.name), ("spec", info.spec), ("from", info.origin), ("template", info.template),
        ("entry point", info.lowered_name), ("key hash", info.key["hash"]),
        ("template hash", info.key["template_hash"]), ("NVRTC", info.key["nvrtc_version"]),
        ("moejit", info.key["moejit_version"]), ("options", " ".join(info.key["compile_options"])),
        ("registers", r["registers"]),
        ("shared memory", f"{r['dynamic_shared_bytes']} dynamic + {r['static_shared_bytes']} static bytes"),
        ("spills", f"{r['spill_store_bytes']} bytes stored, {r['spill_load_bytes']} loaded; stack {r['stack_bytes']}"),
        ("threads", r["threads"]),
        ("occupancy", f"{occ.blocks_per_sm} blocks ({occ.warps_per_sm} warps) per SM, limited by {occ.limited_by}"
         if occ else "unknown"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{name_of(k.ljust(width))}  {v}")
    if info.tunings:
        print(bold("\n== tuning results"))
        for t in info.tunings:
            print(f"{t['gpu_name']}, token bucket {t['token_bucket']}: best {t['best_tile']} {t['best_ms']:.3f} ms")
            # The tuner's final first (by its score), then the screen (tuner.rank's order).
            def order(c):
                final = c.get("final_score")
                return (c["ms"] is None, final is None, final if final is not None else (c["ms"] or 0))

            for c in sorted(t["candidates"], key=order):
                if c["ms"] is None:
                    timing = c["failure"]
                elif c.get("final_ms") is not None:
                    timing = f"{c['final_ms']:.3f} ms in the final (screen {c['ms']:.3f} ms)"
                else:
                    timing = f"{c['ms']:.3f} ms"
                print(f"    {c['tile']:22s} {timing}")
    for section in ["source", "ptx", "sass", "log"]:
        text = getattr(info, section)
        if section == "sass" and text is None:
            text = f"(no SASS: {info.sass_note})\n"
        print(bold(f"\n== {section}"))
        print(text if text.endswith("\n") else text + "\n", end="")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import diagnose, render

    report = diagnose()
    if args.json:
        _print_json(report.to_dict())
    else:
        print(render(report))
    return 0 if report.ok else 1


def cmd_models(args: argparse.Namespace) -> int:
    _print_table(["model", "hidden", "ffn", "experts", "top-k", "tokens", "activation"],
                 [[s.name, s.hidden, s.ffn, s.experts, s.top_k, s.tokens, s.activation + (" GLU" if s.glu else "")]
                  for s in MODELS.values()])
    return 0


def _open_db(args: argparse.Namespace, read_only: bool):
    from ..jit.kernel_db import KernelDb, _default_cache_path

    if args.db is None:
        # The user cache. Commands that only read open an existing one read-only (it may sit
        # on a read-only mount); otherwise it is opened writable, which creates it empty on a
        # fresh machine.
        path = _default_cache_path()
        return KernelDb.open(None, read_only=read_only and os.path.exists(path))
    if not os.path.exists(args.db):
        raise ValueError(f"--db {args.db}: no such file; expected an existing kernel database")
    return KernelDb.open(args.db, read_only=read_only)


def _db_path(args: argparse.Namespace) -> str:
    from ..jit.kernel_db import _default_cache_path

    return args.db if args.db is not None else _default_cache_path()


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.2f} MB"


def cmd_db_list(args: argparse.Namespace) -> int:
    from ..jit.kernel_db import format_time

    with _open_db(args, read_only=True) as db:
        rows = db.entries()
        total = db.total_bytes()
        if args.json:
            import dataclasses

            tuned = db.tuned_on(rows)
            _print_json({"path": db.path, "total_bytes": total,
                         "kernels": [dataclasses.asdict(r) | {"tuned_on": tuned.get(r.key_hash, [])} for r in rows]})
            return 0
        tuned = db.tuned_on(rows)
        _print_table(["key", "kernel", "target", "tile", "regs", "smem", "spill", "KB", "from", "nvrtc", "moejit",
                      "tuned on", "last used"],
                     [[r.key_hash[:12], r.name, r.target, r.tile, r.registers,
                       r.static_shared_bytes + r.dynamic_shared_bytes, r.spill_bytes, f"{r.size_bytes / 1024:.0f}",
                       r.origin, r.nvrtc_version, r.moejit_version, ", ".join(tuned.get(r.key_hash, [])) or "-",
                       format_time(r.last_used_at)] for r in rows])
        print(f"\n{len(rows)} kernel{'' if len(rows) == 1 else 's'}, {_mb(total)} in {db.path}")
    return 0


def cmd_db_show(args: argparse.Namespace) -> int:
    from ..jit.kernel_db import format_time

    with _open_db(args, read_only=True) as db:
        info = db.show(args.key)
    if args.json:
        _print_json(info)
        return 0
    key, res = info["key"], info["resources"]
    lines = [
        ("key hash", info["key_hash"]),
        ("kernel", info["name"]),
        ("spec", key["spec_text"]),
        ("target", key["target"]),
        ("tile", info["tile"]),
        ("from", info["origin"] + (f" (tuned on {', '.join(info['tuned_on'])})" if info["tuned_on"] else "")),
        ("template hash", key["template_hash"]),
        ("NVRTC", key["nvrtc_version"]),
        ("moejit", key["moejit_version"]),
        ("options", " ".join(key["compile_options"])),
        ("entry point", info["lowered_name"]),
        ("registers", res["registers"]),
        ("shared memory", f"{res['static_shared_bytes']} static + {res['dynamic_shared_bytes']} dynamic bytes"),
        ("spills", f"{res['spill_store_bytes']} bytes stored, {res['spill_load_bytes']} loaded"),
        ("stack", f"{res['stack_bytes']} bytes"),
        ("threads", res["threads"]),
        ("cubin", f"{info['cubin_bytes']} bytes (entry {info['size_bytes']} bytes)"),
        ("compile", f"{info['compile_ms']:.0f} ms"),
        ("created", format_time(info["created_at"])),
        ("last used", format_time(info["last_used_at"])),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(f"{name.ljust(width)}  {value}")
    for section in ("source", "ptx", "log"):
        text = info[section]
        print(f"\n// ---- {section} ----")
        print(text if text.endswith("\n") or not text else text + "\n", end="")
    return 0


def cmd_db_export(args: argparse.Namespace) -> int:
    with _open_db(args, read_only=True) as db:
        count = db.export(args.path, model=args.model, target=args.target)
        source = db.path
    if args.json:
        _print_json({"path": os.path.abspath(args.path), "source": source, "kernels": count})
    else:
        print(f"exported {count} kernel{'' if count == 1 else 's'} from {source} to {args.path}")
        if count == 0:
            print("note: no kernel matched the filters", file=sys.stderr)
    return 0


def cmd_db_import(args: argparse.Namespace) -> int:
    with _open_db(args, read_only=False) as db:
        count = db.import_(args.path)
        total = len(db.entries())
        path = db.path
    if args.json:
        _print_json({"path": path, "source": args.path, "imported": count, "kernels": total})
    else:
        print(f"imported {count} new kernel{'' if count == 1 else 's'} from {args.path} into {path} "
              f"({total} in all)")
    return 0


def cmd_db_verify(args: argparse.Namespace) -> int:
    from ..jit.kernel_db import repair_file

    if args.repair:
        if args.load:
            raise ValueError("db verify: --repair rebuilds the file without loading cubins; expected --repair alone")
        return _db_repair(args, repair_file)
    try:
        db = _open_db(args, read_only=True)
    except (_core.KernelDbError, RuntimeError) as e:
        if "newer than this moejit" in str(e):
            raise
        # Not even its header reads: say so in the report's form, and what to run.
        path = _db_path(args)
        if args.json:
            _print_json({"path": path, "ok": False, "integrity_ok": False, "integrity_message": str(e)})
        else:
            print(f"database   {path}\nintegrity  FAILED: {e}\nFAILED: `moejit db verify{_db_flag(args)} --repair` "
                  f"moves it aside and starts a fresh file")
        return 1
    with db:
        result = db.verify(load_on_gpu=args.load)
    if args.json:
        _print_json(result.to_dict())
        return 0 if result.ok else 1
    print(f"database   {result.path}{' (read-only)' if result.read_only else ''}")
    print(f"integrity  {'ok' if result.integrity_ok else 'FAILED: ' + result.integrity_message}")
    print(f"kernels    {result.kernels}, {len(result.damaged)} damaged"
          + (f", {result.unreadable} unreadable" if result.unreadable else ""))
    for key_hash in result.damaged:
        print(f"  damaged  {key_hash}: {result.reasons.get(key_hash, '')}")
    if result.load_checked:
        print(f"GPU        {result.device}: {result.loaded} loaded, {len(result.load_failures)} failed, "
              f"{result.other_targets} for other architectures")
        for failure in result.load_failures:
            print(f"  failed   {failure.key_hash[:12]} {failure.name}: {failure.message}")
    else:
        print("GPU        none: cubins not loaded")
    if result.ok:
        print("OK")
    else:
        print(f"FAILED: damaged kernels are never used (each is compiled again when needed); "
              f"`moejit db verify{_db_flag(args)} --repair` rebuilds the file from what is intact")
    return 0 if result.ok else 1


def _db_flag(args: argparse.Namespace) -> str:
    return f" --db {args.db}" if args.db is not None else ""


def _db_repair(args: argparse.Namespace, repair_file) -> int:
    result = repair_file(_db_path(args))
    if args.json:
        _print_json(result.to_dict())
        return 0
    lost = result.dropped + result.unreadable
    print(f"repaired {result.path}: {result.copied} intact kernel{'' if result.copied == 1 else 's'} and "
          f"{result.tunings} tuning result{'' if result.tunings == 1 else 's'} kept"
          + (f", {lost} damaged or unreadable dropped (compiled again when needed)" if lost else "")
          + f"; the old file is {result.moved_to}")
    return 0


def cmd_db_prune(args: argparse.Namespace) -> int:
    if args.older_than_days is None and args.max_mb is None:
        raise ValueError("db prune: expected --older-than-days N and/or --max-mb N")
    with _open_db(args, read_only=False) as db:
        removed = db.prune(max_age_days=args.older_than_days, max_mb=args.max_mb)
        left, total, path = len(db.entries()), db.total_bytes(), db.path
    if args.json:
        _print_json({"path": path, "removed": removed, "kernels": left, "total_bytes": total})
    else:
        print(f"removed {removed} kernel{'' if removed == 1 else 's'} from {path}; {left} left ({_mb(total)})")
    return 0


def cmd_db_bake(args: argparse.Namespace) -> int:
    from ..jit.bake import bake, bake_plan, default_targets
    from ..jit.kernel_db import KernelDb

    shapes = [model(m) for m in args.model] if args.model else list(MODELS.values())
    with KernelDb.open(args.path, read_only=False) as db:
        tunings = db.tunings()
    targets = args.target or default_targets(Runtime(database=None).core.nvrtc_version)
    kernels, skipped = bake_plan(shapes, targets, args.dtype, args.block_size, tunings)
    tuned = sum(1 for k in kernels if k.tuned_on)
    print(f"moejit db bake: {len(kernels)} kernels ({tuned} with tuned tiles) of {len(shapes)} model(s) for "
          f"{', '.join(targets)}, {'/'.join(args.dtype)}, blocks {'/'.join(map(str, args.block_size))} "
          f"into {os.path.abspath(args.path)}", flush=True)
    for line in skipped:
        print(f"  skipped {line}")
    report = bake(args.path, kernels, jobs=args.jobs)
    summary = {"path": report.path, "kernels": report.kernels, "compiled": report.compiled,
               "already_there": report.already_there, "failed": len(report.failed), "seconds": report.seconds,
               "size_bytes": os.path.getsize(report.path)}
    if args.json:
        _print_json(summary | {"failures": report.failed, "skipped": skipped})
    else:
        print(f"{report.kernels} kernels in {report.seconds:.1f} s: {report.compiled} compiled, "
              f"{report.already_there} already there, {len(report.failed)} failed; "
              f"{_mb(summary['size_bytes'])} in {report.path}")
        for spec_text, error in report.failed:
            print(f"  FAILED {spec_text}\n    {error.splitlines()[0]}", file=sys.stderr)
    return 1 if report.failed else 0


def cmd_db(args: argparse.Namespace) -> int:
    try:
        return args.db_func(args)
    except OSError as e:
        print(f"moejit db: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:
        message = str(e)
        if "malformed" in message or "not a database" in message or "not a usable" in message:
            # Damaged pages: say what recovers from them.
            message += (f"\nthe database is damaged: `moejit db verify{_db_flag(args)}` reports what is intact, "
                        f"`moejit db verify{_db_flag(args)} --repair` rebuilds the file from it")
        print(f"moejit db: {message}", file=sys.stderr)
        return 1


def _add_db_parser(sub) -> None:
    db = sub.add_parser("db", help="inspect and maintain a kernel database (list, show, export, import, verify, "
                                   "prune)")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", metavar="PATH", help="the database file (default: the user cache, "
                                                      "$MOEJIT_CACHE_DIR/kernels.sqlite)")
    common.add_argument("--json", action="store_true", help="machine-readable output")

    p = db_sub.add_parser("list", parents=[common], help="the stored kernels")
    p.set_defaults(db_func=cmd_db_list)
    p = db_sub.add_parser("show", parents=[common], help="one kernel: key parts, resources, source, PTX, log")
    p.add_argument("key", metavar="KEY", help="a key hash or a unique prefix of one (see `moejit db list`)")
    p.set_defaults(db_func=cmd_db_show)
    p = db_sub.add_parser("export", parents=[common], help="write a subset into a new standalone database file")
    p.add_argument("path", metavar="PATH", help="the new file (must not exist)")
    p.add_argument("--model", help="only the kernels this model's layer needs (see `moejit models`)")
    p.add_argument("--target", help="only kernels for this architecture, such as sm_90a")
    p.set_defaults(db_func=cmd_db_export)
    p = db_sub.add_parser("import", parents=[common], help="merge another database file into this one")
    p.add_argument("path", metavar="PATH", help="the database file to merge")
    p.set_defaults(db_func=cmd_db_import)
    p = db_sub.add_parser("verify", parents=[common],
                          help="check every page and every kernel's record and, with a GPU, that every cubin for "
                               "it loads (exit 1 if not)")
    p.add_argument("--repair", action="store_true",
                   help="rebuild the file from its intact kernels (the damaged file is kept beside it as "
                        "<path>.corrupt-<time>-<pid>)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--load", dest="load", action="store_const", const=True, default=None,
                       help="load every cubin for GPU 0 (error without a GPU)")
    group.add_argument("--no-load", dest="load", action="store_const", const=False,
                       help="skip loading cubins even where a GPU is present")
    p.set_defaults(db_func=cmd_db_verify)
    p = db_sub.add_parser("prune", parents=[common], help="remove old or least recently used kernels")
    p.add_argument("--older-than-days", type=float, metavar="N", help="remove kernels unused for N days")
    p.add_argument("--max-mb", type=float, metavar="N",
                   help="keep at most N megabytes, removing the least recently used first")
    p.set_defaults(db_func=cmd_db_prune)
    p = db_sub.add_parser("bake", help="compile every kernel some models need, for several GPU architectures, into "
                                       "one database file to ship (no GPU needed)")
    p.add_argument("path", metavar="PATH", help="the database file to bake into (created if missing; its kernels are "
                                                "kept, and the tiles of its tuning records are baked too)")
    p.add_argument("--model", nargs="+", metavar="NAME", help="the models (default: all of `moejit models`)")
    p.add_argument("--target", nargs="+", metavar="SM",
                   help="architectures (default: sm_80, sm_90a, and sm_100a where this NVRTC compiles for it)")
    p.add_argument("--dtype", nargs="+", choices=DTYPES, default=list(DTYPES), help="element types (default: both)")
    p.add_argument("--block-size", nargs="+", type=int, choices=BLOCK_SIZES, default=list(BLOCK_SIZES),
                   help="block sizes (default: both)")
    p.add_argument("--jobs", "-j", type=int, metavar="N", help="parallel compiles (default: one per CPU)")
    p.add_argument("--json", action="store_true", help="machine-readable summary")
    p.set_defaults(db_func=cmd_db_bake)
    db.set_defaults(func=cmd_db)


def _bench_command(args: argparse.Namespace) -> str:
    """The command line that reproduces a bench run (without --out and --json)."""
    import shlex

    parts = ["moejit", "bench", args.bench_kind]
    if args.model:
        parts += ["--model", *args.model]
    for flag, value in (("--hidden", args.hidden), ("--ffn", args.ffn), ("--experts", args.experts),
                        ("--top-k", args.top_k), ("--tokens", args.tokens)):
        if value is not None:
            parts += [flag, str(value)]
    if args.activation is not None:
        parts += ["--activation", args.activation]
    if args.glu:
        parts.append("--glu")
    parts += ["--against", args.against, "--dtype", args.dtype, "--block-size", str(args.block_size),
              "--seed", str(args.seed), "--warmup", str(args.warmup), "--reps", str(args.reps)]
    if args.rounds != 1:
        parts += ["--rounds", str(args.rounds)]
    if args.no_flush_l2:
        parts.append("--no-flush-l2")
    return shlex.join(parts)


def cmd_bench_run(args: argparse.Namespace) -> int:
    from .bench.measurement import CudaMeasurer
    from .bench.report import terminal
    from .bench.runner import default_out_dir, run_bench, write_outputs
    from .bench.systems import parse_against

    kind = args.bench_kind
    peers, notes = parse_against(args.against, kind)
    shapes = _shapes_from_args(args)
    measurer = CudaMeasurer(warmup=args.warmup, reps=args.reps, flush_l2=not args.no_flush_l2)
    if args.rounds < 1:
        raise ValueError(f"rounds={args.rounds}: expected at least one round")
    if not gpu_available():
        print(f"moejit bench {kind}: needs a CUDA GPU (and torch); `moejit bench plot` renders a results.json "
              "without one", file=sys.stderr)
        return 1
    out_dir = args.out or default_out_dir(kind)
    progress = sys.stderr if args.json else sys.stdout

    def log(line: str) -> None:
        print(line, file=progress, flush=True)

    report = run_bench(kind, shapes, peers, measurer=measurer, command=_bench_command(args), dtype=args.dtype,
                       block_size=args.block_size, seed=args.seed, notes=notes, rounds=args.rounds, log=log)
    written, file_notes = write_outputs(report, out_dir)
    if args.json:
        print(report.to_json(), end="")
    else:
        print()
        print(terminal(report))
    for note in file_notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {', '.join(written)}", file=progress)
    bad = report.failed
    broken = [(c, r) for c in report.cases for r in c.results if r.system == "moejit" and not r.timed]
    for c, r in bad:
        print(f"FAILED: {r.system} at {c.model} {c.case} disagrees with the float32 reference "
              f"({', '.join(f'{k} {v:.1e}' for k, v in r.checks.items())})", file=sys.stderr)
    for c, r in broken:
        print(f"FAILED: moejit at {c.model} {c.case}: {r.note}", file=sys.stderr)
    return 1 if bad or broken else 0


def cmd_bench_plot(args: argparse.Namespace) -> int:
    from .bench.chart import render_chart
    from .bench.results import BenchReport

    report = BenchReport.load(args.results)
    path = args.out or os.path.join(os.path.dirname(os.path.abspath(args.results)), "chart.png")
    note = render_chart(report, path)
    if note is not None:
        print(f"moejit bench plot: {note}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


def _add_bench_parser(sub) -> None:
    from .bench.systems import DEFAULT_AGAINST, PEERS

    bench = sub.add_parser("bench", help="time moejit next to its peers (kernels or the whole layer); plot results")
    bench_sub = bench.add_subparsers(dest="bench_kind", required=True)
    for kind, what in (("kernels", "the layer's three block-sparse products"),
                       ("layer", "the whole dMoE layer, forward and forward+backward")):
        p = bench_sub.add_parser(kind, help=f"{what}: moejit and each peer on the same work")
        _add_shape_arguments(p, several_models=True)
        p.add_argument("--tokens", type=_positive_int, help="tokens per step (default: each model's)")
        p.add_argument("--against", default=DEFAULT_AGAINST, metavar="PEERS",
                       help=f"comma-separated peers (default {DEFAULT_AGAINST}); for {kind}: "
                            f"{', '.join(PEERS[kind])}; those not installed are skipped with a note")
        p.add_argument("--out", metavar="DIR",
                       help="directory for results.json, results.md, chart.png (default: moejit-bench-KIND-TIME)")
        p.add_argument("--warmup", type=_non_negative_int, default=5, help="untimed calls before timing (default 5)")
        p.add_argument("--reps", type=_positive_int, default=30, help="timed calls; the median is reported (default 30)")
        p.add_argument("--rounds", type=_positive_int, default=1,
                       help="time the systems of a case in this many interleaved rounds and report the median "
                            "round (default 1); several rounds make the ratios fair when the GPU clock drifts "
                            "during a run")
        p.add_argument("--no-flush-l2", action="store_true", help="do not flush the L2 cache between timed calls")
        p.add_argument("--json", action="store_true", help="print results.json to stdout (progress to stderr)")
        p.set_defaults(func=cmd_bench_run)
    p = bench_sub.add_parser("plot", help="render chart.png from a results.json (needs matplotlib)")
    p.add_argument("results", metavar="RESULTS.json", help="a results.json written by `moejit bench`")
    p.add_argument("--out", metavar="PNG", help="the PNG to write (default: chart.png beside RESULTS.json)")
    p.set_defaults(func=cmd_bench_plot)


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors in one line naming the flag, then where help is."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: expected a positive integer")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: expected a non-negative integer")
    return value


def _add_shape_arguments(parser: argparse.ArgumentParser, several_models: bool = False) -> None:
    """The model shape (by name or by dimensions), dtype, block size and random seed."""
    if several_models:
        parser.add_argument("--model", nargs="+", metavar="NAME",
                            help=f"one or more model shapes (default {DEFAULT_MODEL}); see `moejit models`")
    else:
        parser.add_argument("--model", help=f"a model shape (default {DEFAULT_MODEL}); see `moejit models`")
    shape = parser.add_argument_group(
        "a custom layer shape (instead of --model; --hidden, --ffn, --experts and --top-k together)")
    shape.add_argument("--hidden", type=int, metavar="H", help="the model's hidden size (each token's width)")
    shape.add_argument("--ffn", type=int, metavar="F",
                       help="each expert's ffn hidden size, a multiple of --block-size")
    shape.add_argument("--experts", type=int, metavar="E", help="the number of experts")
    shape.add_argument("--top-k", type=int, metavar="K", help="experts each token is routed to (at most --experts)")
    shape.add_argument("--activation", choices=list(_core.Activation.__members__),
                       help="the experts' activation (default gelu, tanh-approximated as MegaBlocks')")
    shape.add_argument("--glu", action="store_true",
                       help="gated experts (SwiGLU-style: activation(x w1) * (x v1), a third weight matrix)")
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"],
                        help="element type of activations and weights (default bf16)")
    parser.add_argument("--block-size", type=int, default=128, choices=[64, 128],
                        help="the sparse block size: each expert's tokens and ffn columns come in blocks of it "
                             "(default 128)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random routing and data (default 0)")


_SOURCE_EXTENTS = """\
C = op(A) x op(B) is M x N with inner extent K; the extent that varies with the token count
is not compiled in and may be left out. For a dMoE layer with hidden size H, ffn size F
and E experts:
  sdd (C sparse, --trans nt): M = token rows (varies), N = E*F, K = H
  dsd (A sparse, --trans nn): M = token rows (varies), N = H, K = E*F
  dsd (A sparse, --trans tn): M = E*F, N = H, K = token rows (varies)
  dds (B sparse): M = token rows, and N, K along the sparse operand's blocks"""


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="moejit", description="JIT block-sparse kernels for dropless MoE training",
                     epilog="`moejit COMMAND --help` describes each command's flags.")
    parser.add_argument("--version", action="version", version=f"moejit {_core.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="generate and compile a model's kernels (and run them on a GPU)",
                           description="Generate and compile every kernel of a model's dMoE layer (forward and "
                                       "backward) into the kernel database; on a GPU also check each against a "
                                       "float32 reference and time it next to dense cuBLAS.")
    _add_shape_arguments(build)
    build.add_argument("--tokens", type=_positive_int, help="tokens per step for the GPU run (default: the model's)")
    build.add_argument("--target", help="compile for this architecture, such as sm_90a or sm_80 "
                                        "(default: GPU 0's, else sm_90a)")
    build.add_argument("--no-run", action="store_true", help="compile only, even where a GPU is present")
    build.add_argument("--no-measure", action="store_true",
                       help="on a GPU: load the kernels but skip the check and timing")
    build.add_argument("--show-source", action="store_true", help="print each kernel's generated source")
    build.set_defaults(func=cmd_build)

    tune = sub.add_parser("tune", help="autotune a model's kernels on this GPU into the kernel database",
                          description="Time every valid tile configuration of the layer's three block-sparse "
                                      "products on GPU 0 and store the fastest in the kernel database, per token "
                                      "bucket; later processes use it.")
    _add_shape_arguments(tune)
    tune.add_argument("--tokens", type=_positive_int, nargs="+",
                      help="tokens per step to tune at (each gives a token bucket; default: the model's)")
    tune.add_argument("--max-candidates", type=_positive_int,
                      help="time at most this many configurations per kernel (default: all)")
    tune.set_defaults(func=cmd_tune)

    source = sub.add_parser("source", help="print the generated CUDA source of one kernel",
                            description="Print the CUDA source moejit generates for one block-sparse product.",
                            epilog=_SOURCE_EXTENTS, formatter_class=argparse.RawDescriptionHelpFormatter)
    source.add_argument("--spec", help="a canonical spec text (as `moejit db list` or KernelSpec.text() print)")
    source.add_argument("--op", choices=["sdd", "dsd", "dds"],
                        help="sdd: sparse = dense x dense; dsd: dense = sparse x dense; dds: dense = dense x sparse")
    source.add_argument("--trans", help="transposes of A and B, two letters n|t such as nt (default nn)")
    source.add_argument("--m", type=_positive_int, help="rows of C (see below)")
    source.add_argument("--n", type=_positive_int, help="columns of C (see below)")
    source.add_argument("--k", type=_positive_int, help="the inner extent of the product (see below)")
    source.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"], help="element type (default bf16)")
    source.add_argument("--block-size", type=int, default=128, choices=[64, 128],
                        help="the sparse block size (default 128)")
    source.add_argument("--target", help="the architecture, such as sm_90a (default) or sm_80")
    source.add_argument("--tile", help="MxNxK.sS.wWMxWN[.cC|.cCMxCN][.pingpong] (default: heuristic)")
    source.set_defaults(func=cmd_source)

    show = sub.add_parser("show", help="a generated kernel: source, PTX, SASS, resources, tuning",
                          description="Everything about one kernel, named by --spec, by --key, or by --model "
                                      "with --op. With --section, only that text is printed (so "
                                      "`moejit show ... --section ptx > k.ptx` writes a PTX file).")
    show.add_argument("--spec", help="a canonical spec text")
    show.add_argument("--key", help="a kernel database key (or a unique prefix; see `moejit db list`)")
    show.add_argument("--db", help="the database for --key (default: the user cache)")
    show.add_argument("--model", help="a model shape, with --op (see `moejit models`)")
    show.add_argument("--op", choices=["sdd", "dsd", "dsd-t"],
                      help="the layer product, with --model: sdd (x @ w1.t()), dsd (h @ w2), "
                           "dsd-t (the weight gradients, h.t() @ x)")
    show.add_argument("--target", help="with --model: the architecture (default sm_90a); a --spec names its own")
    show.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"], help="with --model (default bf16)")
    show.add_argument("--block-size", type=int, default=128, choices=[64, 128], help="with --model (default 128)")
    show.add_argument("--section", default="all", choices=["all", "source", "ptx", "sass", "log"],
                      help="print only this text, nothing else (default: everything, with a summary)")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=cmd_show)

    doctor = sub.add_parser("doctor", help="check NVRTC, the driver, GPUs, torch and the kernel databases")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(func=cmd_doctor)

    models = sub.add_parser("models", help="list the known model shapes")
    models.set_defaults(func=cmd_models)

    _add_db_parser(sub)
    _add_bench_parser(sub)
    _name_subcommands(parser)
    return parser


def _name_subcommands(parser: argparse.ArgumentParser) -> None:
    """Every subcommand slot shows its choices, as {kernels,layer,plot}, also in the
    one-line error for a missing one."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            action.metavar = "{" + ",".join(action.choices) + "}"
            for sub in action.choices.values():
                _name_subcommands(sub)


def _concise_warning(previous):
    """warnings.showwarning that prints a MoejitWarning as its message alone (not Python's
    file, line and source line) and leaves every other warning to `previous`."""
    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, MoejitWarning):
            try:
                print(f"moejit: warning: {message}", file=file or sys.stderr)
            except OSError:
                pass
            return
        previous(message, category, filename, lineno, file, line)

    return show


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    command = " ".join(["moejit", args.command] + ([args.bench_kind] if getattr(args, "bench_kind", None) else []))
    previous = warnings.showwarning
    warnings.showwarning = _concise_warning(previous)
    try:
        status = args.func(args)
        sys.stdout.flush()
        return status
    except UsageError as e:
        hint = "" if "(see `" in str(e) else f" (see `{command} --help`)"
        print(f"{command}: {e}{hint}", file=sys.stderr)
        return 2
    except LayerShapeError as e:
        print(f"{command}: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`moejit ... | head`): stop quietly, as a tool killed by
        # SIGPIPE does, and keep the interpreter's final flush from failing again.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except (ValueError, RuntimeError) as e:
        print(f"moejit: {e}", file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = previous
