"""Runs expert_parallel_bench.py with torchrun on 1, 2, 4 and 8 GPUs per model and writes
the table of layer time and tokens/s (markdown) with every run's log and JSON beside it.

    python tests/gpu/expert_parallel_table.py --out /tmp/ep                 # mixtral-8x7b, qwen3-30b-a3b
    python tests/gpu/expert_parallel_table.py --model qwen3-30b-a3b --gpus 1 2 --out DIR
    python tests/gpu/expert_parallel_table.py --device cpu --gpus 1 2 -- --hidden 32 --ffn 16  # no GPU

Arguments after "--" go to every bench run. GPU counts above the host's are skipped with
a note. The exit status is 1 when a run
fails or its numerics check does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "expert_parallel_bench.py")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", nargs="+", default=["mixtral-8x7b", "qwen3-30b-a3b"])
    p.add_argument("--gpus", nargs="+", type=int, default=[1, 2, 4, 8])
    p.add_argument("--out", default="expert-parallel-results", help="folder for the table, logs and JSON")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per run")
    argv = sys.argv[1:] if argv is None else list(argv)
    bench_args = argv[argv.index("--") + 1:] if "--" in argv else []
    args = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.bench_args = bench_args
    return args


def available_gpus(device: str) -> int:
    if device == "cpu":
        return 1 << 30
    import torch

    return torch.cuda.device_count()


def run_one(args, model: str, gpus: int) -> tuple[dict | None, str]:
    stem = os.path.join(args.out, f"{model}-{gpus}gpu")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(gpus), BENCH,
               "--model", model, "--device", args.device, "--json", stem + ".json", *args.bench_args]
    if os.path.exists(stem + ".json"):
        os.remove(stem + ".json")
    print("$ " + " ".join(command), flush=True)
    with open(stem + ".log", "w") as log:
        try:
            proc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=args.timeout)
            status = "" if proc.returncode == 0 else f"exit status {proc.returncode}"
        except subprocess.TimeoutExpired:
            status = f"timed out after {args.timeout} s"
    result = None
    if os.path.exists(stem + ".json"):
        with open(stem + ".json") as f:
            result = json.load(f)
    return result, status or ("" if result else "no result")


def table(rows: list[dict], notes: list[str]) -> str:
    lines = ["| model | GPUs | experts/GPU | tokens/GPU | numerics (max rel. error vs 1 GPU) | forward ms | "
             "forward+backward ms | tokens/s (fwd+bwd, all GPUs) | per-GPU tokens/s vs 1 GPU |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    base = {}
    for r in rows:
        if r["gpus"] == 1:
            base[r["model"]] = r["tokens_per_s"]
    for r in rows:
        check = "not checked" if "max_error" not in r else (
            f"{r['max_error']:.1e} {'ok' if r['numerics_ok'] else 'FAILED'}")
        scaling = (f"{r['tokens_per_s'] / r['gpus'] / base[r['model']]:.2f}" if r["model"] in base else "")
        lines.append(f"| {r['model']} | {r['gpus']} | {r['experts_per_gpu']} | {r['tokens']} | {check} | "
                     f"{r['forward_ms']:.2f} | {r['forward_backward_ms']:.2f} | {r['tokens_per_s']:.4g} | {scaling} |")
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    have = available_gpus(args.device)
    rows, notes, failed = [], [], False
    for model in args.model:
        for gpus in args.gpus:
            if gpus > have:
                notes.append(f"{model} on {gpus} GPUs: skipped, this host has {have}")
                continue
            result, status = run_one(args, model, gpus)
            if status:
                failed = True
                notes.append(f"{model} on {gpus} GPUs: {status} (see {model}-{gpus}gpu.log)")
            if result:
                rows.append(result)
                failed |= not result.get("numerics_ok", True)
    device = "CPU (gloo, plain-PyTorch layer)" if args.device == "cpu" else "GPUs (NCCL, moejit.dMoE bf16)"
    header = (f"# Expert parallelism: layer time and throughput on {device}\n\n"
              "Weak scaling: the tokens per GPU stay fixed and the experts are spread over the GPUs; "
              "a call's time is the slowest rank's (median of the timed calls). Numerics: the "
              "expert-parallel layer against one device holding every expert, same parameters and "
              "routing. Produced by tests/gpu/expert_parallel_table.py.\n\n")
    text = header + table(rows, notes)
    with open(os.path.join(args.out, "expert_parallel.md"), "w") as f:
        f.write(text)
    print("\n" + text, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
