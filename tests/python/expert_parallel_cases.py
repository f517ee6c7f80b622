"""The cases of the expert-parallel tests, shared by the test module and its worker
processes (expert_parallel_worker.py). Eight experts (8, 4, 2 and 1 per rank on 1, 2, 4 and
8 ranks) or sixteen for top-8; tiny dimensions (the CPU reference loops over experts)."""

import torch

_SHAPE = dict(experts=8, hidden=16, ffn=8)

# Token counts are per rank (the first W of the list on W ranks).
CASES = {
    # Uneven token counts per rank, SwiGLU and a bias.
    "top2 swiglu bias float64": dict(_SHAPE, top_k=2, dtype="float64", tokens=[5, 8, 11, 14, 2, 9, 4, 6],
                                     options=dict(activation="silu", glu=True, bias=True)),
    "top1 gelu float32": dict(_SHAPE, top_k=1, dtype="float32", tokens=[7, 3, 12, 1, 5, 0, 8, 2], seed=1),
    # 16 experts, each token on 8 of them: several experts of one rank per token, so the
    # exchange sends fewer rows than assignments.
    "top8 of 16 float64": dict(_SHAPE, experts=16, top_k=8, dtype="float64", tokens=[9, 6, 4, 10, 3, 7, 5, 8],
                               seed=2, options=dict(normalize_expert_weights=1.0, bias=True)),
    # Every assignment to the last experts (on the last rank while it holds top_k of them):
    # the other ranks' experts get nothing.
    "all tokens to the last experts": dict(_SHAPE, top_k=2, dtype="float64", tokens=[6, 7, 8, 9, 3, 5, 4, 6],
                                           seed=3, forced="last experts", options=dict(glu=True, activation="relu")),
    # Only experts 0 and 5 are used: most experts (and on 4 or 8 ranks, whole ranks) receive nothing.
    "experts with no tokens": dict(_SHAPE, top_k=2, dtype="float32", tokens=[10, 4, 6, 3, 5, 2, 7, 1], seed=4,
                                   forced="experts 0 and 5"),
    "rank 0 has no tokens": dict(_SHAPE, top_k=2, dtype="float64", tokens=[0, 9, 5, 7, 4, 0, 6, 3], seed=5,
                                 options=dict(bias=True)),
    "no tokens anywhere": dict(_SHAPE, top_k=2, dtype="float64", tokens=[0] * 8, seed=6, train=False,
                               options=dict(bias=True)),
    # The pipelined exchange: the tokens in 2 parts; then more parts than some ranks have
    # tokens (empty parts), with routing that leaves whole ranks without rows.
    "two exchange chunks": dict(_SHAPE, top_k=2, dtype="float64", tokens=[12, 5, 9, 8, 6, 3, 7, 4], seed=7, chunks=2,
                                options=dict(glu=True, activation="silu", bias=True)),
    "more chunks than tokens": dict(_SHAPE, experts=16, top_k=8, dtype="float64", tokens=[8, 2, 3, 0, 5, 1, 6, 4],
                                    seed=8, chunks=5, forced="experts 0 and 5"),
}

# moejit.dMoE's own expert-parallel path (its forward, local-expert callable, parameter
# handling, load-balancing counts) with its kernels replaced by plain PyTorch in bf16, so
# it runs on the CPU (the worker's KernelFreeDMoE).
DMOE_CASES = {
    "dMoE top2 swiglu bias": dict(_SHAPE, hidden=16, ffn=128, top_k=2, tokens=[6, 9, 4, 11, 5, 3, 7, 2], seed=11,
                                  options=dict(activation="silu", glu=True, bias=True)),
    "dMoE two chunks, rank 0 without tokens": dict(_SHAPE, hidden=16, ffn=128, top_k=1,
                                                   tokens=[0, 9, 4, 11, 3, 6, 2, 5], seed=12, chunks=2),
}

# The exchange's own autograd (expert_parallel_moe called directly, SwiGLU in float64):
# a second backward after retain_graph=True, the error after the graph was freed, what
# stays alive under saved-tensor hooks that offload every saved tensor, activation
# checkpointing, and torch.no_grad.
AUTOGRAD_CASES = {
    "retain_graph, freed graph, saved-tensor hooks": dict(experts=8, hidden=16, ffn=8, top_k=2, tokens=7,
                                                          chunks=1, seed=21),
    "the same with top-8 and three exchange chunks": dict(experts=16, hidden=16, ffn=8, top_k=8, tokens=6,
                                                          chunks=3, seed=22),
}

# The model of the sharding tests (model_with_moe_layers): MoE layers (ReferenceMoE) at
# blocks 1 and 11, each with sizes of its own.
MOE_BLOCKS = {1: dict(ffn=8, experts=8, top_k=2, glu=True, bias=True), 11: dict(ffn=4, experts=8, top_k=1)}
MODEL_HIDDEN = 16


def model_with_moe_layers(group=None, dtype=torch.float64):
    """Twelve blocks (model.layers[i]); blocks 1 and 11 hold an MoE layer (.moe, over
    `group`); every block a dense MLP whose weights are named like expert weights (mlp.w1,
    mlp.w2, and w1 of the same shape as block 1's experts') and a parameter whose name ends
    like one (shared_w1). Parameters uninitialised."""
    import moejit

    H = MODEL_HIDDEN
    model = torch.nn.Module()
    model.layers = torch.nn.ModuleList()
    for i in range(12):
        block = torch.nn.Module()
        block.mlp = torch.nn.Module()
        block.mlp.w1 = torch.nn.Parameter(torch.empty(8 * 8, H, dtype=dtype))
        block.mlp.w2 = torch.nn.Parameter(torch.empty(8 * 8, H, dtype=dtype))
        block.shared_w1 = torch.nn.Parameter(torch.empty(H, H, dtype=dtype))
        if i in MOE_BLOCKS:
            o = MOE_BLOCKS[i]
            block.moe = moejit.ReferenceMoE(H, o["ffn"], o["experts"], o["top_k"], glu=o.get("glu", False),
                                            bias=o.get("bias", False), dtype=dtype, expert_parallel_group=group)
        model.layers.append(block)
    return model


def moe_model_forward(model, x):
    """The model's MoE layers in turn, with residuals (the dense weights take no part)."""
    for i in MOE_BLOCKS:
        x = x + model.layers[i].moe(x)
    return x


ERROR_CASES = {
    # name: (expected message fragment, world sizes it raises on)
    "num_experts not divisible": ("expected a multiple of the expert-parallel group's size", (2, 4, 8)),
    "dMoE num_experts not divisible": ("expected a multiple of the expert-parallel group's size", (2, 4, 8)),
    "gloo group for CUDA tensors": ("its backend 'gloo' cannot exchange tensors on cuda:0: expected a 'nccl' group",
                                    (1, 2, 4, 8)),
    "not a member of the group": ("this process is not a member of the group", (2, 4, 8)),
    "exchange_chunks=0": ("chunks=0: expected a positive integer", (1, 2, 4, 8)),
}

# One GPU, NCCL, world size 1: the exchange with itself on the kernels (see the worker).
GPU_CASES = {
    "top2 swiglu": dict(experts=8, hidden=256, ffn=256, top_k=2, tokens=1000,
                        options=dict(activation="silu", glu=True)),
    "top2 gelu, two experts take all": dict(experts=8, hidden=128, ffn=128, top_k=2, tokens=300,
                                            forced="last two experts"),
    # Many experts, top-8: records carry up to 8 local experts each.
    "top8 of 64 swiglu": dict(experts=64, hidden=256, ffn=128, top_k=8, tokens=3000,
                              options=dict(activation="silu", glu=True)),
}


def tokens_per_rank(case, world):
    return case["tokens"][:world]


def forced_indices(case, tokens, world):
    """The routing the case forces ([tokens, top_k] global expert ids), or None."""
    forced, E, k = case.get("forced"), case["experts"], case["top_k"]
    if forced is None:
        return None
    if forced == "last experts":   # on the last rank while it holds k or more
        return torch.arange(E - k, E).repeat(tokens, 1)
    if forced == "experts 0 and 5":
        gen = torch.Generator().manual_seed(tokens)
        first = torch.randint(2, (tokens, 1), generator=gen) * 5   # 0 or 5
        if k == 1:
            return first
        # Then the experts after 5 (top-8 of 16: the token's other choices, all distinct).
        return torch.cat([first, 5 - first, torch.arange(6, 6 + k - 2).repeat(tokens, 1)], dim=1)
    raise AssertionError(forced)
