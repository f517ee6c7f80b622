"""One rank of the expert-parallel tests (test_expert_parallel*.py), run as
    python expert_parallel_worker.py MODE RANK WORLD_SIZE STORE_FILE OUT_JSON
Every rank of a gloo (MODE cpu) or NCCL (MODE gpu) group runs every case of
expert_parallel_cases.py and writes what it measured as JSON to OUT_JSON; the parent
asserts on it. Running all cases in one group keeps the tests fast: starting the
processes costs more than the cases.

cpu: the expert-parallel ReferenceMoE (gloo, float32/float64) against the single-process
     ReferenceMoE holding every expert, on the tokens of every rank concatenated.
gpu: (one rank, NCCL) the exchange with itself on moejit's kernels against moejit.dMoE.
"""

import json
import os
import sys
import traceback

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from expert_parallel_cases import CASES, ERROR_CASES, forced_indices, tokens_per_rank  # noqa: E402


def _error(x, y):
    """Largest absolute difference over the largest magnitude (at least 1). A missing
    gradient (None) of the single-process layer counts as zeros: with no token at all,
    nothing reaches its weights."""
    if y is None or x is None:
        if x is None and y is None:
            return 0.0
        y = torch.zeros_like(x) if y is None else y
        x = torch.zeros_like(y) if x is None else x
    x, y = x.detach().double(), y.detach().double()
    if x.shape != y.shape:
        return float("inf")
    if x.numel() == 0:
        return 0.0
    return ((x - y).abs().max() / max(1.0, y.abs().max().item())).item()


def run_case(name, case, rank, world):
    import moejit
    from moejit.expert_sharding import gather_expert_shards, load_expert_shard

    dtype = getattr(torch, case["dtype"])
    E, H, F, k = case["experts"], case["hidden"], case["ffn"], case["top_k"]
    options = case.get("options", {})
    counts = tokens_per_rank(case, world)
    first = sum(counts[:rank])
    torch.manual_seed(case.get("seed", 0))
    full = moejit.ReferenceMoE(H, F, E, k, dtype=dtype, **options)
    with torch.no_grad():
        for p in full.parameters():
            p.normal_(0.0, 0.5)
    x_all = torch.randn(sum(counts), H, dtype=dtype)
    grad_all = torch.randn(sum(counts), H, dtype=dtype)
    indices_all = forced_indices(case, sum(counts), world)

    ep = moejit.ReferenceMoE(H, F, E, k, dtype=dtype, expert_parallel_group=dist.group.WORLD,
                             exchange_chunks=case.get("chunks", 1), **options)
    load_expert_shard(ep, full.state_dict())
    full.train(case.get("train", True))
    ep.train(case.get("train", True))

    xa = x_all.clone().requires_grad_()
    y_all = full(xa, expert_indices=indices_all)
    (y_all * grad_all).sum().backward()

    mine = slice(first, first + counts[rank])
    x = x_all[mine].clone().requires_grad_()
    y = ep(x, expert_indices=None if indices_all is None else indices_all[mine])
    (y * grad_all[mine]).sum().backward()

    x_grad_all = xa.grad if xa.grad is not None else torch.zeros_like(xa)
    errors = {"forward": _error(y, y_all[mine]), "d x": _error(x.grad, x_grad_all[mine])}
    sharding = ep.expert_sharding
    for pname, p in ep.named_parameters():
        expected = full.get_parameter(pname).grad
        got = p.grad
        if got is None:
            if sharding.exchanges:   # every parameter of an exchanging layer gets a gradient
                errors[f"d {pname}"] = float("inf")
                continue
            got = torch.zeros_like(p)   # one rank is the plain layer: no token, no gradient
        if expected is None:
            expected = torch.zeros_like(full.get_parameter(pname))
        if pname in ("w1", "v1", "w2"):
            expected = expected[sharding.expert_rows(F)]
        else:   # replicated: each rank has its own tokens' part; data parallelism would sum them
            got = got.clone()
            dist.all_reduce(got, group=dist.group.WORLD)
        errors[f"d {pname}"] = _error(got, expected)
    if case.get("train", True) and counts[rank] > 0:
        # The load-balancing loss is the one of this rank's tokens, as a layer holding every
        # expert computes it for them.
        with torch.no_grad():
            full(x_all[mine], expert_indices=None if indices_all is None else indices_all[mine])
        errors["load balancing loss"] = _error(ep.load_balancing_loss, full.load_balancing_loss)
    gathered = gather_expert_shards(ep)
    errors["gathered state"] = max(_error(gathered[n], t) for n, t in full.state_dict().items())
    return {"errors": errors, "tokens": counts[rank], "local_experts": ep.num_local_experts}


def run_error_case(name, rank, world):
    """Returns the message of the error the case raises (None when nothing is raised)."""
    import moejit
    from moejit.expert_sharding import ExpertSharding

    try:
        if name == "num_experts not divisible":
            moejit.ReferenceMoE(16, 8, world + 1, 1, expert_parallel_group=dist.group.WORLD)
        elif name == "dMoE num_experts not divisible":
            moejit.dMoE(64, 128, world + 1, 1, expert_parallel_group=dist.group.WORLD)
        elif name == "gloo group for CUDA tensors":
            ExpertSharding.of(dist.group.WORLD, world).check_device(torch.device("cuda", 0))
        elif name == "not a member of the group":
            group = dist.new_group([0])   # every rank must call new_group
            if rank != 0:
                ExpertSharding.of(group, world)
        elif name == "exchange_chunks=0":
            moejit.ReferenceMoE(16, 8, world, 1, expert_parallel_group=dist.group.WORLD, exchange_chunks=0)
        else:
            raise AssertionError(f"unknown error case {name}")
    except ValueError as error:
        return str(error)
    return None


def run_gpu_self_exchange(case):
    """World size 1 on NCCL: the exchange (with itself) on the kernels against dMoE."""
    import moejit
    from moejit.expert_parallel import expert_parallel_moe
    from moejit.expert_sharding import ExpertSharding
    from moejit.reference import relative_error

    torch.manual_seed(0)
    layer = moejit.dMoE(case["hidden"], case["ffn"], case["experts"], case["top_k"], device="cuda", init_std=0.05,
                        **case.get("options", {}))
    x = torch.randn(case["tokens"], case["hidden"], device="cuda", dtype=layer.w1.dtype)
    grad = torch.randn_like(x)
    _, weights, indices = layer.route(x)
    if case.get("forced") == "last two experts":
        indices = torch.tensor([[case["experts"] - 1, case["experts"] - 2]], device="cuda").repeat(x.shape[0], 1)
        weights = layer.route(x)[0].gather(1, indices)
    results = {}
    sharding = ExpertSharding(dist.group.WORLD, 0, 1, case["experts"])
    x1 = x.clone().requires_grad_()
    y1, _ = layer._experts(x1, weights, indices, layer.num_experts, layer._expert_weights())
    (y1.float() * grad).sum().backward()
    plain = {"d x": x1.grad, **{n: p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None}}
    for chunks in (1, 2):
        layer.zero_grad()
        x2 = x.clone().requires_grad_()
        y2, counts = expert_parallel_moe(x2, weights, indices, layer._local_experts, layer._expert_weights(), sharding,
                                         chunks=chunks)
        (y2.float() * grad).sum().backward()
        errors = {"forward": relative_error(y2, y1), "d x": relative_error(x2.grad, plain["d x"]),
                  "counts": float((counts.cpu() != torch.bincount(indices.flatten().cpu(),
                                                                   minlength=layer.num_experts)).sum())}
        for n, p in layer.named_parameters():
            if n in plain:
                errors[f"d {n}"] = relative_error(p.grad, plain[n])
        results[f"chunks={chunks}"] = errors
    return results


def main():
    mode, rank, world, store, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    report = {"cases": {}, "error_cases": {}}
    dist.init_process_group("gloo" if mode == "cpu" else "nccl", init_method=f"file://{store}", rank=rank,
                            world_size=world)
    try:
        if mode == "cpu":
            for name, case in CASES.items():
                try:
                    report["cases"][name] = run_case(name, case, rank, world)
                except Exception:
                    report["cases"][name] = {"exception": traceback.format_exc()}
                    print(f"rank {rank} of {world}: case {name!r} raised", file=sys.stderr)
                    raise   # the other ranks would wait forever in a collective
            for name in ERROR_CASES:
                report["error_cases"][name] = run_error_case(name, rank, world)
        else:
            from expert_parallel_cases import GPU_CASES
            torch.cuda.set_device(0)
            for name, case in GPU_CASES.items():
                report["cases"][name] = run_gpu_self_exchange(case)
        dist.barrier()   # destroying a gloo group while a peer still uses it aborts the process
    finally:
        with open(out, "w") as f:
            json.dump(report, f)
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
