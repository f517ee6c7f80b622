"""Where a moejit.dMoE layer's time goes on the GPU: forward+backward under torch.profiler,
CUDA kernel time grouped by what the kernel does. Not a test: run it on a GPU machine.

    python -m moejit.tools.bench.layer_profile [--model qwen3-30b-a3b] [--tokens T] [--steps 5]
"""

import argparse
import collections

import torch

import moejit

GROUPS = [
    ("products (sdd/dsd)", ("bsr_gemm",)),
    ("routing (histogram/bins/slots)", ("expert_histogram", "expert_bins", "expert_slots")),
    ("permutation (gather/scatter)", ("padded_gather", "weighted_scatter")),
    ("activation and other elementwise", ("elementwise", "vectorized", "silu", "gelu", "mul", "unrolled")),
    ("router (gemm, softmax, top-k)", ("gemm", "nvjet", "cutlass", "softmax", "topk", "sort", "radix", "Gemm")),
]


def group_of(name: str) -> str:
    for group, keys in GROUPS:
        if any(k in name for k in keys):
            return group
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen3-30b-a3b")
    parser.add_argument("--tokens", type=int)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    shape = moejit.model(args.model)
    tokens = args.tokens or shape.tokens
    layer = moejit.dMoE(shape.hidden, shape.ffn, shape.experts, shape.top_k, activation=shape.activation,
                        glu=shape.glu, device="cuda")
    x = torch.randn(tokens, shape.hidden, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    grad = torch.randn_like(x)
    def step() -> None:
        # A training step starts without gradients (optimizer.zero_grad(set_to_none=True)):
        # otherwise every parameter gradient adds an accumulation kernel.
        x.grad = None
        for p in layer.parameters():
            p.grad = None
        layer(x).backward(grad)

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(args.steps):
            step()
        torch.cuda.synchronize()
    per_group = collections.defaultdict(float)
    per_kernel = collections.defaultdict(lambda: [0.0, 0])
    for event in prof.key_averages():
        if event.device_time_total <= 0:
            continue
        per_group[group_of(event.key)] += event.device_time_total / args.steps
        entry = per_kernel[event.key]
        entry[0] += event.device_time_total / args.steps
        entry[1] += event.count // args.steps
    total = sum(per_group.values())
    print(f"{shape.describe()} ({tokens} tokens): {total / 1000:.3f} ms of CUDA kernels per forward+backward")
    for group, us in sorted(per_group.items(), key=lambda kv: -kv[1]):
        print(f"  {group:<36} {us / 1000:8.3f} ms  {100 * us / total:5.1f}%")
    print("top kernels:")
    for name, (us, count) in sorted(per_kernel.items(), key=lambda kv: -kv[1][0])[:15]:
        print(f"  {us / 1000:8.3f} ms  x{count:<3} {name[:110]}")


if __name__ == "__main__":
    main()
