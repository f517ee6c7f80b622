"""Expert parallelism on the CPU: 1, 2, 4 and 8 processes on the gloo backend, each
holding E/W experts of an expert-parallel ReferenceMoE (the exchange of
moejit.layer.expert_parallel with the plain-PyTorch local experts), against one process holding
every expert on the tokens of all ranks: forward, the input gradient, every expert shard's
gradient and the router's and bias's (summed over ranks, as data parallelism would), the
load-balancing loss, gathering the shards back, and the errors. The cases
(expert_parallel_cases.py) include experts and whole ranks with no tokens, a rank with no
tokens of its own, uneven token counts, top-k 1, 2 and 8, and the chunked (overlapped)
exchange with more chunks than tokens; the traffic counters against the routing (once per
token and destination rank) and against the bytes the collectives moved; the exchange's
autograd (a second backward after retain_graph=True, a freed graph, saved-tensor hooks,
activation checkpointing, torch.no_grad); loading and gathering the shards of a model with
several MoE layers. The multi-GPU benchmark scripts (tests/gpu) run here on CPU processes
under torchrun. Plus, on a GPU, the exchange on moejit's kernels with one NCCL rank against
moejit.dMoE."""

import json
import os
import subprocess
import sys

import pytest
import torch

import moejit
from moejit.layer.expert_parallel import chunk_boundaries
from moejit.layer.expert_sharding import ExpertSharding
from moejit.layer.expert_shards import expert_parameters, shard_state_dict

from conftest import requires_gpu
from expert_parallel_cases import (AUTOGRAD_CASES, CASES, DMOE_CASES, ERROR_CASES, GPU_CASES, MOE_BLOCKS,
                                   model_with_moe_layers)

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "expert_parallel_worker.py")
TABLE = os.path.join(os.path.dirname(HERE), "gpu", "expert_parallel_table.py")
WORLD_SIZES = (1, 2, 4, 8)
TOLERANCE = {"float64": 1e-12, "float32": 1e-5}


def _run_group(mode, world, tmp_path, timeout_s=300):
    store = tmp_path / f"store-{mode}-{world}"
    outs = [tmp_path / f"rank{r}-{mode}-{world}.json" for r in range(world)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, WORKER, mode, str(r), str(world), str(store), str(outs[r])],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for r in range(world)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=timeout_s)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    reports = [json.loads(o.read_text()) if o.exists() else None for o in outs]
    failed = [r for r, p in enumerate(procs) if p.returncode != 0]
    assert not failed, f"ranks {failed} failed:\n" + "\n".join(logs[r][-4000:] for r in failed)
    return reports


@pytest.fixture(scope="module", params=WORLD_SIZES, ids=lambda w: f"world{w}")
def gloo_group_reports(request, tmp_path_factory):
    """What every rank of a gloo group of that size measured, every case run once."""
    world = request.param
    return world, _run_group("cpu", world, tmp_path_factory.mktemp(f"ep{world}"))


@pytest.mark.parametrize("case", list(CASES))
def test_expert_parallel_matches_one_process_holding_every_expert(gloo_group_reports, case):
    world, reports = gloo_group_reports
    tolerance = TOLERANCE[CASES[case]["dtype"]]
    for rank, report in enumerate(reports):
        result = report["cases"][case]
        assert "exception" not in result, result.get("exception")
        assert result["local_experts"] == CASES[case]["experts"] // world
        for quantity, error in result["errors"].items():
            assert error <= tolerance, f"rank {rank} of {world}: {quantity} differs by {error:.3g}"
        expected = {"forward", "d x", "d router.weight", "d w1", "d w2", "gathered state"}
        assert expected <= set(result["errors"]), f"rank {rank}: not every quantity was compared"


@pytest.mark.parametrize("case", list(DMOE_CASES))
def test_dmoe_expert_parallel_path_matches_dmoe_holding_every_expert(gloo_group_reports, case):
    """dMoE's own expert-parallel code with plain-PyTorch stand-ins for its kernels (bf16)."""
    world, reports = gloo_group_reports
    for rank, report in enumerate(reports):
        result = report["cases"][case]
        assert "exception" not in result, result.get("exception")
        assert result["local_experts"] == DMOE_CASES[case]["experts"] // world
        for quantity, error in result["errors"].items():
            # bf16: the router's logits and the combine round differently for different batches.
            assert error <= 2e-2, f"rank {rank} of {world}: {quantity} differs by {error:.3g}"
        assert {"forward", "d x", "d router.weight", "d w1", "d w2"} <= set(result["errors"])


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c]["tokens"] != [0] * 8])
def test_traffic_counters_equal_the_routing_minimum_and_the_bytes_moved(gloo_group_reports, case):
    """Each token crosses to another rank once per destination rank holding one of its
    experts (never once per expert), the counters say so, and they are what the
    collectives moved, forward and backward."""
    world, reports = gloo_group_reports
    if world == 1:
        assert all(report["cases"][case]["traffic"] is None for report in reports)
        return
    for rank, report in enumerate(reports):
        t = report["cases"][case]["traffic"]
        where = f"rank {rank} of {world}"
        assert t["rows_sent"] == t["minimum rows"], where
        assert t["dispatch_bytes_sent"] == t["minimum dispatch bytes"], where
        assert t["rows_received"] == t["expected rows received"], where
        assert t["rows_kept"] == t["expected rows kept"], where
        assert t["rows_sent"] <= t["per-assignment rows"], where
        assert (t["bytes_sent"], t["bytes_received"]) == (t["collective bytes sent"],
                                                          t["collective bytes received"]), where
        assert (t["backward_bytes_sent"], t["backward_bytes_received"]) == (
            t["collective backward bytes sent"], t["collective backward bytes received"]), where
    if CASES[case]["top_k"] == 8 and world < 8:
        # Several of a token's experts share a rank: fewer rows than assignments.
        assert sum(r["cases"][case]["traffic"]["rows_sent"] for r in reports) < \
            sum(r["cases"][case]["traffic"]["per-assignment rows"] for r in reports)


@pytest.mark.parametrize("case", list(AUTOGRAD_CASES))
def test_exchange_autograd_retains_frees_hooks_checkpoints_and_no_grad(gloo_group_reports, case):
    """A second backward after retain_graph=True adds the same gradients (each matching one
    process holding every expert); a backward after the graph was freed raises PyTorch's
    RuntimeError; under offloading saved-tensor hooks nothing outside the hooks keeps the
    local experts' rows alive, and freeing the graph frees what the hooks packed; activation
    checkpointing gives the same gradients; torch.no_grad the same output and no graph."""
    world, reports = gloo_group_reports
    for rank, report in enumerate(reports):
        result = report["autograd_cases"][case]
        assert "exception" not in result, result.get("exception")
        assert not result["failures"], f"rank {rank} of {world}: " + "; ".join(result["failures"])
        for quantity, error in result["errors"].items():
            assert error <= 1e-12, f"rank {rank} of {world}: {quantity} differs by {error:.3g}"
        quantities = ("d x", "d weights", "d w1", "d v1", "d w2")
        for label in ("", "under hooks: "):
            for quantity in quantities:
                assert {f"{label}{quantity}", f"{label}{quantity} after the second backward"} <= set(result["errors"])
        assert {f"checkpointed: {q}" for q in quantities} | {"no_grad: forward"} <= set(result["errors"])


@pytest.mark.parametrize("name", list(ERROR_CASES))
def test_expert_parallel_errors_name_the_problem(gloo_group_reports, name):
    world, reports = gloo_group_reports
    fragment, raises_on = ERROR_CASES[name]
    messages = [report["error_cases"][name] for report in reports]
    if world not in raises_on:
        assert all(m is None for m in messages), messages
        return
    if name == "not a member of the group":   # raised on the ranks outside the group only
        messages = messages[1:]
    for message in messages:
        assert message is not None and fragment in message, message


def test_the_cases_cover_what_the_issue_asks():
    assert {c["top_k"] for c in CASES.values()} == {1, 2, 8}
    assert {c["dtype"] for c in CASES.values()} == {"float32", "float64"}
    assert any(c["tokens"][0] == 0 for c in CASES.values())
    assert any(c.get("chunks", 1) > 1 for c in CASES.values())
    assert all(len(c["tokens"]) >= max(WORLD_SIZES) for c in (*CASES.values(), *DMOE_CASES.values()))


def test_without_torch_distributed_the_group_is_refused():
    assert not torch.distributed.is_initialized()
    with pytest.raises(ValueError, match="torch.distributed is not initialised"):
        moejit.ReferenceMoE(16, 8, 4, 2, expert_parallel_group=object())
    with pytest.raises(ValueError, match="torch.distributed is not initialised"):
        moejit.dMoE(64, 128, 4, 2, expert_parallel_group=object())


def test_no_group_is_the_plain_layer():
    layer = moejit.dMoE(64, 128, 8, 2)
    assert layer.expert_sharding is None and layer.num_local_experts == 8
    assert tuple(layer.w1.shape) == (8 * 128, 64)
    assert ExpertSharding.of(None, 8) is None


@pytest.mark.parametrize("tokens,chunks,expected", [
    (8, 1, [0, 8]), (8, 3, [0, 2, 5, 8]), (2, 4, [0, 0, 1, 1, 2]), (0, 2, [0, 0, 0])])
def test_chunks_split_the_tokens_evenly_and_never_fewer_than_asked(tokens, chunks, expected):
    assert chunk_boundaries(tokens, chunks) == expected


def test_load_and_gather_expert_shards_of_a_model_with_moe_layers_1_and_11(gloo_group_reports):
    """On real groups: each layer gets its own experts' rows, the dense weights named like
    expert weights stay whole, the model computes as the full one, gathering restores it."""
    world, reports = gloo_group_reports
    for rank, report in enumerate(reports):
        result = report["model_sharding"]
        assert "exception" not in result, result.get("exception")
        assert not result["failures"], f"rank {rank} of {world}: " + "; ".join(result["failures"])
        assert set(result["errors"]) == {"forward", "gathered state"}
        for quantity, error in result["errors"].items():
            assert error <= 1e-12, f"rank {rank} of {world}: {quantity} differs by {error:.3g}"


def _full_model_state():
    torch.manual_seed(0)
    return {name: torch.randn(t.shape, dtype=t.dtype) for name, t in model_with_moe_layers().state_dict().items()}


def _model_sharded_on(rank):
    """model_with_moe_layers with the shardings of rank `rank` set by hand (no process
    group here): block 1's 8 experts over 4 ranks, block 11's 8 over 2."""
    model = model_with_moe_layers()
    model.layers[1].moe.expert_sharding = ExpertSharding(group=None, rank=rank, world_size=4, num_experts=8)
    model.layers[11].moe.expert_sharding = ExpertSharding(group=None, rank=rank % 2, world_size=2, num_experts=8)
    return model


def test_shard_state_dict_matches_expert_weights_by_their_full_names():
    state = _full_model_state()
    experts = {f"layers.{i}.moe.{w}" for i, o in MOE_BLOCKS.items()
               for w in (("w1", "v1", "w2") if o.get("glu") else ("w1", "w2"))}
    assert set(expert_parameters(model_with_moe_layers())) == experts
    for rank in range(4):
        shard = shard_state_dict(state, _model_sharded_on(rank))
        assert set(shard) == set(state)
        for w in ("w1", "v1", "w2"):   # 2 experts of ffn 8 per rank
            name = f"layers.1.moe.{w}"
            assert torch.equal(shard[name], state[name][rank * 16:(rank + 1) * 16]), name
        for w in ("w1", "w2"):         # 4 experts of ffn 4 per rank of 2
            name = f"layers.11.moe.{w}"
            assert torch.equal(shard[name], state[name][rank % 2 * 16:(rank % 2 + 1) * 16]), name
        # Dense weights named like expert weights (mlp.w1 of block 1's experts' shape too),
        # shared_w1, the routers and the bias: all as they are.
        for name in set(state) - experts:
            assert shard[name] is state[name], name
    # Without a group, every entry as it is.
    layer = moejit.ReferenceMoE(16, 8, 8, 2, glu=True, bias=True)
    layer_state = {name: torch.randn(t.shape) for name, t in layer.state_dict().items()}
    assert all(shard is layer_state[name] for name, shard in shard_state_dict(layer_state, layer).items())


def test_shard_state_dict_errors_name_the_key_and_what_was_expected():
    state = _full_model_state()
    model = _model_sharded_on(0)
    missing = {n: t for n, t in state.items() if n != "layers.11.moe.w2"}
    with pytest.raises(ValueError, match=r"state_dict: no entry 'layers.11.moe.w2': expected the w2 of the "
                                         r"ReferenceMoE 'layers.11.moe' under its full name"):
        shard_state_dict(missing, model)
    wrong = dict(state, **{"layers.1.moe.v1": torch.zeros(12, 16, dtype=torch.float64)})
    with pytest.raises(ValueError, match=r"state_dict\['layers.1.moe.v1'\].shape=\(12, 16\): expected \(64, 16\) = "
                                         r"\(num_experts=8 \* ffn_hidden_size=8, hidden_size=16\)"):
        shard_state_dict(wrong, model)
    # One layer given with the whole model's state: no entry 'w1', and the candidates named.
    with pytest.raises(ValueError, match=r"no entry 'w1'.*the entries named w1: \['layers.0.mlp.w1', "):
        shard_state_dict(state, model.layers[11].moe)
    with pytest.raises(ValueError, match="module: expected a dMoE or ReferenceMoE, or a module containing one; "
                                         "Linear contains none"):
        shard_state_dict(state, torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"module=ExpertSharding\(.*\): expected a torch.nn.Module"):
        shard_state_dict(state, ExpertSharding(None, 0, 2, 8))


def test_multi_gpu_table_script_runs_on_cpu_processes(tmp_path):
    """tests/gpu/expert_parallel_table.py and the bench it starts with torchrun, on 1 and 2
    CPU processes (gloo, the plain-PyTorch layer): every step the lead runs on GPUs (numerics
    against one process holding every expert, timing, JSON, the table) but the kernels."""
    proc = subprocess.run([sys.executable, TABLE, "--device", "cpu", "--gpus", "1", "2", "--model", "mixtral-8x7b",
                           "--out", str(tmp_path), "--", "--hidden", "32", "--ffn", "16", "--tokens", "48",
                           "--check-tokens", "12", "--iters", "2", "--warmup", "1", "--chunks", "2"],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line for line in (tmp_path / "expert_parallel.md").read_text().splitlines()
            if line.startswith("| mixtral-8x7b |")]
    assert len(rows) == 2 and all(" ok |" in row for row in rows), rows
    result = json.loads((tmp_path / "mixtral-8x7b-2gpu.json").read_text())
    assert result["gpus"] == 2 and result["experts_per_gpu"] == 4 and result["numerics_ok"]
    assert set(result["errors"]) == {"forward", "d x", "d w1", "d v1", "d w2", "d bias", "d router.weight"}
    assert result["tokens_per_s"] > 0 and result["forward_backward_ms"] > 0 and result["forward_ms"] > 0
    # mixtral's top-2 of 8 over 2 ranks: at most one row per token to the other rank.
    assert 0 < result["rows_sent_per_token"] <= 1 and result["bytes_sent_per_token"] > 0


@requires_gpu
@pytest.mark.gpu
def test_exchange_with_one_nccl_rank_on_the_kernels_matches_dmoe(tmp_path):
    (report,) = _run_group("gpu", 1, tmp_path)
    for case, per_chunks in report["cases"].items():
        assert set(per_chunks) == {"chunks=1", "chunks=2"}
        for chunks, errors in per_chunks.items():
            for quantity, error in errors.items():
                # The same kernels on the same rows; only the combine's order of operations differs.
                exact = quantity in ("counts", "forward repeated under no_grad")   # counts of differing elements
                assert error < (1e-6 if exact else 2e-2), f"{case} {chunks}: {quantity} {error:.3g}"
    assert set(report["cases"]) == set(GPU_CASES)
