"""Useful FLOPs: 2*M*N*K per matrix product, counted over the real routed tokens only.

Padding rows (to the block size, or to the largest expert for a padded bmm) are work a
system chooses to do, not work the model asks for, so they never count. Neither do the
router, the activation, the permutation and the weighted combine: they are the overhead a
good MoE layer hides, and a dense MLP has none of them, so "dense with the same FLOPs" is
the ceiling for the layer (../../shared/bench/ANCHORS.md).
"""

from __future__ import annotations

from ...zoo import ModelShape

# The layer's three kernels (see layer_kernels.py), each as one product over all experts.
KERNEL_CASES = ("sdd", "dsd", "dsd_t")
KERNEL_PRODUCTS = {
    "sdd": "h = x @ w1.t()",
    "dsd": "y = h @ w2",
    "dsd_t": "dw = h.t() @ dy",
}
LAYER_CASES = ("forward", "forward+backward")


def product_flops(m: int, n: int, k: int) -> int:
    """An [m, k] @ [k, n] product: one multiply and one add per term."""
    for name, value in (("m", m), ("n", n), ("k", k)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}={value!r}: expected a non-negative integer")
    return 2 * m * n * k


def kernel_extents(case: str, routed_tokens: int, hidden: int, ffn: int) -> tuple[int, int, int]:
    """(M, N, K) of the dense product with the same work as one layer kernel over all
    experts: the experts' row blocks stacked (sdd, dsd), or their reductions chained (dsd_t)."""
    if case == "sdd":      # [R, H] @ [H, F] per expert group
        return routed_tokens, ffn, hidden
    if case == "dsd":      # [R, F] @ [F, H]
        return routed_tokens, hidden, ffn
    if case == "dsd_t":    # [F, R_e] @ [R_e, H] for every expert: K sums to R
        return ffn, hidden, routed_tokens
    raise ValueError(f"case={case!r}: expected one of {', '.join(KERNEL_CASES)}")


def kernel_flops(case: str, routed_tokens: int, hidden: int, ffn: int) -> int:
    return product_flops(*kernel_extents(case, routed_tokens, hidden, ffn))


def expert_matrices(glu: bool) -> int:
    """Weight matrices per expert: w1 and w2, plus the gate v1 for a GLU."""
    return 3 if glu else 2


def layer_flops(shape: ModelShape, case: str, tokens: int | None = None) -> int:
    """The expert products of one layer step over `tokens` tokens (default shape.tokens),
    each routed to top_k experts. Backward computes, for every forward product, the
    gradient of its input and of its weight, each as much work as the product itself."""
    tokens = shape.tokens if tokens is None else tokens
    forward = expert_matrices(shape.glu) * product_flops(tokens * shape.top_k, shape.ffn, shape.hidden)
    if case == "forward":
        return forward
    if case == "forward+backward":
        return 3 * forward
    raise ValueError(f"case={case!r}: expected one of {', '.join(LAYER_CASES)}")


def dense_mlp_width(shape: ModelShape) -> int:
    """The ffn width of the dense MLP with the layer's FLOPs: every token through top_k*F."""
    return shape.top_k * shape.ffn
