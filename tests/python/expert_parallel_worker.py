"""One rank of the expert-parallel tests (test_expert_parallel*.py), run as
    python expert_parallel_worker.py MODE RANK WORLD_SIZE STORE_FILE OUT_JSON
Every rank of a gloo (MODE cpu) or NCCL (MODE gpu) group runs every case of
expert_parallel_cases.py and writes what it measured as JSON to OUT_JSON; the parent
asserts on it. Running all cases in one group keeps the tests fast: starting the
processes costs more than the cases.

cpu: the expert-parallel ReferenceMoE (gloo, float32/float64) against the single-process
     ReferenceMoE holding every expert, on the tokens of every rank concatenated; its
     traffic counters against the routing and against the bytes the collectives moved.
gpu: (one rank, NCCL) the exchange with itself on moejit's kernels against moejit.dMoE.
"""

import json
import os
import sys
import traceback
from contextlib import nullcontext

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from expert_parallel_cases import (AUTOGRAD_CASES, CASES, DMOE_CASES, ERROR_CASES, MOE_BLOCKS,  # noqa: E402
                                   forced_indices, model_with_moe_layers, moe_model_forward, tokens_per_rank)


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
    from moejit.layer.expert_shards import gather_expert_shards, load_expert_shard

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
    with CollectiveBytes() as moved:
        y = ep(x, expert_indices=None if indices_all is None else indices_all[mine])
        forward_bytes = moved.sent, moved.received
        (y * grad_all[mine]).sum().backward()
        backward_bytes = moved.sent - forward_bytes[0], moved.received - forward_bytes[1]

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
    traffic = None
    if sharding.exchanges:
        routing = indices_all[mine] if indices_all is not None else ep_routing(ep, x)
        traffic = traffic_report(ep.exchange_traffic, routing, sharding, H * x.element_size(), forward_bytes,
                                 backward_bytes)
    return {"errors": errors, "tokens": counts[rank], "local_experts": ep.num_local_experts, "traffic": traffic}


class CollectiveBytes:
    """Counts the bytes every all_to_all_single of floating-point rows (the exchange's
    dispatch and combine; not the integer counts) sends to and receives from OTHER ranks,
    from its split sizes: what really crossed, to check the layer's own counters against."""

    def __enter__(self):
        self.sent = self.received = 0
        self._original = dist.all_to_all_single

        def counting(output, input, output_split_sizes=None, input_split_sizes=None, group=None, async_op=False):
            if input.is_floating_point():
                me = dist.get_rank(group)
                row = input.element_size() * input.shape[1:].numel()
                world = dist.get_world_size(group)
                sends = input_split_sizes or [input.shape[0] // world] * world
                receives = output_split_sizes or [output.shape[0] // world] * world
                self.sent += row * (sum(sends) - sends[me])
                self.received += row * (sum(receives) - receives[me])
            return self._original(output, input, output_split_sizes, input_split_sizes, group=group, async_op=async_op)

        dist.all_to_all_single = counting
        return self

    def __exit__(self, *exc):
        dist.all_to_all_single = self._original


def ep_routing(layer, x):
    """The expert indices the expert-parallel layer chose for x (its router, replicated)."""
    from moejit.layer.dmoe import router_probabilities
    with torch.no_grad():
        return router_probabilities(layer.router(x.reshape(-1, layer.hidden_size)), layer.top_k, None)[2]


def traffic_report(traffic, indices, sharding, row_bytes, forward_bytes, backward_bytes):
    """The layer's counters against the routing (the model's minimum: once per token and
    other rank holding one of its experts, and what the other ranks' tokens send here) and
    against the bytes the collectives moved; plus the per-assignment exchange's rows."""
    from moejit.layer.exchange_traffic import minimum_dispatch_rows, per_assignment_dispatch_rows

    world, per_rank = sharding.world_size, sharding.experts_per_rank
    # Every rank's routing, to count what this rank receives.
    sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([indices.shape[0]]))
    longest = max(int(n) for n in sizes)
    padded = torch.full((longest, indices.shape[1]), -1, dtype=torch.int64)
    padded[:indices.shape[0]] = indices
    everyone = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(everyone, padded)
    expected_received = 0
    for source, routing in enumerate(everyone):
        if source != sharding.rank:
            routing = routing[:int(sizes[source])]
            expected_received += int(((routing // per_rank) == sharding.rank).any(dim=1).sum())
    return {
        "rows_sent": traffic.rows_sent,
        "minimum rows": minimum_dispatch_rows(indices, sharding.rank, world, per_rank),
        "per-assignment rows": per_assignment_dispatch_rows(indices, sharding.rank, per_rank),
        "rows_received": traffic.rows_received, "expected rows received": expected_received,
        "rows_kept": traffic.rows_kept,
        "expected rows kept": int(((indices // per_rank) == sharding.rank).any(dim=1).sum()),
        "dispatch_bytes_sent": traffic.dispatch_bytes_sent, "minimum dispatch bytes":
            minimum_dispatch_rows(indices, sharding.rank, world, per_rank) * row_bytes,
        "bytes_sent": traffic.bytes_sent, "bytes_received": traffic.bytes_received,
        "collective bytes sent": forward_bytes[0], "collective bytes received": forward_bytes[1],
        "backward_bytes_sent": traffic.backward_bytes_sent, "backward_bytes_received": traffic.backward_bytes_received,
        "collective backward bytes sent": backward_bytes[0], "collective backward bytes received": backward_bytes[1],
    }


def kernel_free_dmoe_class():
    """moejit.dMoE with its kernels (_experts) replaced by plain PyTorch and CPU input
    allowed: everything else, the expert-parallel path included, is dMoE's own code."""
    import types

    import moejit
    from moejit.layer.dmoe import activation_function
    from moejit.layer.reference import reference_expert_mlp

    class KernelFreeDMoE(moejit.dMoE):
        def _check_input(self, x):
            pass

        def _experts(self, x, weights, indices, num_experts, params):
            tokens, top_k = indices.shape
            out = reference_expert_mlp(activation_function(self.activation), self.glu, self.ffn_hidden_size)(
                x.repeat_interleave(top_k, dim=0), indices.reshape(-1), params).view(tokens, top_k, x.shape[1])
            y = out.sum(1) if weights is None else (out.float() * weights.unsqueeze(-1)).sum(1).to(x.dtype)
            counts = torch.bincount(indices.reshape(-1), minlength=num_experts)
            return y, types.SimpleNamespace(expert_counts=counts)

    return KernelFreeDMoE


def run_dmoe_case(case, rank, world):
    """The expert-parallel KernelFreeDMoE against the same layer holding every expert."""
    from moejit.layer.expert_shards import load_expert_shard
    from moejit.ops.reference import relative_error

    layer_class = kernel_free_dmoe_class()
    E, H, F, k = case["experts"], case["hidden"], case["ffn"], case["top_k"]
    counts = tokens_per_rank(case, world)
    mine = slice(sum(counts[:rank]), sum(counts[:rank + 1]))
    torch.manual_seed(case["seed"])
    full = layer_class(H, F, E, k, init_std=0.1, **case.get("options", {}))
    if full.bias is not None:
        with torch.no_grad():
            full.bias.normal_()
    ep = layer_class(H, F, E, k, expert_parallel_group=dist.group.WORLD, exchange_chunks=case.get("chunks", 1),
                     **case.get("options", {}))
    load_expert_shard(ep, full.state_dict())
    x_all = torch.randn(sum(counts), H).to(torch.bfloat16)
    grad_all = torch.randn(sum(counts), H)
    xa = x_all.clone().requires_grad_()
    (full(xa).float() * grad_all).sum().backward()
    x = x_all[mine].clone().requires_grad_()
    y = ep(x)
    (y.float() * grad_all[mine]).sum().backward()
    with torch.no_grad():
        y_mine = full(x_all[mine])
    errors = {"forward": relative_error(y, y_mine), "d x": relative_error(x.grad, xa.grad[mine])}
    if counts[rank]:
        errors["load balancing loss"] = relative_error(ep.load_balancing_loss, full.load_balancing_loss)
    for name, p in ep.named_parameters():
        expected = full.get_parameter(name).grad
        got = p.grad.float()
        if name in ("w1", "v1", "w2"):
            expected = expected[ep.expert_sharding.expert_rows(F)]
        else:
            dist.all_reduce(got)
        errors[f"d {name}"] = relative_error(got, expected)
    return {"errors": errors, "tokens": counts[rank], "local_experts": ep.num_local_experts}


class _Offloaded:
    """What the offloading hooks below keep in the graph instead of a saved tensor."""

    __slots__ = ("tensor", "__weakref__")


def run_exchange_autograd_case(case, rank, world):
    """expert_parallel_moe called directly, against the same experts computed in one
    process: backward twice with retain_graph=True (the second adds the same gradients), a
    third backward once the graph was freed (PyTorch's RuntimeError), the same under
    saved-tensor hooks that replace every saved tensor by a copy (as activation offloading
    does: then nothing but the hooks' copies may keep the local experts' input rows and
    output alive, and freeing the graph frees the copies), under activation checkpointing
    (torch.utils.checkpoint, which recomputes the exchange in the backward), and under
    torch.no_grad (the same output, no graph, no autograd Function of the exchange run)."""
    import gc
    import weakref

    from torch.utils.checkpoint import checkpoint

    import moejit.layer.expert_parallel as expert_parallel
    from moejit.layer.expert_parallel import expert_parallel_moe
    from moejit.layer.expert_sharding import ExpertSharding
    from moejit.layer.dmoe import activation_function
    from moejit.layer.reference import reference_expert_mlp

    E, H, F, k, T = case["experts"], case["hidden"], case["ffn"], case["top_k"], case["tokens"] + rank
    group = dist.group.WORLD
    sharding = ExpertSharding.of(group, E)
    torch.manual_seed(case["seed"])   # the same full weights (w1, v1, w2) on every rank
    full = [torch.randn(E * F, H, dtype=torch.float64) * 0.5 for _ in range(3)]
    gen = torch.Generator().manual_seed(case["seed"] * 100 + rank)
    x0 = torch.randn(T, H, generator=gen, dtype=torch.float64)
    weights0 = torch.rand(T, k, generator=gen, dtype=torch.float64)
    indices = torch.rand(T, E, generator=gen).argsort(dim=1)[:, :k]
    grad = torch.randn(T, H, generator=gen, dtype=torch.float64)
    mlp = reference_expert_mlp(activation_function("silu"), True, F)

    # One process: every expert, this rank's tokens; the weights' gradients summed over ranks.
    x_ref, w_ref, full_ref = x0.clone().requires_grad_(), weights0.clone().requires_grad_(), \
        [w.clone().requires_grad_() for w in full]
    per_choice = mlp(x_ref.repeat_interleave(k, dim=0), indices.reshape(-1), full_ref).view(T, k, H)
    y_ref = (per_choice * w_ref.unsqueeze(-1)).sum(1)
    y_ref.backward(grad)
    expected = {"d x": x_ref.grad, "d weights": w_ref.grad}
    for name, w in zip(("w1", "v1", "w2"), full_ref):
        dist.all_reduce(w.grad, group=group)
        expected[f"d {name}"] = w.grad[sharding.expert_rows(F)]

    alive = []   # weak references to what each local computation received and returned

    def local_experts(rows, expert_ids, params):
        out = mlp(rows, expert_ids, params)
        alive.extend((weakref.ref(rows), weakref.ref(out)))
        return out

    def leaves():
        return (x0.clone().requires_grad_(), weights0.clone().requires_grad_(),
                [w[sharding.expert_rows(F)].clone().requires_grad_() for w in full])

    def gradients(x, weights, params):
        return {"d x": x.grad.clone(), "d weights": weights.grad.clone(),
                **{f"d {n}": p.grad.clone() for n, p in zip(("w1", "v1", "w2"), params)}}

    def layer(x, weights, params):
        return expert_parallel_moe(x, weights, indices, local_experts, params, sharding, chunks=case["chunks"])[0]

    errors, failures = {}, []
    for hooks in (False, True):
        label = "under hooks: " if hooks else ""
        packed = []   # weak references to the hooks' copies

        def pack(tensor):
            holder = _Offloaded()
            holder.tensor = tensor.detach().clone()
            packed.append(weakref.ref(holder))
            return holder

        alive.clear()
        x, weights, params = leaves()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda holder: holder.tensor) if hooks else nullcontext():
            y = layer(x, weights, params)
        gc.collect()
        errors[f"{label}forward"] = _error(y, y_ref)
        if hooks and any(ref() is not None for ref in alive):
            failures.append("under offloading hooks, the local experts' input rows or output outlived the forward "
                            "(kept outside the saved-tensor hooks)")
        try:
            y.backward(grad, retain_graph=True)
            first = gradients(x, weights, params)
            y.backward(grad)
        except Exception as error:   # every rank fails alike, so the collectives stay matched
            failures.append(f"{label}backward after backward(retain_graph=True) raised {error!r}")
            continue
        for quantity, value in first.items():
            errors[f"{label}{quantity}"] = _error(value, expected[quantity])
        for quantity, value in gradients(x, weights, params).items():
            errors[f"{label}{quantity} after the second backward"] = _error(value, 2 * first[quantity])
        gc.collect()
        if hooks and (not packed or any(ref() is not None for ref in packed)):
            failures.append(f"{len(packed)} tensors packed by the hooks, "
                            f"{sum(ref() is not None for ref in packed)} still held after the graph was freed")
        try:
            y.backward(grad)
            failures.append(f"{label}a backward after the graph was freed raised nothing")
        except RuntimeError as error:
            if "backward through the graph a second time" not in str(error):
                failures.append(f"{label}a backward after the graph was freed raised {error!r}")
        except Exception as error:
            failures.append(f"{label}a backward after the graph was freed raised {error!r}")

    # Activation checkpointing: the exchange runs again in the backward, on every rank alike.
    x, weights, params = leaves()
    y = checkpoint(layer, x, weights, params, use_reentrant=False)
    y.backward(grad)
    errors["checkpointed: forward"] = _error(y, y_ref)
    for quantity, value in gradients(x, weights, params).items():
        errors[f"checkpointed: {quantity}"] = _error(value, expected[quantity])

    # Inference: no graph, and none of the exchange's autograd Functions runs.
    calls = []
    original = expert_parallel._StartTransfer.forward
    expert_parallel._StartTransfer.forward = staticmethod(lambda *a: calls.append(1) or original(*a))
    try:
        x, weights, params = leaves()
        with torch.no_grad():
            y = layer(x, weights, params)
    finally:
        expert_parallel._StartTransfer.forward = staticmethod(original)
    errors["no_grad: forward"] = _error(y, y_ref)
    if y.requires_grad or y.grad_fn is not None or calls:
        failures.append(f"under torch.no_grad the output has a graph ({y.grad_fn}) or the exchange's autograd "
                        f"Function ran {len(calls)} times")
    return {"errors": errors, "failures": failures, "tokens": T}


def run_model_sharding_case(rank, world):
    """A model with MoE layers at blocks 1 and 11 (and dense weights named like experts'):
    load_expert_shard gives each expert-parallel layer its own experts' rows and leaves every
    other entry whole, the model computes as the one holding every expert, and
    gather_expert_shards gives back the full state."""
    from moejit.layer.expert_shards import gather_expert_shards, load_expert_shard

    torch.manual_seed(31)
    full = model_with_moe_layers()
    with torch.no_grad():
        for p in full.parameters():
            p.normal_(0.0, 0.5)
    full_state = full.state_dict()
    ep = model_with_moe_layers(dist.group.WORLD)
    try:
        load_expert_shard(ep, full_state)
    except Exception as error:   # raised before any collective, on every rank alike
        return {"errors": {}, "failures": [f"load_expert_shard raised {error!r}"]}
    expected = dict(full_state)
    for i, o in MOE_BLOCKS.items():
        rows = o["experts"] // world * o["ffn"]
        for w in ("w1", "v1", "w2") if o.get("glu") else ("w1", "w2"):
            name = f"layers.{i}.moe.{w}"
            expected[name] = full_state[name][rank * rows:(rank + 1) * rows]
    loaded = ep.state_dict()
    failures = []
    if set(loaded) != set(expected):
        failures.append(f"entries {sorted(set(loaded) ^ set(expected))}: in one state only")
    wrong = [name for name in expected if name in loaded and _error(loaded[name], expected[name]) > 0]
    if wrong:
        failures.append(f"loaded entries differ from this rank's share of the full model's: {wrong}")
    x = torch.randn(5 + rank, full.layers[1].moe.hidden_size, dtype=torch.float64)
    with torch.no_grad():
        errors = {"forward": _error(moe_model_forward(ep, x), moe_model_forward(full, x))}
    gathered = gather_expert_shards(ep)
    if set(gathered) != set(full_state):
        failures.append(f"gathered entries {sorted(set(gathered) ^ set(full_state))}: in one state only")
    errors["gathered state"] = max(_error(gathered[n], t) for n, t in full_state.items() if n in gathered)
    return {"errors": errors, "failures": failures}


def run_error_case(name, rank, world):
    """Returns the message of the error the case raises (None when nothing is raised)."""
    import moejit
    from moejit.layer.expert_sharding import ExpertSharding

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
    from moejit.layer.expert_parallel import expert_parallel_moe
    from moejit.layer.expert_sharding import ExpertSharding
    from moejit.ops.reference import relative_error

    torch.manual_seed(0)
    layer = moejit.dMoE(case["hidden"], case["ffn"], case["experts"], case["top_k"], device="cuda", init_std=0.05,
                        **case.get("options", {}))
    x = torch.randn(case["tokens"], case["hidden"], device="cuda", dtype=layer.w1.dtype)
    grad = torch.randn_like(x)
    with torch.no_grad():
        scores, weights, indices = layer.route(x)
    if case.get("forced") == "last two experts":
        indices = torch.tensor([[case["experts"] - 1, case["experts"] - 2]], device="cuda").repeat(x.shape[0], 1)
        weights = scores.gather(1, indices)
    results = {}
    sharding = ExpertSharding(dist.group.WORLD, 0, 1, case["experts"])
    # The router weights are leaves here: the exchange is what is compared, and each pass
    # needs a graph of its own.
    x1, weights1 = x.clone().requires_grad_(), weights.clone().requires_grad_()
    y1, _ = layer._experts(x1, weights1, indices, layer.num_experts, layer._expert_weights())
    (y1.float() * grad).sum().backward()
    plain = {"d x": x1.grad, "d weights": weights1.grad,
             **{f"d {n}": p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None}}
    for chunks in (1, 2):
        layer.zero_grad()
        x2, weights2 = x.clone().requires_grad_(), weights.clone().requires_grad_()
        y2, counts, _ = expert_parallel_moe(x2, weights2, indices, layer._local_experts, layer._expert_weights(),
                                            sharding, chunks=chunks)
        (y2.float() * grad).sum().backward()
        with torch.no_grad():   # the exchange's sums are ordered: the same output bit for bit
            y3, _, _ = expert_parallel_moe(x, weights, indices, layer._local_experts, layer._expert_weights(),
                                           sharding, chunks=chunks)
        expected_counts = torch.bincount(indices.flatten().cpu(), minlength=layer.num_experts)
        errors = {"forward": relative_error(y2, y1), "d x": relative_error(x2.grad, plain["d x"]),
                  "d weights": relative_error(weights2.grad, plain["d weights"]),
                  "counts": float((counts.cpu() != expected_counts).sum()),
                  "forward repeated under no_grad": float((y3 != y2).sum())}
        for n, p in layer.named_parameters():
            if f"d {n}" in plain:
                errors[f"d {n}"] = relative_error(p.grad, plain[f"d {n}"])
        results[f"chunks={chunks}"] = errors
    return results


def main():
    mode, rank, world, store, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    report = {"cases": {}, "error_cases": {}, "autograd_cases": {}}
    if mode == "gpu":
        torch.cuda.set_device(0)
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
            for name, case in DMOE_CASES.items():
                try:
                    report["cases"][name] = run_dmoe_case(case, rank, world)
                except Exception:
                    report["cases"][name] = {"exception": traceback.format_exc()}
                    print(f"rank {rank} of {world}: case {name!r} raised", file=sys.stderr)
                    raise
            for name, case in AUTOGRAD_CASES.items():
                try:
                    report["autograd_cases"][name] = run_exchange_autograd_case(case, rank, world)
                except Exception:
                    report["autograd_cases"][name] = {"exception": traceback.format_exc()}
                    print(f"rank {rank} of {world}: case {name!r} raised", file=sys.stderr)
                    raise
            try:
                report["model_sharding"] = run_model_sharding_case(rank, world)
            except Exception:
                report["model_sharding"] = {"exception": traceback.format_exc()}
                print(f"rank {rank} of {world}: the model sharding case raised", file=sys.stderr)
                raise
            for name in ERROR_CASES:
                report["error_cases"][name] = run_error_case(name, rank, world)
        else:
            from expert_parallel_cases import GPU_CASES
            for name, case in GPU_CASES.items():
                report["cases"][name] = run_gpu_self_exchange(case)
        dist.barrier()   # destroying a gloo group while a peer still uses it aborts the process
    finally:
        with open(out, "w") as f:
            json.dump(report, f)
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
