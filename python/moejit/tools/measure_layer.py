"""A model's layer kernels on a GPU, on random routing: the data, float32 references, and
timing next to dense cuBLAS with the same FLOPs (the yardstick of ../shared/bench/ANCHORS.md).
`moejit build` measures with it and `moejit tune` tunes on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .. import _core, ops
from ..jit.layer_kernels import LayerKernel
from ..ops.reference import compact_blocks, expert_row_ranges, random_routing, relative_error
from ..jit.runtime import Runtime
from .timing import median_ms, tflops
from ..ops.topology import Topology
from ..zoo import ModelShape

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


class LayerData:
    """Random routing, operands and float32 references for one model shape.

    The products, by role: "sdd" h = x @ w1.t(); "dsd" y = h @ w2; "dsd_t" dw = h.t() @ dy;
    "dds_t" dw^T = x.t() @ h (the weight gradient of a [H, E*F] weight layout). Inputs
    come in `copies` independent sets that `run` rotates through, so back-to-back timed
    calls do not find their operands in the L2 cache.

    The rows of x and dy that only pad an expert's tokens to the block size are zero (as a
    dMoE layer's padded gather leaves them), so every product computes exactly the function
    of the real tokens, systems without padding can be checked against the same references
    (`moejit bench kernels`), and the topology records the tokens of each block row
    (Topology.live_rows), which lets the weight gradient (dsd_t) skip the padding as it
    does in the layer.
    """

    ROLES = ("sdd", "dsd", "dsd_t", "dds_t")

    def __init__(self, shape: ModelShape, *, dtype: str = "bf16", block_size: int = 128, seed: int = 0,
                 copies: int = 2, runtime: Optional[Runtime] = None, verbose: bool = True) -> None:
        self.shape, self.runtime = shape, runtime
        torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float16
        device = torch.device("cuda", 0)
        gen = torch.Generator(device=device).manual_seed(seed)
        h_dim, f, e = shape.hidden, shape.ffn, shape.experts
        self.counts = random_routing(shape.tokens, e, shape.top_k, device=device, generator=gen)
        self.topology = Topology.from_expert_counts(self.counts, block_size, f, zero_padding=True)
        self.ranges = expert_row_ranges(self.topology, self.counts)
        self.routed = shape.tokens * shape.top_k
        self.useful_flops = 2 * self.routed * h_dim * f
        self.bucket = self.topology.token_bucket()
        if verbose:
            print(f"routing: {self.routed} token-expert pairs, max/mean tokens per expert "
                  f"{self.counts.max().item() / (self.routed / e):.3f}, {self.topology.rows} padded rows, "
                  f"{self.topology.nnz} blocks, token bucket {self.bucket}")

        def randn(*size: int, scale: float = 1.0) -> torch.Tensor:
            return (torch.randn(*size, device=device, generator=gen) * scale).to(torch_dtype)

        rows = self.topology.rows
        self.inputs = []
        for _ in range(copies):
            x, dy = randn(rows, h_dim), randn(rows, h_dim)
            for (start, end), count in zip(self.ranges, self.counts.tolist()):
                x[start + count:end] = 0
                dy[start + count:end] = 0
            w1 = randn(e * f, h_dim, scale=h_dim ** -0.5)
            w2 = randn(e * f, h_dim, scale=f ** -0.5)
            h = ops.sdd(x, w1.t(), self.topology, runtime=runtime)
            self.inputs.append(dict(x=x, dy=dy, w1=w1, w2=w2, h=h))
        self._turn = 0
        self._references: dict[str, torch.Tensor] = {}

    def _call(self, role: str, data: dict, tile) -> torch.Tensor:
        kw = dict(tile=tile, runtime=self.runtime)
        if role == "sdd":
            return ops.sdd(data["x"], data["w1"].t(), self.topology, **kw).data
        if role == "dsd":
            return ops.dsd(data["h"], data["w2"], **kw)
        if role == "dsd_t":
            return ops.dsd(data["h"].t(), data["dy"], **kw)
        if role == "dds_t":
            return ops.dds(data["x"].t(), data["h"], **kw)
        raise ValueError(f"role={role!r}: expected one of {', '.join(self.ROLES)}")

    def run(self, role: str, tile=None) -> torch.Tensor:
        """One call on the next input set."""
        data = self.inputs[self._turn % len(self.inputs)]
        self._turn += 1
        return self._call(role, data, tile)

    def reference(self, role: str) -> torch.Tensor:
        """Float32 result of `role` on the first input set, expert by expert."""
        if role in self._references:
            return self._references[role]
        d, f, topo = self.inputs[0], self.shape.ffn, self.topology
        h = compact_blocks(d["h"].data, topo, f).float()
        if role == "sdd":
            ref = torch.empty(topo.rows, f, device=h.device)
            for i, (s, t) in enumerate(self.ranges):
                ref[s:t] = d["x"][s:t].float() @ d["w1"][i * f:(i + 1) * f].float().t()
        elif role == "dsd":
            ref = torch.zeros(topo.rows, self.shape.hidden, device=h.device)
            for i, (s, t) in enumerate(self.ranges):
                ref[s:t] = h[s:t] @ d["w2"][i * f:(i + 1) * f].float()
        elif role == "dsd_t":
            ref = torch.zeros(self.shape.experts * f, self.shape.hidden, device=h.device)
            for i, (s, t) in enumerate(self.ranges):
                ref[i * f:(i + 1) * f] = h[s:t].t() @ d["dy"][s:t].float()
        else:
            ref = torch.zeros(self.shape.hidden, self.shape.experts * f, device=h.device)
            for i, (s, t) in enumerate(self.ranges):
                ref[:, i * f:(i + 1) * f] = d["x"][s:t].float().t() @ h[s:t]
        self._references[role] = ref
        return ref

    def output(self, role: str, tile=None) -> torch.Tensor:
        """The result of `role` (with `tile`) on the first input set: blocks [nnz, b, b]
        for sdd, a dense matrix otherwise."""
        return self._call(role, self.inputs[0], tile)

    def error(self, role: str, tile=None) -> float:
        """Relative error of `role` (with `tile`) on the first input set."""
        out = self.output(role, tile)
        if role == "sdd":
            out = compact_blocks(out, self.topology, self.shape.ffn)
        return relative_error(out, self.reference(role))

    def dense_tflops(self) -> float:
        """torch.matmul (cuBLAS) with the same useful FLOPs: [T*k, H] @ [H, F]."""
        first = self.inputs[0]["x"]
        a = torch.randn(self.routed, self.shape.hidden, device=first.device).to(first.dtype)
        b = torch.randn(self.shape.hidden, self.shape.ffn, device=first.device).to(first.dtype)
        return tflops(self.useful_flops, median_ms(lambda: a @ b))


class RoleWorkload:
    """One role of a LayerData as the tuner's Workload."""

    def __init__(self, data: LayerData, role: str) -> None:
        self.data, self.role = data, role

    def run(self, spec: _core.KernelSpec) -> None:
        self.data.run(self.role, spec.tile)

    def error(self, spec: _core.KernelSpec) -> float:
        return self.data.error(self.role, spec.tile)


# The layer kernels in layer_kernels() order, then the extra dds measurement.
_ROLE_PRODUCTS = [("sdd", "h = x @ w1.t()"), ("dsd", "y = h @ w2"), ("dsd_t", "dw = h.t() @ dy"),
                  ("dds_t", "dw^T = x.t() @ h")]


def measure_layer_kernels(shape: ModelShape, kernels: list[LayerKernel], *, dtype: str, runtime: Runtime,
                          seed: int = 0, timer: Callable = median_ms) -> list[KernelMeasurement]:
    """Checks and times the layer's kernels with their specs' tiles, and one dds (the
    weight gradient of a [H, E*F] layout, not a kernel of the layer) with the heuristic."""
    data = LayerData(shape, dtype=dtype, block_size=kernels[0].spec.block_size, seed=seed, runtime=runtime)
    dense = data.dense_tflops()
    tiles = [k.spec.tile for k in kernels] + [None]
    names = [k.spec.short_name() for k in kernels]
    names.append(f"dds_tn_{dtype}_b{data.topology.block_size}_m{shape.hidden}_n{shape.experts * shape.ffn}")
    results = []
    for (role, product), tile, name in zip(_ROLE_PRODUCTS, tiles, names):
        err = data.error(role, tile)
        ms = timer(lambda: data.run(role, tile))
        results.append(KernelMeasurement(name, product, err, ms, tflops(data.useful_flops, ms), dense))
    return results
