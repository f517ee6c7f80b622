"""Float32 references and random routing for checking the MoE-shaped products.

The MoE topology is block-diagonal: expert e owns a run of padded token rows and the ffn
columns [e*F, (e+1)*F). For such a topology the blocks of an sdd result can be viewed
compactly as one [rows, F] matrix (each row holds its own expert's F columns), which lets
the references run expert by expert in float32 without materialising rows x (E*F).
"""

from __future__ import annotations

from typing import Optional

import torch

from .topology import Topology


def random_routing(tokens: int, experts: int, top_k: int, *, device, generator: Optional[torch.Generator] = None
                   ) -> torch.Tensor:
    """Tokens per expert for random top-k routing (each token picks k distinct experts)."""
    scores = torch.rand(tokens, experts, device=device, generator=generator)
    chosen = scores.topk(top_k, dim=1).indices.flatten()
    return torch.bincount(chosen, minlength=experts).to(torch.int32)


def expert_row_ranges(topology: Topology, tokens_per_expert: torch.Tensor) -> list[tuple[int, int]]:
    """[start, end) of each expert's padded rows."""
    padded = Topology.padded_counts(tokens_per_expert, topology.block_size).tolist()
    ranges, start = [], 0
    for count in padded:
        ranges.append((start, start + count))
        start += count
    return ranges


def compact_blocks(data: torch.Tensor, topology: Topology, ffn: int) -> torch.Tensor:
    """The blocks of a block-diagonal sparse matrix as a [rows, ffn] matrix."""
    b = topology.block_size
    return data.view(topology.block_rows, ffn // b, b, b).permute(0, 2, 1, 3).reshape(topology.rows, ffn)


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64; NaN or Inf anywhere gives inf."""
    out64, ref64 = out.double(), ref.double()
    if not torch.isfinite(out64).all():
        return float("inf")
    denominator = ref64.norm().item()
    return (out64 - ref64).norm().item() / (denominator if denominator > 0 else 1.0)



def moe_layer_reference(x: torch.Tensor, experts: torch.Tensor, weights: torch.Tensor, w1: torch.Tensor,
                        w2: torch.Tensor, v1: Optional[torch.Tensor], activation, num_experts: int) -> torch.Tensor:
    """The expert computation of a dMoE layer for given routing, expert by expert in the
    inputs' dtype (float32 for a reference), differentiable with autograd:
        y[t] = sum_j weights[t, j] * mlp_e(x[t])  for e = experts[t, j],
        mlp_e(x) = (act(x @ w1_e.t()) [* (x @ v1_e.t()) for a GLU]) @ w2_e,
    x [T, H]; experts, weights [T, k]; w1, w2 (and v1) [E*F, H] in MegaBlocks' layout;
    `activation` a function of a tensor."""
    if w1.dim() != 2 or w1.shape[0] % num_experts:
        raise ValueError(f"w1.shape={tuple(w1.shape)}: expected [E*F, H] with E={num_experts}")
    ffn = w1.shape[0] // num_experts
    y = torch.zeros_like(x)
    for e in range(num_experts):
        tokens, slots = (experts == e).nonzero(as_tuple=True)
        if tokens.numel() == 0:
            continue
        rows = slice(e * ffn, (e + 1) * ffn)
        xe = x[tokens]
        h = activation(xe @ w1[rows].t())
        if v1 is not None:
            h = h * (xe @ v1[rows].t())
        y = y.index_add(0, tokens, (h @ w2[rows]) * weights[tokens, slots].unsqueeze(1).to(x.dtype))
    return y
