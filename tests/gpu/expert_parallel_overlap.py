"""Does the expert-parallel exchange overlap the expert computation? A one-GPU profile.

    python tests/gpu/expert_parallel_overlap.py [--model qwen3-30b-a3b] [--tokens 16384] [--chunks 1 4]

One process, a one-rank NCCL group (no torchrun): the exchange of moejit.layer.expert_parallel
runs with itself on moejit's kernels (NCCL copies each part's rows to the same GPU with its
own kernels, on its own stream), exactly as on several GPUs minus the link. For each
--chunks value it profiles --iters forward+backward calls with torch.profiler (CUDA
activity), then reads the trace's GPU kernels and prints:

  - every interval where a communication kernel (NCCL's, or a copy on NCCL's stream) and a
    computation kernel (anything else) run at the same time: start (us from the first
    kernel), length, the two kernels and their streams;
  - per call: communication time, the part of it overlapped by computation, and the
    fraction; then OVERLAP: yes (some communication ran during computation) or no.

With --chunks 1 nothing can overlap (each step needs the previous one's data); with more,
part c+1's dispatch and part c-1's combine should run under part c's experts, forward and
backward. The Chrome trace of each run is written beside --out (open in Perfetto).
"""

from __future__ import annotations

import argparse
import json

import torch

from expert_parallel_one_rank import one_rank_layer, one_rank_nccl_group
from moejit.layer.expert_parallel import expert_parallel_moe


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="qwen3-30b-a3b", help="a moejit.zoo model")
    p.add_argument("--tokens", type=int, default=16384)
    p.add_argument("--chunks", type=int, nargs="+", default=[1, 4])
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--out", default="expert_parallel_overlap", help="trace file prefix")
    return p.parse_args(argv)


def kernels(trace_path):
    """GPU kernels and copies of a Chrome trace: (start us, end us, name, stream)."""
    with open(trace_path) as f:
        events = json.load(f)["traceEvents"]
    found = []
    for e in events:
        if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset"):
            stream = e.get("args", {}).get("stream", e.get("tid"))
            found.append((float(e["ts"]), float(e["ts"]) + float(e["dur"]), e["name"], stream))
    return sorted(found)


def split_communication(found):
    """(communication, computation): NCCL's kernels, and anything on a stream NCCL uses."""
    nccl_streams = {s for _, _, name, s in found if "nccl" in name.lower()}
    communication = [k for k in found if "nccl" in k[2].lower() or k[3] in nccl_streams]
    computation = [k for k in found if k not in communication]
    return communication, computation


def overlaps(communication, computation):
    """Every (start, length, communication kernel, computation kernel) where both run."""
    out = []
    for c0, c1, cname, cstream in communication:
        for k0, k1, kname, kstream in computation:
            if k0 >= c1:
                break   # computation is sorted by start
            start, end = max(c0, k0), min(c1, k1)
            if end > start:
                out.append((start, end - start, f"{cname[:60]} [stream {cstream}]", f"{kname[:60]} [stream {kstream}]"))
    return out


def covered(intervals):
    """Total length of the union of (start, end) intervals."""
    total, last = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > last:
            total += end - max(start, last)
            last = end
    return total


def profile(layer, x, weights, indices, sharding, chunks, iters, trace_path):
    grad = torch.randn_like(x)

    def call():
        xi, wi = x.clone().requires_grad_(), weights.clone().requires_grad_()
        y, _, _ = expert_parallel_moe(xi, wi, indices, layer._local_experts, layer._expert_weights(), sharding,
                                      chunks=chunks)
        y.backward(grad)

    for _ in range(3):
        call()
    torch.cuda.synchronize()
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(iters):
            call()
        torch.cuda.synchronize()
    prof.export_chrome_trace(trace_path)
    return kernels(trace_path)


def main(argv=None):
    args = parse_args(argv)
    with one_rank_nccl_group() as group:
        shape, layer, sharding = one_rank_layer(args.model, group)
        x = torch.randn(args.tokens, shape.hidden, device="cuda", dtype=layer.w1.dtype)
        with torch.no_grad():
            _, weights, indices = layer.route(x)
        print(f"{shape.describe()}; {args.tokens} tokens, one NCCL rank, forward+backward x {args.iters}")
        any_overlap = False
        for chunks in args.chunks:
            path = f"{args.out}-chunks{chunks}.json"
            found = profile(layer, x, weights, indices, sharding, chunks, args.iters, path)
            communication, computation = split_communication(found)
            both = overlaps(communication, computation)
            origin = found[0][0] if found else 0.0
            comm_time = covered([(a, b) for a, b, _, _ in communication])
            overlapped = covered([(s, s + d) for s, d, _, _ in both])
            print(f"\nchunks={chunks}: {len(communication)} communication and {len(computation)} computation "
                  f"kernels; trace {path}")
            for start, length, comm, comp in both[:40]:
                print(f"  {start - origin:10.1f} us  {length:8.1f} us  {comm}  ||  {comp}")
            if len(both) > 40:
                print(f"  ... {len(both) - 40} more overlapping intervals")
            fraction = overlapped / comm_time if comm_time else 0.0
            print(f"  per call: communication {comm_time / args.iters:.1f} us, overlapped by computation "
                  f"{overlapped / args.iters:.1f} us ({fraction:.0%})")
            any_overlap |= chunks > 1 and overlapped > 0
        print(f"\nOVERLAP: {'yes' if any_overlap else 'no'}")


if __name__ == "__main__":
    main()
