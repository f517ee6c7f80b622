"""Building kernel specs from op names and extents, and reading their generated source."""

from __future__ import annotations

import functools
import operator
import os
from typing import Any, Optional, Union

from .. import _core

TargetLike = Union[str, _core.Target]
TileLike = Union[str, _core.TileConfig, None]
FamilyLike = Union[str, _core.KernelFamily, None]


# The element types and block sizes the kernels are built for.
DTYPES = ("bf16", "fp16")
BLOCK_SIZES = (128, 64)


_MAX_EXTENT = 2**31 - 1


def _flag(name: str, value: Any) -> bool:
    """A boolean argument, strictly: "no", 0, 1 or None are not booleans."""
    if not isinstance(value, bool):
        raise _core.SpecError(f"{name}={value!r}: expected True or False")
    return value


def _integer(name: str, value: Any, low: int, expected: str) -> int:
    """An integer argument (a Python or NumPy integer; not a bool, float or string) from
    `low` to 2**31 - 1."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise _core.SpecError(f"{name}={value!r}: expected {expected}")
    v = operator.index(value)
    if not low <= v <= _MAX_EXTENT:
        raise _core.SpecError(f"{name}={value!r}: expected {expected}")
    return v


def _extent(name: str, value: Any) -> int:
    return _integer(name, value, 1, f"a positive integer extent (at most {_MAX_EXTENT})")


def as_target(target: TargetLike) -> _core.Target:
    return target if isinstance(target, _core.Target) else _core.Target(target)


def as_family(family: Union[str, _core.KernelFamily]) -> _core.KernelFamily:
    return family if isinstance(family, _core.KernelFamily) else _core.parse_family(family)


def _default_family(spec: _core.KernelSpec, tile: Optional[_core.TileConfig]) -> _core.KernelFamily:
    """The family for a spec that names none: MOEJIT_FAMILY (mma or wgmma) if set, else the
    heuristic's (wgmma on sm_90a). An explicit tile the heuristic family cannot run (an
    mma tile on Hopper) selects mma."""
    forced = os.environ.get("MOEJIT_FAMILY", "").strip()
    if forced:
        try:
            return _core.parse_family(forced)
        except _core.SpecError as e:
            raise _core.SpecError(f"MOEJIT_FAMILY={forced!r}: expected mma or wgmma") from e
    family = _core.heuristic_family(spec)
    if tile is not None and family != _core.KernelFamily.mma:
        try:
            spec.with_family(family).with_tile(tile).validate()
        except _core.SpecError:
            return _core.KernelFamily.mma
    return family


def kernel_spec(
    op: str,
    *,
    m: Optional[int] = None,
    n: Optional[int] = None,
    k: Optional[int] = None,
    trans_a: bool = False,
    trans_b: bool = False,
    dtype: str = "bf16",
    block_size: int = 128,
    target: TargetLike = "sm_90a",
    tile: TileLike = None,
    family: FamilyLike = None,
) -> _core.KernelSpec:
    """The spec of one block-sparse product C = op(A) x op(B), C being M x N.

    The extent that varies with the token count (see `_core.dynamic_extent`) is not
    compiled in: it may be given (it is then ignored) or left out. The others are
    required. Without `tile`, the untuned heuristic configuration is used. Without
    `family` ("mma" or "wgmma"), MOEJIT_FAMILY if set, else the heuristic's: wgmma on
    sm_90a (Hopper), mma elsewhere. Raises SpecError (a ValueError) naming the offending
    field.
    """
    if not isinstance(op, str):
        raise _core.SpecError(f"op={op!r}: expected 'sdd', 'dsd' or 'dds'")
    if not isinstance(dtype, str):
        raise _core.SpecError(f"dtype={dtype!r}: expected 'bf16' or 'fp16'")
    spec = _core.KernelSpec()
    spec.op = _core.parse_op(op)
    spec.trans_a = _flag("trans_a", trans_a)
    spec.trans_b = _flag("trans_b", trans_b)
    spec.dtype = _core.parse_dtype(dtype)
    spec.block_size = _integer("block_size", block_size, 1, "a block size such as 64 or 128")
    spec.target = as_target(target)
    dynamic = _core.dynamic_extent(spec.op, spec.trans_a, spec.trans_b)
    for name, value in (("m", m), ("n", n), ("k", k)):
        if name == dynamic:
            if value is not None:
                _extent(name, value)   # ignored, but a wrong type is still a mistake
            setattr(spec, name, _core.DYNAMIC)
        elif value is None:
            raise _core.SpecError(
                f"{name}=None: expected the compile-time extent {name} of {op} with "
                f"trans={'t' if trans_a else 'n'}{'t' if trans_b else 'n'} (only {dynamic} may be left out)"
            )
        else:
            setattr(spec, name, _extent(name, value))
    if tile is not None and not isinstance(tile, _core.TileConfig):
        tile = _core.TileConfig.parse(tile)
    spec.family = as_family(family) if family is not None else _default_family(spec, tile)
    spec.tile = _core.heuristic_tile_config(spec) if tile is None else tile
    spec.validate()
    return spec


@functools.lru_cache(maxsize=1024)
def _routing_spec(op: str, target: str, experts: int, top_k: int, n: int, block_size: int, dtype: str,
                  activation: str, glu: bool) -> _core.KernelSpec:
    spec = _core.routing_spec(_core.OpKind.__members__[op], _core.Target(target), experts, top_k, n, block_size,
                              _core.parse_dtype(dtype), _core.parse_activation(activation), glu)
    spec.validate()
    return spec


def routing_kernel_spec(op: str, *, target: TargetLike = "sm_90a", experts: int = 0, top_k: int = 0, n: int = 0,
                        block_size: int = 0, dtype: str = "bf16", activation: str = "gelu",
                        glu: bool = False) -> _core.KernelSpec:
    """The spec of one routing, permutation or activation kernel (compiler/routing_spec.hpp),
    validated; the fields its op does not use are ignored. Cached: the layer asks per call."""
    if op not in _core.OpKind.__members__ or not _core.is_routing(_core.OpKind.__members__[op]):
        raise _core.SpecError(f"op={op!r}: expected a layer op (expert_histogram, expert_bins, expert_slots, "
                              "padded_gather, weighted_scatter, weighted_scatter_grad, expert_activation, "
                              "expert_activation_grad)")
    target_text = target if isinstance(target, str) else target.text()
    counts = {name: _integer(name, value, 0, f"an integer from 0 to {_MAX_EXTENT}")
              for name, value in (("experts", experts), ("top_k", top_k), ("n", n), ("block_size", block_size))}
    return _routing_spec(op, target_text, counts["experts"], counts["top_k"], counts["n"], counts["block_size"], dtype,
                         activation, _flag("glu", glu))


def source(op: str, **kwargs) -> str:
    """The CUDA source moejit generates for an op on the given extents (no GPU needed).

    Takes the arguments of `kernel_spec`, or `spec=` a ready KernelSpec.
    """
    spec = kwargs.pop("spec", None) or kernel_spec(op, **kwargs)
    return _core.generate_source(spec).source
