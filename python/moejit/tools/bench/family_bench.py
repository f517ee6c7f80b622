"""Both product families, and chosen wgmma tiles, on the layer's three kernels next to dense
cuBLAS and torch._grouped_mm: a GPU-host tool (not a test).

    python -m moejit.tools.bench.family_bench                              # mixtral-8x7b, qwen3-30b-a3b
    python -m moejit.tools.bench.family_bench --families wgmma \
        --tiles sdd=256x128x64.s3.w8x1 --tiles dsd_t=128x128x64.s5.w8x1.pingpong
                                                     # time these tiles next to the heuristic's
    MOEJIT_ABLATE=epilogue python -m moejit.tools.bench.family_bench --families wgmma
                                                     # the same kernels without a stage (loads,
                                                     # mma, epilogue): where the time goes

The three kernels of a dMoE layer (sdd nt, dsd nn, dsd tn) at the mixtral-8x7b and
qwen3-30b-a3b shapes (T*k routed token rows, uniform random routing), in both families
(each family's heuristic tile, and for wgmma the tiles of --tiles, by default
BENCH_TILES), next to dense cuBLAS (torch.matmul) with the same M x N x K and
torch._grouped_mm where this torch has it, in TFLOP/s; and the SASS of one kernel
(HGMMA, UTMALDG/UTMASTG expected).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback

# The wgmma tiles timed next to the heuristic's for each layer kernel (block 128).
BENCH_TILES = {
    "sdd": ["256x128x64.s3.w8x1", "128x128x64.s5.w8x1.pingpong"],
    "dsd": ["128x256x64.s3.w8x1", "128x128x64.s5.w8x1.pingpong", "64x256x64.s4.w8x1.pingpong",
            "128x256x64.s4.w8x1.c2", "128x256x64.s4.w8x1.c4", "128x256x64.s4.w8x1.c2x1"],
    "dsd_t": ["128x256x64.s3.w8x1", "128x128x64.s5.w8x1.pingpong", "64x256x64.s4.w8x1.pingpong",
              "128x256x64.s4.w8x1.c2", "128x256x64.s4.w8x1.c4", "128x256x64.s4.w8x1.c2x1"],
}


def bench(models: list[str], families: list[str], tiles: dict[str, list[str]]) -> None:
    import torch

    import moejit
    from moejit import ops
    from moejit.jit.layer_kernels import layer_kernels
    from moejit.tools.measure_layer import LayerData
    from moejit.ops.reference import compact_blocks, relative_error
    from moejit.tools.timing import median_ms, tflops

    runtime = moejit.default_runtime()
    target = runtime.target_for(0)
    for model_name in models:
        shape = moejit.model(model_name)
        print(f"\n=== {model_name}: T={shape.tokens} H={shape.hidden} F={shape.ffn} E={shape.experts} k={shape.top_k} "
              f"===", flush=True)
        data = LayerData(shape, dtype="bf16", block_size=128, seed=0, copies=2, runtime=runtime)
        topo, h_dim, f, e = data.topology, shape.hidden, shape.ffn, shape.experts
        rows = topo.rows
        executed = 2 * rows * h_dim * f   # including the padding rows the kernels compute
        useful = data.useful_flops
        padded = torch.tensor([t - s for s, t in data.ranges], device="cuda", dtype=torch.int32)
        offs = padded.cumsum(0).to(torch.int32)
        d0 = data.inputs[0]
        dt = d0["x"].dtype
        # Dense cuBLAS with each product's M x N x K (same executed FLOPs).
        dense = {
            "sdd": (torch.randn(rows, h_dim, device="cuda").to(dt), torch.randn(h_dim, f, device="cuda").to(dt)),
            "dsd": (torch.randn(rows, f, device="cuda").to(dt), torch.randn(f, h_dim, device="cuda").to(dt)),
            "dsd_t": (torch.randn(f, rows, device="cuda").to(dt), torch.randn(rows, h_dim, device="cuda").to(dt)),
        }
        dense_tf = {k: tflops(executed, median_ms(lambda a=a, b=b: a @ b)) for k, (a, b) in dense.items()}
        # torch._grouped_mm, the peer to beat, where available.
        grouped_tf = {}
        gm = getattr(torch, "_grouped_mm", None)
        if gm is not None:
            x, w1, w2, dy = d0["x"], d0["w1"], d0["w2"], d0["dy"]
            hc = compact_blocks(d0["h"].data, topo, f)
            w1g = w1.view(e, f, h_dim).transpose(1, 2)        # [E, H, F], a view
            w2g = w2.view(e, f, h_dim)                        # [E, F, H]
            calls = {
                "sdd": lambda: gm(x, w1g, offs=offs),
                "dsd": lambda: gm(hc, w2g, offs=offs),
                "dsd_t": lambda: gm(hc.t(), dy, offs=offs),
            }
            for k, fn in calls.items():
                try:
                    fn()
                    torch.cuda.synchronize()
                    grouped_tf[k] = tflops(executed, median_ms(fn))
                except Exception as exc:   # layouts this torch's grouped_mm does not take
                    grouped_tf[k] = f"n/a ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})"
        print(f"padded rows {rows} (routed {data.routed}); TFLOP/s count the executed FLOPs "
              f"2*{rows}*{h_dim}*{f} = {executed / 1e12:.3f} TFLOP (useful: {useful / 1e12:.3f})")
        header = f"{'kernel':<34} {'family':<6} {'tile':<28} {'err':>8} {'ms':>8} {'TFLOP/s':>8} {'dense':>8} " \
                 f"{'%dense':>7} {'grouped':>8}"
        print(header)
        kernels = layer_kernels(shape, target=target)
        roles = ["sdd", "dsd", "dsd_t"]
        for kernel, role in zip(kernels, roles):
            # Each family's heuristic tile (untuned), as a Hopper user gets it by default, then
            # for wgmma the tiles asked for.
            ks = kernel.spec
            runs = []
            for family in families:
                spec = moejit.kernel_spec(ks.op.name, m=ks.m, n=ks.n, k=ks.k, trans_a=ks.trans_a,
                                          trans_b=ks.trans_b, target=target, family=family)
                runs.append((family, spec.tile.text()))
                if family == "wgmma":
                    runs += [(family, t) for t in tiles.get(role, []) if t != spec.tile.text()]
            for family, tile in runs:
                spec = moejit.kernel_spec(ks.op.name, m=ks.m, n=ks.n, k=ks.k, trans_a=ks.trans_a,
                                          trans_b=ks.trans_b, target=target, family=family, tile=tile)

                def call(turn=[0], spec=spec, family=family, role=role):
                    d = data.inputs[turn[0] % len(data.inputs)]
                    turn[0] += 1
                    kw = dict(tile=spec.tile, family=family, runtime=runtime)
                    if role == "sdd":
                        return ops.sdd(d["x"], d["w1"].t(), topo, **kw).data
                    if role == "dsd":
                        return ops.dsd(d["h"], d["w2"], **kw)
                    return ops.dsd(d["h"].t(), d["dy"], **kw)

                try:
                    out = ops.sdd(d0["x"], d0["w1"].t(), topo, tile=spec.tile, family=family).data if role == "sdd" \
                        else ops.dsd(d0["h"], d0["w2"], tile=spec.tile, family=family) if role == "dsd" \
                        else ops.dsd(d0["h"].t(), d0["dy"], tile=spec.tile, family=family)
                    torch.cuda.synchronize()
                    if role == "sdd":
                        out = compact_blocks(out, topo, f)
                    err = relative_error(out, data.reference(role))
                    ms = median_ms(call)
                    tf = tflops(executed, ms)
                    g = grouped_tf.get(role, "n/a")
                    g_text = f"{g:8.1f}" if isinstance(g, float) else g
                    print(f"{spec.short_name():<34} {family:<6} {spec.tile.text():<28} {err:8.1e} {ms:8.3f} {tf:8.1f} "
                          f"{dense_tf[role]:8.1f} {100 * tf / dense_tf[role]:6.1f}% {g_text}", flush=True)
                except Exception:
                    print(f"{kernel.spec.short_name():<34} {family:<6} {tile:<28} FAILED:\n{traceback.format_exc()}",
                          flush=True)
        del data, dense
        torch.cuda.empty_cache()


def sass_check() -> None:
    import moejit

    runtime = moejit.default_runtime()
    spec = moejit.kernel_spec("dsd", n=4096, k=114688, target=runtime.target_for(0), family="wgmma")
    try:
        info = moejit.inspect(spec.text(), runtime=runtime)
        if not info.sass:
            print(f"\nSASS check skipped: no disassembler ({info.sass_note})")
            return
        sass = info.sass
        counts = {op: sass.count(op) for op in ("HGMMA", "UTMALDG", "UTMASTG", "SYNCS", "HMMA")}
        print(f"\nSASS of {spec.short_name()}: {json.dumps(counts)} "
              f"({'HGMMA present' if counts['HGMMA'] else 'NO HGMMA: the tensor cores are not driven by wgmma'})")
    except Exception as exc:
        print(f"\nSASS check skipped: {type(exc).__name__}: {exc}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mixtral-8x7b,qwen3-30b-a3b")
    parser.add_argument("--families", default="wgmma,mma", help="families to time")
    parser.add_argument("--tiles", action="append", metavar="ROLE=TILE[,TILE...]",
                        help="wgmma tiles to time for a layer kernel (ROLE: sdd, dsd, dsd_t), next to the "
                             "heuristic's; repeatable; replaces the default list (BENCH_TILES) for that role. "
                             "ROLE= with no tile times the heuristic's only")
    args = parser.parse_args()
    tiles = {role: list(t) for role, t in BENCH_TILES.items()}
    for item in args.tiles or []:
        role, sep, text = item.partition("=")
        if not sep or role not in BENCH_TILES:
            parser.error(f"--tiles {item!r}: expected ROLE=TILE[,TILE...] with ROLE one of {', '.join(BENCH_TILES)}")
        tiles[role] = [t for t in text.split(",") if t]
    import torch

    import moejit

    if not torch.cuda.is_available():
        print("no CUDA GPU: nothing to time", file=sys.stderr)
        return 2
    runtime = moejit.default_runtime()
    print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; moejit {moejit.__version__}; "
          f"NVRTC {runtime.core.nvrtc_version}; templates {runtime.core.templates_hash}"
          + (f"; ABLATED: {', '.join(runtime.ablate)} (timing only)" if runtime.ablate else ""))
    bench([m for m in args.models.split(",") if m], [f for f in args.families.split(",") if f], tiles)
    sass_check()
    return 0


if __name__ == "__main__":
    sys.exit(main())
