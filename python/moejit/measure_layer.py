"""Runs a model's layer kernels on a GPU: random routing, a float32 check, then timing
next to dense cuBLAS with the same FLOPs (the yardstick of ../shared/bench/ANCHORS.md)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import ops
from .layer_kernels import LayerKernel
from .reference import compact_blocks, expert_row_ranges, random_routing, relative_error
from .runtime import Runtime
from .timing import median_ms, tflops
from .topology import Topology
from .zoo import ModelShape

# bf16/fp16 operands with fp32 accumulation land near 1e-3..1e-2 of the reference norm.
TOLERANCE = 2e-2


@dataclass(frozen=True)
class KernelMeasurement:
    kernel: str
    product: str
    rel_error: float
    ms: float
    tflops: float          # useful work: real (unpadded) routed tokens only
    dense_tflops: float    # torch.matmul with the same useful FLOPs, same run

    @property
    def passed(self) -> bool:
        return self.rel_error <= TOLERANCE


def measure_layer_kernels(shape: ModelShape, kernels: list[LayerKernel], *, dtype: str, runtime: Runtime,
                          seed: int = 0) -> list[KernelMeasurement]:
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float16
    device = torch.device("cuda", 0)
    gen = torch.Generator(device=device).manual_seed(seed)
    h_dim, f, e = shape.hidden, shape.ffn, shape.experts
    block = kernels[0].spec.block_size
    counts = random_routing(shape.tokens, e, shape.top_k, device=device, generator=gen)
    topo = Topology.from_expert_counts(counts, block, f)
    ranges = expert_row_ranges(topo, counts)
    routed = shape.tokens * shape.top_k
    useful_flops = 2 * routed * h_dim * f
    print(f"routing: {routed} token-expert pairs, max/mean tokens per expert "
          f"{counts.max().item() / (routed / e):.3f}, {topo.rows} padded rows, {topo.nnz} blocks")

    def randn(*size: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*size, device=device, generator=gen) * scale).to(torch_dtype)

    x = randn(topo.rows, h_dim)
    dy = randn(topo.rows, h_dim)
    w1 = randn(e * f, h_dim, scale=h_dim ** -0.5)
    w2 = randn(e * f, h_dim, scale=f ** -0.5)
    products = {
        0: ("h = x @ w1.t()", lambda: ops.sdd(x, w1.t(), topo, tile=kernels[0].spec.tile, runtime=runtime)),
    }
    h = products[0][1]()
    products[1] = ("y = h @ w2", lambda: ops.dsd(h, w2, tile=kernels[1].spec.tile, runtime=runtime))
    products[2] = ("dw = h.t() @ dy", lambda: ops.dsd(h.t(), dy, tile=kernels[2].spec.tile, runtime=runtime))

    # Float32 references, expert by expert (see reference.py).
    h_compact = compact_blocks(h.data, topo, f).float()
    errors = []
    ref_h = torch.empty(topo.rows, f, device=device)
    for i, (s, t) in enumerate(ranges):
        ref_h[s:t] = x[s:t].float() @ w1[i * f:(i + 1) * f].float().t()
    errors.append(relative_error(h_compact, ref_h))
    y = products[1][1]()
    ref_y = torch.zeros(topo.rows, h_dim, device=device)
    for i, (s, t) in enumerate(ranges):
        ref_y[s:t] = h_compact[s:t] @ w2[i * f:(i + 1) * f].float()
    errors.append(relative_error(y, ref_y))
    dw = products[2][1]()
    ref_dw = torch.zeros(e * f, h_dim, device=device)
    for i, (s, t) in enumerate(ranges):
        ref_dw[i * f:(i + 1) * f] = h_compact[s:t].t() @ dy[s:t].float()
    errors.append(relative_error(dw, ref_dw))
    del ref_h, ref_y, ref_dw, h_compact

    dense_a = randn(routed, h_dim)
    dense_b = randn(h_dim, f)
    dense_tflops = tflops(useful_flops, median_ms(lambda: dense_a @ dense_b))

    results = []
    for i, kernel in enumerate(kernels):
        product, fn = products[i]
        ms = median_ms(fn)
        results.append(KernelMeasurement(kernel.spec.short_name(), product, errors[i], ms, tflops(useful_flops, ms),
                                         dense_tflops))
    return results
