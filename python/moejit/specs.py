"""Building kernel specs from op names and extents, and reading their generated source."""

from __future__ import annotations

from typing import Optional, Union

from . import _core

TargetLike = Union[str, _core.Target]
TileLike = Union[str, _core.TileConfig, None]


def as_target(target: TargetLike) -> _core.Target:
    return target if isinstance(target, _core.Target) else _core.Target(target)


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
) -> _core.KernelSpec:
    """The spec of one block-sparse product C = op(A) x op(B), C being M x N.

    The extent that varies with the token count (see `_core.dynamic_extent`) is not
    compiled in: it may be given (it is then ignored) or left out. The others are
    required. Without `tile`, the untuned heuristic configuration is used. Raises
    SpecError (a ValueError) naming the offending field.
    """
    spec = _core.KernelSpec()
    spec.op = _core.parse_op(op)
    spec.trans_a = bool(trans_a)
    spec.trans_b = bool(trans_b)
    spec.dtype = _core.parse_dtype(dtype)
    spec.block_size = int(block_size)
    spec.target = as_target(target)
    dynamic = _core.dynamic_extent(spec.op, spec.trans_a, spec.trans_b)
    for name, value in (("m", m), ("n", n), ("k", k)):
        if name == dynamic:
            setattr(spec, name, _core.DYNAMIC)
        elif value is None:
            raise _core.SpecError(
                f"{name}=None: expected the compile-time extent {name} of {op} with "
                f"trans={'t' if trans_a else 'n'}{'t' if trans_b else 'n'} (only {dynamic} may be left out)"
            )
        else:
            setattr(spec, name, int(value))
    if tile is None:
        spec.tile = _core.heuristic_tile_config(spec)
    else:
        spec.tile = tile if isinstance(tile, _core.TileConfig) else _core.TileConfig.parse(tile)
    spec.validate()
    return spec


def source(op: str, **kwargs) -> str:
    """The CUDA source moejit generates for an op on the given extents (no GPU needed).

    Takes the arguments of `kernel_spec`, or `spec=` a ready KernelSpec.
    """
    spec = kwargs.pop("spec", None) or kernel_spec(op, **kwargs)
    return _core.generate_source(spec).source
