"""The `moejit` command line (also `python -m moejit`).

  moejit build  --model NAME | --hidden H --ffn F --experts E --top-k K
      generate and compile every kernel the model's dMoE layer needs (forward and
      backward); where a GPU is present, also run each one on random routing, check it
      against a float32 reference and time it next to dense cuBLAS with the same FLOPs.
  moejit source --op sdd --trans nt --n 114688 --k 4096 [...] | --spec "<spec text>"
      print the CUDA source generated for one kernel.
  moejit models
      list the model shapes moejit knows.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional, Sequence

from . import _core
from .layer_kernels import layer_kernels
from .runtime import Runtime
from .specs import kernel_spec
from .zoo import DEFAULT_MODEL, MODELS, ModelShape, model


def _shape_from_args(args: argparse.Namespace) -> ModelShape:
    explicit = [args.hidden, args.ffn, args.experts, args.top_k]
    if any(v is not None for v in explicit):
        if args.model is not None:
            raise SystemExit("moejit: give either --model or --hidden/--ffn/--experts/--top-k, not both")
        if any(v is None for v in explicit):
            raise SystemExit("moejit: explicit dimensions need all of --hidden, --ffn, --experts and --top-k")
        return ModelShape("custom", args.hidden, args.ffn, args.experts, args.top_k, args.tokens or 16384,
                          "gelu", False)
    shape = model(args.model or DEFAULT_MODEL)
    if args.tokens is not None:
        shape = ModelShape(**{**shape.__dict__, "tokens": args.tokens})
    return shape


def _gpu_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def cmd_build(args: argparse.Namespace) -> int:
    shape = _shape_from_args(args)
    runtime = Runtime()
    run = _gpu_available() and not args.no_run
    if args.target:
        target = _core.Target(args.target)
    elif run:
        target = runtime.target_for(0)
    else:
        target = _core.Target("sm_90a")
    print(f"moejit build: {shape.describe()}")
    print(f"target {target.text()}, dtype {args.dtype}, block {args.block_size}, NVRTC {runtime.core.nvrtc_version} "
          f"({runtime.core.nvrtc_path})")
    kernels = layer_kernels(shape, target=target, dtype=args.dtype, block_size=args.block_size)
    rows = []
    start = time.perf_counter()
    for i, kernel in enumerate(kernels, 1):
        print(f"[{i}/{len(kernels)}] compiling {kernel.spec.short_name()} ...", flush=True)
        compiled = runtime.compile(kernel.spec)
        r = compiled.resources
        rows.append([kernel.spec.short_name(), kernel.spec.tile.text(), r.registers, compiled.dynamic_shared_bytes,
                     r.spill_store_bytes + r.spill_load_bytes, f"{compiled.compile_ms:.0f}", "; ".join(kernel.uses)])
    print()
    _print_table(["kernel", "tile", "regs", "smem", "spill", "compile ms", "computes"], rows)
    print(f"\n{len(kernels)} kernels compiled in {time.perf_counter() - start:.1f} s")
    if args.show_source:
        for kernel in kernels:
            print(f"\n// ---- {kernel.spec.short_name()} ----")
            print(_core.generate_source(kernel.spec).source, end="")
    if not run:
        if not args.no_run:
            print("no GPU found: kernels were compiled, not run")
        return 0
    if target != runtime.target_for(0):
        print(f"target {target.text()} does not match GPU 0 ({runtime.target_for(0).text()}): not running")
        return 0
    from .measure_layer import measure_layer_kernels

    results = measure_layer_kernels(shape, kernels, dtype=args.dtype, runtime=runtime, seed=args.seed)
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


def cmd_models(args: argparse.Namespace) -> int:
    _print_table(["model", "hidden", "ffn", "experts", "top-k", "tokens", "activation"],
                 [[s.name, s.hidden, s.ffn, s.experts, s.top_k, s.tokens, s.activation + (" GLU" if s.glu else "")]
                  for s in MODELS.values()])
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moejit", description="JIT block-sparse kernels for dropless MoE training")
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="generate and compile a model's kernels (and run them on a GPU)")
    build.add_argument("--model", help=f"a model shape (default {DEFAULT_MODEL}); see `moejit models`")
    build.add_argument("--hidden", type=int)
    build.add_argument("--ffn", type=int)
    build.add_argument("--experts", type=int)
    build.add_argument("--top-k", type=int)
    build.add_argument("--tokens", type=int, help="tokens per step for the GPU run")
    build.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"])
    build.add_argument("--block-size", type=int, default=128, choices=[64, 128])
    build.add_argument("--target", help="compile for this architecture (default: the GPU's, else sm_90a)")
    build.add_argument("--no-run", action="store_true", help="compile only, even where a GPU is present")
    build.add_argument("--show-source", action="store_true", help="print each kernel's generated source")
    build.add_argument("--seed", type=int, default=0)
    build.set_defaults(func=cmd_build)

    source = sub.add_parser("source", help="print the generated CUDA source of one kernel")
    source.add_argument("--spec", help="a canonical spec text")
    source.add_argument("--op", choices=["sdd", "dsd", "dds"])
    source.add_argument("--trans", help="transposes of A and B, such as nt")
    source.add_argument("--m", type=int)
    source.add_argument("--n", type=int)
    source.add_argument("--k", type=int)
    source.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"])
    source.add_argument("--block-size", type=int, default=128)
    source.add_argument("--target")
    source.add_argument("--tile", help="MxNxK.sS.wWMxWN (default: heuristic)")
    source.set_defaults(func=cmd_source)

    models = sub.add_parser("models", help="list the known model shapes")
    models.set_defaults(func=cmd_models)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError) as e:
        print(f"moejit: {e}", file=sys.stderr)
        return 1
