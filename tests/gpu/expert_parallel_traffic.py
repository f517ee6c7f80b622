"""Bytes per token of the expert-parallel exchange: the model against the layer's counters.

    python tests/gpu/expert_parallel_traffic.py [--tokens 512] [--worlds 2 4 8] [--markdown PATH]

Runs on the CPU (gloo, W processes per world size, the plain-PyTorch ReferenceMoE in
bfloat16 with a tiny ffn: the exchange does not depend on it) at each model's hidden size,
expert count and top-k, with uniform random routing (top_k distinct experts per token). For
each model and world size it prints, per token and in one direction of the dispatch:

  - the rows a token costs, from the model under uniform routing (moejit.layer.exchange_traffic:
    once per other destination rank, and once per expert as an exchange per assignment
    sends), and from the layer's counters (ExchangeTraffic.rows_sent, all ranks' sum over
    all tokens) and the per-assignment count of the same routing;
  - the same in bytes (rows x hidden x 2 bytes);
  - the whole forward's bytes per token leaving a rank (dispatch with its metadata, and the
    combine's rows back), from the counters.
No GPU is needed; the numbers are exact counts, not timings.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

MODELS = {   # name: (hidden, experts, top_k)
    "mixtral-8x7b": (4096, 8, 2),
    "qwen3-30b-a3b": (2048, 128, 8),
}


def _rank(rank, world, store, model, tokens, queue):
    import moejit
    from moejit.layer.exchange_traffic import per_assignment_dispatch_rows

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    hidden, experts, top_k = MODELS[model]
    layer = moejit.ReferenceMoE(hidden, 8, experts, top_k, dtype=torch.bfloat16,
                                expert_parallel_group=dist.group.WORLD)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0.0, 0.02)
    gen = torch.Generator().manual_seed(1000 * world + rank)
    indices = torch.rand(tokens, experts, generator=gen).argsort(dim=1)[:, :top_k]
    x = torch.randn(tokens, hidden, generator=gen).to(torch.bfloat16)
    with torch.no_grad():
        layer(x, expert_indices=indices)
    t = layer.exchange_traffic
    per_rank = experts // world
    queue.put((rank, dict(rows_sent=t.rows_sent, per_assignment=per_assignment_dispatch_rows(indices, rank, per_rank),
                          bytes_sent=t.bytes_sent, dispatch_bytes=t.dispatch_bytes_sent, tokens=tokens)))
    dist.barrier()
    dist.destroy_process_group()


def measure(model, world, tokens):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        procs = [ctx.Process(target=_rank, args=(r, world, os.path.join(tmp, "store"), model, tokens, queue))
                 for r in range(world)]
        for p in procs:
            p.start()
        results = [queue.get(timeout=600) for _ in procs]
        for p in procs:
            p.join()
        if any(p.exitcode != 0 for p in procs):
            sys.exit(f"{model} on {world} ranks: a rank failed")
    return {key: sum(r[key] for _, r in results) for key in results[0][1]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=512, help="tokens per rank")
    p.add_argument("--worlds", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--markdown", help="also write the table there")
    args = p.parse_args(argv)
    from moejit.layer.exchange_traffic import expected_dispatch_rows_per_token

    lines = ["| model | ranks | rows/token model (once per rank) | rows/token counters | "
             "rows/token model (once per expert) | rows/token per-assignment, same routing | "
             "dispatch bytes/token before -> after (counters) | forward bytes/token sent (counters) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for model, (hidden, experts, top_k) in MODELS.items():
        for world in args.worlds:
            new, old = expected_dispatch_rows_per_token(experts, top_k, world)
            m = measure(model, world, args.tokens)
            n = m["tokens"]
            row_bytes = hidden * 2
            lines.append(f"| {model} | {world} | {new:.3f} | {m['rows_sent'] / n:.3f} | {old:.3f} | "
                         f"{m['per_assignment'] / n:.3f} | {m['per_assignment'] * row_bytes / n:.0f} -> "
                         f"{m['dispatch_bytes'] / n:.0f} | {m['bytes_sent'] / n:.0f} |")
            print(lines[-1], flush=True)
    table = "\n".join(lines)
    print()
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
