"""What the expert-parallel exchange's one host read of the counts costs: a one-GPU timing.

    python tests/gpu/expert_parallel_sync.py [--models mixtral-8x7b qwen3-30b-a3b] [--iters 30]

all_to_all_single takes its split sizes as host integers, so an expert-parallel call reads
the exchanged counts on the host once (docs/expert-parallel.md). On one GPU this times, at
each model's tokens per GPU, with CUDA events (median of --iters calls after warm-up):

  local         the single-GPU layer's path: router, top-k, moejit.route and the expert
                kernels, forward and forward+backward (no host synchronisation anywhere)
  local + read  the same with the exchange's read inserted where the exchange makes it
                (after the router and the counts): the host waits for the GPU to drain,
                then launches the rest, so the GPU idles for one round trip plus launches
  exchange      expert_parallel_moe with a one-rank NCCL group (the read, the record sort,
                packing, NCCL's copies to itself, the expand and combine) on the kernels

and prints the stall (local + read - local) in us and as a share of the layer's time, and
the exchange's overhead on one GPU (exchange - local). The read is worth removing only if
the stall is a visible share of the layer's time: the alternatives are an exchange padded
to the worst case (every rank sends every other rank its whole capacity: world-size times
the rows) or device-side split sizes (NVSHMEM-style all_to_all_vdev, not in NCCL's or gloo's
all_to_all), both of which cost more than a few microseconds per layer.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from expert_parallel_one_rank import one_rank_layer, one_rank_nccl_group
from moejit.layer.expert_parallel import expert_parallel_moe


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["mixtral-8x7b", "qwen3-30b-a3b"])
    p.add_argument("--tokens", type=int, help="tokens (default: the model's per-GPU count)")
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    return p.parse_args(argv)


def timed(fn, iters, warmup):
    """Median milliseconds of fn() between CUDA events on the current stream (idle gaps
    while the host waits are included: the events bracket the whole call)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main(argv=None):
    args = parse_args(argv)
    with one_rank_nccl_group() as group:
        print("| model | tokens | pass | local ms | local + read ms | stall us | stall share | "
              "exchange (1 rank) ms | exchange overhead ms |")
        print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
        for name in args.models:
            shape, layer, sharding = one_rank_layer(name, group)
            tokens = args.tokens or shape.tokens
            x = torch.randn(tokens, shape.hidden, device="cuda", dtype=layer.w1.dtype)
            grad = torch.randn_like(x)

            def local(read, backward):
                xi = x.detach().requires_grad_(backward)
                _, weights, indices = layer.route(xi)
                if read:   # what the exchange reads: the assignments per expert
                    flat = indices.reshape(-1)
                    torch.zeros(shape.experts, dtype=torch.int64, device="cuda").index_add_(
                        0, flat, torch.ones_like(flat)).tolist()
                y, _ = layer._experts(xi, weights, indices, shape.experts, layer._expert_weights())
                if backward:
                    y.backward(grad)

            def exchange(backward):
                xi = x.detach().requires_grad_(backward)
                _, weights, indices = layer.route(xi)
                y, _, _ = expert_parallel_moe(xi, weights, indices, layer._local_experts, layer._expert_weights(),
                                              sharding)
                if backward:
                    y.backward(grad)

            for backward in (False, True):
                with torch.enable_grad() if backward else torch.no_grad():
                    plain = timed(lambda: local(False, backward), args.iters, args.warmup)
                    read = timed(lambda: local(True, backward), args.iters, args.warmup)
                    ep = timed(lambda: exchange(backward), args.iters, args.warmup)
                stall = read - plain
                print(f"| {name} | {tokens} | {'fwd+bwd' if backward else 'fwd'} | {plain:.3f} | {read:.3f} | "
                      f"{stall * 1000:.1f} | {stall / plain:.1%} | {ep:.3f} | {ep - plain:.3f} |", flush=True)


if __name__ == "__main__":
    main()
