"""Interleaved A/B timing of layer products: tiles, or template trees, next to dense cuBLAS.
Not a test: run it on a GPU machine to decide whether a kernel change pays.

    python -m moejit.tools.bench.tile_ab --variant dsd_t=128x256x64.s4.w8x1 \\
        --variant dsd_t=128x256x64.s4.w8x1@/path/to/old/templates [--models qwen3-30b-a3b] [--rounds 7]

A variant is ROLE=TILE[@TEMPLATES]: a product of the layer (sdd, dsd or dsd_t, see
moejit.tools.measure_layer.LayerData), a tile, and optionally another template tree (a copy of
templates/ from another commit; its kernels must keep this runtime's parameter layout
and shared-memory count, which the generated source checks). Without @TEMPLATES a
variant uses the installed package's templates (or $MOEJIT_TEMPLATES_DIR), not this
checkout's. Every variant is first checked against the float32 reference. Then each
round times dense cuBLAS and every variant of a role once, in an order rotated by one
each round, and the report gives each variant's median time and its median ratio to the
same round's dense time: on an H200 the clock drifts by up to 10% within a minute, so
only ratios taken side by side compare.

The dense product has the products' M x N x K over the padded rows, the work the kernels
do; `moejit bench` counts only the routed tokens' FLOPs, so its ratios to dense are lower
by the padding (about 6% at qwen3-30b-a3b).
"""

import argparse
import statistics

import torch

import moejit
from moejit.tools.bench.flops import kernel_extents
from moejit.tools.measure_layer import LayerData
from moejit.tools.timing import median_ms, tflops


ROLES = ("sdd", "dsd", "dsd_t")   # the layer's products (moejit.tools.bench.flops.kernel_extents)


def parse_variant(text: str) -> tuple[str, str, str | None]:
    role, sep, spec = text.partition("=")
    tile, _, templates = spec.partition("@")
    if not sep or role not in ROLES or not tile:
        raise SystemExit(f"--variant {text!r}: expected ROLE=TILE[@TEMPLATES] with ROLE one of {', '.join(ROLES)}")
    return role, tile, templates or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", required=True, help="ROLE=TILE[@TEMPLATES] (repeatable)")
    parser.add_argument("--models", default="mixtral-8x7b,qwen3-30b-a3b", help="comma-separated model shapes")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=20, help="timed calls per measurement (median)")
    args = parser.parse_args()
    variants = [parse_variant(v) for v in args.variant]
    runtimes = {None: moejit.default_runtime()}
    for templates in {t for _, _, t in variants if t is not None}:
        runtimes[templates] = moejit.Runtime(templates_dir=templates)

    for model in args.models.split(","):
        shape = moejit.model(model)
        data = LayerData(shape, runtime=runtimes[None], verbose=False)
        for role in dict.fromkeys(r for r, _, _ in variants):
            m, n, k = kernel_extents(role, data.topology.rows, shape.hidden, shape.ffn)
            a = torch.randn(m, k, device="cuda").bfloat16()
            b = torch.randn(k, n, device="cuda").bfloat16()
            calls = {"dense": lambda: a @ b}
            for r, tile, templates in variants:
                if r != role:
                    continue
                label = tile + (f"@{templates}" if templates else "")
                if label in calls:
                    raise SystemExit(f"--variant {role}={label} is given twice")

                def call(data=data, role=role, tile=tile, runtime=runtimes[templates]):
                    data.runtime = runtime
                    return data.run(role, tile)

                data.runtime = runtimes[templates]
                try:
                    error = data.error(role, tile)
                except (RuntimeError, ValueError) as exc:
                    print(f"{model} {role} {label}: FAILED {type(exc).__name__}: {str(exc)[:300]}", flush=True)
                    continue
                print(f"{model} {role} {label}: relative error {error:.1e}", flush=True)
                calls[label] = call
            times: dict[str, list[float]] = {name: [] for name in calls}
            names = list(calls)
            for r in range(args.rounds):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    times[name].append(median_ms(calls[name], reps=args.reps))
            for name in names:
                ratio = statistics.median(d / t for d, t in zip(times["dense"], times[name]))
                ms = statistics.median(times[name])
                print(f"{model:14s} {role:6s} {name:44s} {ms:7.3f} ms {tflops(2 * m * n * k, ms):6.1f} TFLOP/s  "
                      f"x dense {ratio:.3f}  rounds {' '.join(f'{t:.3f}' for t in times[name])}", flush=True)
        data.runtime = runtimes[None]
        del data
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
