"""One call of each layer product next to its peers, for a profiler: the moejit kernel,
dense cuBLAS with the same M x N x K over the padded rows, and torch._grouped_mm over the
routed tokens. Not a test: run it on a GPU machine under Nsight Compute, which then sees
only the calls inside the profiled region (warm-up and checks stay outside it):

    ncu --profile-from-start off --clock-control none --section SpeedOfLight \\
        python -m moejit.tools.bench.kernel_profile [--models mixtral-8x7b] [--roles dsd,dsd_t] [--tile T]

Each call is checked against the float32 reference first, so a profile is never one of
a wrong kernel.

With --sustain SECONDS it instead runs each call back to back for that long while
nvidia-smi samples the SM clock and the board's power, and reports per call the median
time, clock and power of the second half of its window: whether a kernel is slower in
cycles or runs at a lower clock (the H200 holds its power limit by lowering the clock,
so a kernel that draws more power per FLOP runs slower at the same cycle count).
"""

import argparse
import statistics
import subprocess
import tempfile
import time

import torch

import moejit
from moejit.tools.bench.flops import kernel_extents
from moejit.tools.bench.kernel_peers import KernelOperands, kernel_peer
from moejit.tools.bench.token_layout import TokenLayout
from moejit.tools.measure_layer import LayerData

ROLES = ("sdd", "dsd", "dsd_t")


def role_tile(flag: str, text: str) -> tuple[str, str]:
    """ROLE=TILE of a command-line flag."""
    role, sep, tile = text.partition("=")
    if not sep or role not in ROLES or not tile:
        raise SystemExit(f"{flag} {text!r}: expected ROLE=TILE with ROLE one of {', '.join(ROLES)}")
    return role, tile


def sustained(call, seconds: float) -> tuple[float, float, float]:
    """(ms per call, SM MHz, watts): medians over the second half of `seconds` of calls."""
    with tempfile.NamedTemporaryFile("w+", suffix=".csv") as log:
        smi = subprocess.Popen(["nvidia-smi", "--query-gpu=timestamp,clocks.sm,power.draw",
                                "--format=csv,noheader,nounits", "-lms", "50"], stdout=log)
        try:
            start = time.perf_counter()
            times = []
            while time.perf_counter() - start < seconds:
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                begin.record()
                for _ in range(10):
                    call()
                end.record()
                end.synchronize()
                times.append(begin.elapsed_time(end) / 10)
        finally:
            smi.terminate()
            smi.wait()
        log.seek(0)
        # Lines of three fields whose clock and power are numbers ("[N/A]" on some boards).
        samples = [f for f in (line.split(",") for line in log.read().splitlines())
                   if len(f) == 3 and all(x.strip().replace(".", "", 1).isdigit() for x in f[1:])]
    samples = samples[len(samples) // 2:]
    if not samples:
        raise SystemExit("nvidia-smi gave no samples of the clock and power")
    return (statistics.median(times[len(times) // 2:]), statistics.median(float(s[1]) for s in samples),
            statistics.median(float(s[2]) for s in samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mixtral-8x7b,qwen3-30b-a3b")
    parser.add_argument("--roles", default="dsd,dsd_t")
    parser.add_argument("--tile", action="append", help="ROLE=TILE (default: the runtime's choice)")
    parser.add_argument("--also", action="append",
                        help="ROLE=TILE[@TEMPLATES]: another moejit tile to run beside, optionally from another "
                        "template tree (as in tile_ab.py)")
    parser.add_argument("--no-peers", action="store_true", help="profile only the moejit kernels")
    parser.add_argument("--ablate", help="compile the moejit kernels without these stages (MOEJIT_ABLATE: "
                        "loads, mma, epilogue): their results are wrong, so they are not checked")
    parser.add_argument("--sustain", type=float, metavar="SECONDS",
                        help="run each call this long, sampling clock and power, instead of once")
    args = parser.parse_args()
    roles = args.roles.split(",")
    for role in roles:
        if role not in ROLES:
            raise SystemExit(f"--roles {args.roles!r}: expected a comma-separated subset of {', '.join(ROLES)}")
    tiles = dict(role_tile("--tile", text) for text in args.tile or [])
    also = []   # (role, tile, template tree or None)
    for text in args.also or []:
        role, tile = role_tile("--also", text)
        tile, _, templates = tile.partition("@")
        also.append((role, tile, templates or None))

    runtime = moejit.default_runtime()
    # One runtime per other template tree, made once: each compiles and caches its kernels.
    other_runtimes = {t: moejit.Runtime(templates_dir=t, ablate=args.ablate) for _, _, t in also if t is not None}
    for model in args.models.split(","):
        shape = moejit.model(model)
        data = LayerData(shape, runtime=runtime, verbose=True)
        if args.ablate:   # the operands come from whole kernels, the timed products do not
            data.runtime = moejit.Runtime(ablate=args.ablate)
        grouped_mm = None
        if not args.no_peers:
            layout = TokenLayout.from_counts(data.counts, data.topology.block_size)
            grouped_mm = kernel_peer("grouped_mm", KernelOperands.from_layer_data(data, layout))
        for role in roles:
            tile = tiles.get(role)
            error = 0.0 if args.ablate else data.error(role, tile)
            print(f"{model} {role} {tile or 'default tile'}: relative error {error:.1e}", flush=True)
            if not error < 2e-2:
                raise SystemExit(f"{model} {role}: relative error {error:.1e}, not profiling a wrong kernel")
            calls = [("moejit", lambda: data.run(role, tile))]
            own_runtime = data.runtime
            for other_role, other_tile, templates in also:
                if other_role == role:
                    label = other_tile + (f"@{templates}" if templates else "")
                    other_runtime = other_runtimes[templates] if templates else own_runtime

                    def other_call(t=other_tile, r=other_runtime):
                        data.runtime = r
                        try:
                            return data.run(role, t)
                        finally:
                            data.runtime = own_runtime

                    data.runtime = other_runtime
                    try:
                        error = 0.0 if args.ablate else data.error(role, other_tile)
                    finally:
                        data.runtime = own_runtime
                    print(f"{model} {role} {label}: relative error {error:.1e}", flush=True)
                    if not error < 2e-2:
                        raise SystemExit(f"{model} {role} {label}: relative error {error:.1e}")
                    calls.append((label, other_call))
            if not args.no_peers:
                m, n, k = kernel_extents(role, data.topology.rows, shape.hidden, shape.ffn)
                a = torch.randn(m, k, device="cuda").bfloat16()
                b = torch.randn(k, n, device="cuda").bfloat16()
                calls += [("dense", lambda: a @ b), ("grouped_mm", lambda: grouped_mm.run(role))]
            for _, call in calls:   # warm: handles, heuristics, compilation
                call()
            torch.cuda.synchronize()
            if args.sustain:   # two rounds, so a drift of the card's state shows
                for name, call in calls + calls:
                    ms, mhz, watts = sustained(call, args.sustain)
                    print(f"{model:14s} {role:6s} {name:28s} {ms:7.3f} ms  {mhz:5.0f} MHz  {watts:4.0f} W  "
                          f"{ms * mhz:7.0f} kcycles", flush=True)
                continue
            for name, call in calls:
                torch.cuda.nvtx.range_push(f"{model}/{role}/{name}")
                torch.cuda.cudart().cudaProfilerStart()
                call()
                torch.cuda.synchronize()
                torch.cuda.cudart().cudaProfilerStop()
                torch.cuda.nvtx.range_pop()
                print(f"profiled {model} {role} {name}", flush=True)
        data = grouped_mm = None   # free the model's operands before the next
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
