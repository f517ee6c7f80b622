"""The layer's three products (flops.KERNEL_PRODUCTS) on each system, on the same work.

Every system holds `copies` independent operand sets and `run(case)` moves to the next
one on each call, so back-to-back timed calls never find their operands in the L2 cache.
`output(case)` is the result on the first set in the grouped (real-token) form that the
float32 reference has:
    sdd   h  [R, F]     routed token i's row of x_e @ w1_e.t() for its expert e
    dsd   y  [R, H]     h_e @ w2_e
    dsd_t dw [E*F, H]   h_e.t() @ dy_e for every expert, stacked
(R routed tokens, E experts, H hidden, F ffn; w1 and w2 are [E*F, H], MegaBlocks' layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .flops import KERNEL_CASES, kernel_extents
from .token_layout import TokenLayout


def _check_case(case: str) -> None:
    if case not in KERNEL_CASES:
        raise ValueError(f"case={case!r}: expected one of {', '.join(KERNEL_CASES)}")


@dataclass
class KernelOperands:
    """x, dy [R, H] and h [R, F] in grouped form, with the weights w1, w2 [E*F, H]."""

    layout: TokenLayout
    hidden: int
    ffn: int
    copies: list[dict[str, torch.Tensor]]

    def __post_init__(self) -> None:
        r, h, f, e = self.layout.routed, self.hidden, self.ffn, self.layout.experts
        expected = {"x": (r, h), "dy": (r, h), "h": (r, f), "w1": (e * f, h), "w2": (e * f, h)}
        if not self.copies:
            raise ValueError("copies: expected at least one operand set")
        for i, operands in enumerate(self.copies):
            for name, shape in expected.items():
                if name not in operands:
                    raise ValueError(f"copies[{i}]: missing {name!r}; expected {', '.join(expected)}")
                if tuple(operands[name].shape) != shape:
                    raise ValueError(f"copies[{i}][{name!r}].shape={tuple(operands[name].shape)}: expected {shape}")

    @classmethod
    def from_layer_data(cls, data, layout: TokenLayout) -> "KernelOperands":
        """The real token rows of a moejit.tools.measure_layer.LayerData's input sets (whose
        padding rows must be zero, so that every system computes the same function)."""
        from ...ops.reference import compact_blocks

        f = data.shape.ffn
        copies = [{"x": layout.from_padded(d["x"]), "dy": layout.from_padded(d["dy"]),
                   "h": layout.from_padded(compact_blocks(d["h"].data, data.topology, f)),
                   "w1": d["w1"], "w2": d["w2"]} for d in data.inputs]
        return cls(layout, data.shape.hidden, f, copies)

    @property
    def dtype(self) -> torch.dtype:
        return self.copies[0]["x"].dtype

    @property
    def device(self) -> torch.device:
        return self.copies[0]["x"].device


class _Rotating:
    """Hands out operand sets in turn."""

    def __init__(self, count: int) -> None:
        self._count, self._turn = count, 0

    def next(self) -> int:
        i = self._turn % self._count
        self._turn += 1
        return i


class GroupedMMKernels:
    """torch._grouped_mm with the groups' end offsets: no padding, one launch per product."""

    name = "grouped_mm"

    def __init__(self, operands: KernelOperands) -> None:
        e, f, h = operands.layout.experts, operands.ffn, operands.hidden
        self._e, self._f, self._h = e, f, h
        self._offsets = operands.layout.offsets().to(operands.device)
        # [E, H, F] and [E, F, H] views of the [E*F, H] weights: nothing is copied.
        self._sets = [dict(x=d["x"], dy=d["dy"], h=d["h"], w1=d["w1"].view(e, f, h).transpose(1, 2),
                           w2=d["w2"].view(e, f, h)) for d in operands.copies]
        self._turn = _Rotating(len(self._sets))

    def _call(self, case: str, d: dict) -> torch.Tensor:
        _check_case(case)
        if case == "sdd":
            return torch._grouped_mm(d["x"], d["w1"], offs=self._offsets)
        if case == "dsd":
            return torch._grouped_mm(d["h"], d["w2"], offs=self._offsets)
        return torch._grouped_mm(d["h"].t(), d["dy"], offs=self._offsets)   # offsets split the reduction

    def run(self, case: str) -> torch.Tensor:
        return self._call(case, self._sets[self._turn.next()])

    def output(self, case: str) -> torch.Tensor:
        out = self._call(case, self._sets[0])
        return out.reshape(self._e * self._f, self._h) if case == "dsd_t" else out


class PaddedBmmKernels:
    """torch.bmm over [E, max_count, ...]: every expert padded to the largest one."""

    name = "bmm"

    def __init__(self, operands: KernelOperands) -> None:
        layout, e, f, h = operands.layout, operands.layout.experts, operands.ffn, operands.hidden
        self._layout, self._e, self._f, self._h = layout, e, f, h
        self._sets = [dict(x=layout.to_batched(d["x"]), dy=layout.to_batched(d["dy"]), h=layout.to_batched(d["h"]),
                           w1=d["w1"].view(e, f, h).transpose(1, 2), w2=d["w2"].view(e, f, h))
                      for d in operands.copies]
        self._turn = _Rotating(len(self._sets))

    def _call(self, case: str, d: dict) -> torch.Tensor:
        _check_case(case)
        if case == "sdd":
            return torch.bmm(d["x"], d["w1"])
        if case == "dsd":
            return torch.bmm(d["h"], d["w2"])
        return torch.bmm(d["h"].transpose(1, 2), d["dy"])

    def run(self, case: str) -> torch.Tensor:
        return self._call(case, self._sets[self._turn.next()])

    def output(self, case: str) -> torch.Tensor:
        out = self._call(case, self._sets[0])
        if case == "dsd_t":
            return out.reshape(self._e * self._f, self._h)
        return self._layout.from_batched(out)


class DenseKernels:
    """torch.matmul (cuBLAS) on random operands with the same M x N x K as each product
    (flops.kernel_extents): the rate the block-sparse kernels aim at. A different
    function, so nothing to check."""

    name = "dense"

    def __init__(self, operands: KernelOperands, copies: Optional[int] = None, seed: int = 0) -> None:
        self._operands, self._copies = operands, copies or len(operands.copies)
        self._gen = torch.Generator(device=operands.device).manual_seed(seed)
        self._sets: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._turn = _Rotating(self._copies)

    def _pairs(self, case: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        _check_case(case)
        if case not in self._sets:
            self._sets.clear()   # one case's operands at a time
            o = self._operands
            m, n, k = kernel_extents(case, o.layout.routed, o.hidden, o.ffn)

            def randn(*size: int) -> torch.Tensor:
                return torch.randn(*size, device=o.device, generator=self._gen).to(o.dtype)

            self._sets[case] = [(randn(m, k), randn(k, n)) for _ in range(self._copies)]
        return self._sets[case]

    def run(self, case: str) -> torch.Tensor:
        a, b = self._pairs(case)[self._turn.next()]
        return a @ b

    def output(self, case: str) -> None:
        return None


class MoejitKernels:
    """moejit's block-sparse kernels (tuned tiles where `moejit tune` ran) on a LayerData."""

    name = "moejit"

    def __init__(self, data, layout: TokenLayout) -> None:
        self._data, self._layout = data, layout

    def run(self, case: str) -> torch.Tensor:
        _check_case(case)
        return self._data.run(case)

    def output(self, case: str) -> torch.Tensor:
        from ...ops.reference import compact_blocks

        _check_case(case)
        out = self._data.output(case)
        if case == "sdd":
            out = compact_blocks(out, self._data.topology, self._data.shape.ffn)
        return out if case == "dsd_t" else self._layout.from_padded(out)


class StkKernels:
    """stk's block-sparse Triton kernels (MegaBlocks' products) on the same padded rows
    and topology as moejit."""

    name = "stk"

    def __init__(self, data, layout: TokenLayout) -> None:
        import stk

        topo, f = data.topology, data.shape.ffn
        self._layout, self._f, self._topo = layout, f, topo
        meta = (topo.row_indices, topo.column_indices, topo.offsets, topo.column_indices_t, topo.offsets_t,
                topo.block_offsets_t)
        size = (topo.rows, topo.cols)
        self._sets = []
        for d in data.inputs:
            self._sets.append(dict(x=d["x"], dy=d["dy"], w1=d["w1"], w2=d["w2"],
                                   h=stk.Matrix(size, d["h"].data, *meta)))
        self._turn = _Rotating(len(self._sets))
        self._ops = stk.ops

    def _call(self, case: str, d: dict):
        _check_case(case)
        if case == "sdd":
            return self._ops.sdd(d["x"], d["w1"].t(), d["h"])   # h's topology; its values are not read
        if case == "dsd":
            return self._ops.dsd(d["h"], d["w2"])
        return self._ops.dsd(d["h"].t(), d["dy"])

    def run(self, case: str):
        return self._call(case, self._sets[self._turn.next()])

    def output(self, case: str) -> torch.Tensor:
        from ...ops.reference import compact_blocks

        out = self._call(case, self._sets[0])
        if case == "sdd":
            return self._layout.from_padded(compact_blocks(out.data, self._topo, self._f))
        return out if case == "dsd_t" else self._layout.from_padded(out)


def kernel_peer(name: str, operands: KernelOperands, data=None, layout: Optional[TokenLayout] = None):
    """The kernel system for peer `name`. stk also needs the LayerData (padded rows and
    topology) and its TokenLayout."""
    if name == "dense":
        return DenseKernels(operands)
    if name == "grouped_mm":
        return GroupedMMKernels(operands)
    if name == "bmm":
        return PaddedBmmKernels(operands)
    if name == "stk":
        if data is None or layout is None:
            raise ValueError("stk: expected the LayerData and TokenLayout of the operands (data=, layout=)")
        return StkKernels(data, layout)
    raise ValueError(f"name={name!r}: expected one of dense, grouped_mm, bmm, stk")
