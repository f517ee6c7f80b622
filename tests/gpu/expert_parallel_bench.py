"""Expert parallelism on several GPUs: numerics against the single-GPU layer, then time.

    torchrun --standalone --nproc-per-node 8 tests/gpu/expert_parallel_bench.py --model mixtral-8x7b
    python tests/gpu/expert_parallel_bench.py --device cpu --hidden 64 --ffn 128 --experts 8  # no torchrun: 1 rank

Every rank of the (NCCL, or gloo with --device cpu) group holds experts/W experts of one
moejit.dMoE (--device cpu: the plain-PyTorch ReferenceMoE in float32, to test this script
without a GPU).

1. Numerics. Rank 0 builds a layer holding every expert and broadcasts its state; each rank
   loads its shard (moejit.load_expert_shard). Each rank routes --check-tokens tokens of its
   own (the router is replicated), runs forward and backward, and the tokens, routing,
   cotangents, outputs and gradients are gathered on rank 0, which runs the single-GPU
   layer on all of them with the same routing and compares: output, input gradient, every
   expert's weight gradients, and the router's and bias's gradients summed over ranks (the
   layer leaves that sum to data parallelism). The relative errors (||a-b|| / ||b||) must
   stay under --tolerance (bf16 default 2e-2: both sides round the same products, in a
   different order).
2. Time. --tokens tokens per GPU (default: the model's per-GPU count from moejit.zoo),
   routed by the layer's own router; forward and forward+backward, --warmup calls then
   --iters timed calls, each started after a barrier; a call's time is the slowest rank's,
   and the median over calls is reported with tokens/s = W * tokens / time. With one rank
   this is the plain single-GPU layer (a group of one rank does not exchange).

Rank 0 prints one line per step and, with --json PATH, writes the result there
(tests/gpu/expert_parallel_table.py collects them into the 1/2/4/8-GPU table). The exit
status is 1 when the numerics check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.distributed as dist


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mixtral-8x7b", help="a moejit.zoo model (default mixtral-8x7b)")
    p.add_argument("--hidden", type=int, help="override the model's hidden size")
    p.add_argument("--ffn", type=int, help="override the model's ffn size per expert")
    p.add_argument("--experts", type=int, help="override the model's expert count")
    p.add_argument("--top-k", type=int, help="override the model's top-k")
    p.add_argument("--tokens", type=int, help="tokens per GPU to time (default: the model's)")
    p.add_argument("--check-tokens", type=int, default=1024, help="tokens per GPU of the numerics check")
    p.add_argument("--tolerance", type=float, help="relative error allowed (default bf16 2e-2, cpu float32 1e-4)")
    p.add_argument("--chunks", type=int, default=1, help="exchange_chunks of the layer (overlap)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cpu: gloo and the plain-PyTorch layer (tests this script without a GPU)")
    p.add_argument("--skip-check", action="store_true")
    p.add_argument("--json", help="rank 0 writes the result here")
    return p.parse_args(argv)


def init_group(device_type: str) -> None:
    """torchrun's environment when present; otherwise one rank on a private file store."""
    backend = "nccl" if device_type == "cuda" else "gloo"
    if "RANK" in os.environ:
        if device_type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    else:
        if device_type == "cuda":
            torch.cuda.set_device(0)
        store = os.path.join(tempfile.mkdtemp(prefix="moejit-ep-"), "store")
        dist.init_process_group(backend, init_method=f"file://{store}", rank=0, world_size=1)


def layer_shape(args):
    import moejit

    shape = moejit.model(args.model)
    return dict(hidden=args.hidden or shape.hidden, ffn=args.ffn or shape.ffn,
                experts=args.experts or shape.experts, top_k=args.top_k or shape.top_k,
                tokens=args.tokens or shape.tokens, activation=shape.activation, glu=shape.glu)


def make_layer(args, shape, device, group):
    """moejit.dMoE in bf16, or with --device cpu the float32 ReferenceMoE (on `device`,
    which may be "meta" for a layer that only describes the state's shapes)."""
    import moejit

    options = dict(activation=shape["activation"], glu=shape["glu"], bias=True, expert_parallel_group=group,
                   exchange_chunks=args.chunks if group is not None else 1)
    if args.device == "cpu":
        return moejit.ReferenceMoE(shape["hidden"], shape["ffn"], shape["experts"], shape["top_k"],
                                   dtype=torch.float32, device=device, **options)
    return moejit.dMoE(shape["hidden"], shape["ffn"], shape["experts"], shape["top_k"], dtype=torch.bfloat16,
                       device=device, block_size=args.block_size, init_std=0.02, **options)


def _gather_rows(t: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def check_numerics(args, shape, device) -> dict:
    """Relative errors of the expert-parallel layer against one layer holding every expert
    (on rank 0; every rank gets the result)."""
    import moejit
    from moejit.ops.reference import relative_error

    rank = dist.get_rank()
    torch.manual_seed(0)
    full = make_layer(args, shape, device, None) if rank == 0 else None
    state = {}
    template = make_layer(args, shape, torch.device("meta"), None) if rank != 0 else full
    for name, t in template.state_dict().items():
        if rank == 0:
            with torch.no_grad():   # dMoE initialises its weights; the reference's are empty
                if device.type == "cpu":
                    t.normal_(0.0, 1.0 if name == "router.weight" else 0.5)
                elif name == "bias":
                    t.normal_(0.0, 0.02)
            value = t.detach()
        else:
            value = torch.empty(t.shape, dtype=t.dtype, device=device)
        dist.broadcast(value, 0)
        state[name] = value
    ep = make_layer(args, shape, device, dist.group.WORLD)
    moejit.load_expert_shard(ep, state)
    del state

    gen = torch.Generator(device=device).manual_seed(1000 + rank)
    dtype = ep.w1.dtype
    x = torch.randn(args.check_tokens, shape["hidden"], device=device, generator=gen).to(dtype)
    cotangent = torch.randn(args.check_tokens, shape["hidden"], device=device, generator=gen).to(dtype)
    with torch.no_grad():
        if device.type == "cpu":
            indices = torch.topk(ep.router(x), shape["top_k"], dim=-1).indices
        else:
            indices = ep.route(x)[2]
    x_ep = x.clone().requires_grad_()
    y = ep(x_ep, expert_indices=indices)
    (y.float() * cotangent.float()).sum().backward()

    gathered = {name: _gather_rows(t) for name, t in
                (("x", x), ("indices", indices), ("cotangent", cotangent), ("y", y.detach()), ("dx", x_ep.grad))}
    for name in ("w1", "v1", "w2"):
        p = ep.get_parameter(name) if getattr(ep, name) is not None else None
        if p is not None:
            gathered[f"d {name}"] = _gather_rows(p.grad)
    for name in ("router.weight", "bias"):
        g = ep.get_parameter(name).grad.clone()
        dist.all_reduce(g)
        gathered[f"d {name}"] = g

    errors = {}
    if rank == 0:
        x_full = gathered["x"].clone().requires_grad_()
        y_full = full(x_full, expert_indices=gathered["indices"])
        (y_full.float() * gathered["cotangent"].float()).sum().backward()
        errors["forward"] = relative_error(gathered["y"], y_full)
        errors["d x"] = relative_error(gathered["dx"], x_full.grad)
        for name, p in full.named_parameters():
            errors[f"d {name}"] = relative_error(gathered[f"d {name}"], p.grad)
        del full, x_full, y_full
    result = [errors]
    dist.broadcast_object_list(result, 0)
    return result[0]


def _now(device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def time_layer(args, shape, device) -> dict:
    """Median over calls of the slowest rank's time, forward and forward+backward (ms)."""
    torch.manual_seed(0)
    layer = make_layer(args, shape, device, dist.group.WORLD)
    if device.type == "cpu":
        with torch.no_grad():
            for p in layer.parameters():
                p.normal_(0.0, 0.02)
    layer.train()
    gen = torch.Generator(device=device).manual_seed(2000 + dist.get_rank())
    x = torch.randn(shape["tokens"], shape["hidden"], device=device, generator=gen).to(layer.w1.dtype)
    x.requires_grad_()
    grad = torch.randn_like(x)

    def forward():
        return layer(x)

    def forward_backward():
        layer(x).backward(grad)

    times = {}
    for name, fn in (("forward", forward), ("forward+backward", forward_backward)):
        samples = []
        for i in range(args.warmup + args.iters):
            dist.barrier()
            start = _now(device)
            fn()
            elapsed = torch.tensor([_now(device) - start], dtype=torch.float64, device=device)
            dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)   # a call takes as long as its slowest rank
            if i >= args.warmup:
                samples.append(elapsed.item() * 1e3)
        layer.zero_grad(set_to_none=True)
        x.grad = None
        times[name] = statistics.median(samples)
    traffic = layer.exchange_traffic   # of the last call; None on one rank (no exchange)
    if traffic is not None:
        sums = torch.tensor([traffic.rows_sent, traffic.tokens, traffic.bytes_sent + traffic.backward_bytes_sent],
                            dtype=torch.float64, device=device)
        dist.all_reduce(sums)
        times["rows_sent_per_token"] = (sums[0] / sums[1]).item()
        times["bytes_sent_per_token"] = (sums[2] / sums[1]).item()
    return times


def main(argv=None) -> int:
    args = parse_args(argv)
    init_group(args.device)
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", torch.cuda.current_device()) if args.device == "cuda" else torch.device("cpu")
    shape = layer_shape(args)
    tolerance = args.tolerance or (2e-2 if args.device == "cuda" else 1e-4)
    result = dict(model=args.model, gpus=world, device=args.device, chunks=args.chunks, **shape,
                  experts_per_gpu=shape["experts"] // world, tolerance=tolerance)
    if rank == 0:
        print(f"expert parallelism: {world} rank(s), {args.device}, {args.model} "
              f"(hidden {shape['hidden']}, ffn {shape['ffn']}, {shape['experts']} experts, top-{shape['top_k']}), "
              f"{shape['experts'] // world} experts and {shape['tokens']} tokens per rank", flush=True)
    ok = True
    if not args.skip_check:
        errors = check_numerics(args, shape, device)
        result["errors"] = errors
        result["max_error"] = max(errors.values())
        ok = result["max_error"] <= tolerance
        if rank == 0:
            listed = ", ".join(f"{k} {v:.2e}" for k, v in errors.items())
            print(f"numerics vs the single-device layer holding every expert "
                  f"({args.check_tokens} tokens per rank): {listed} -> {'ok' if ok else 'FAILED'} "
                  f"(tolerance {tolerance:g})", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    times = time_layer(args, shape, device)
    tokens_total = shape["tokens"] * world
    result.update(forward_ms=times["forward"], forward_backward_ms=times["forward+backward"],
                  tokens_per_s=tokens_total / (times["forward+backward"] / 1e3),
                  forward_tokens_per_s=tokens_total / (times["forward"] / 1e3), numerics_ok=ok)
    if "rows_sent_per_token" in times:   # the exchange's counters, all ranks
        result.update(rows_sent_per_token=times["rows_sent_per_token"],
                      bytes_sent_per_token=times["bytes_sent_per_token"])
    if rank == 0:
        print(f"time (median of {args.iters}, slowest rank): forward {times['forward']:.3f} ms, "
              f"forward+backward {times['forward+backward']:.3f} ms, "
              f"{result['tokens_per_s']:.4g} tokens/s (forward+backward, all ranks)", flush=True)
        if "rows_sent_per_token" in result:
            print(f"exchange: {result['rows_sent_per_token']:.3f} rows per token sent to other ranks by the dispatch, "
                  f"{result['bytes_sent_per_token']:.0f} bytes per token sent forward+backward", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
    dist.barrier()
    dist.destroy_process_group()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
