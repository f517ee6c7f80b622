"""Useful FLOPs of `moejit bench`: hand-computed cases, GLU, real tokens only, and the
ratios between systems measured on the same work."""

import pytest
import torch

from moejit.tools.bench.flops import (dense_mlp_width, expert_matrices, kernel_extents, kernel_flops, layer_flops,
                                product_flops)
from moejit.tools.bench.ratios import fill_ratios, ratio, speedups
from moejit.tools.bench.results import SystemResult
from moejit.tools.bench.token_layout import TokenLayout
from moejit.zoo import ModelShape, model


def test_product_flops_counts_a_multiply_and_an_add_per_term():
    assert product_flops(2, 3, 4) == 48
    assert product_flops(0, 3, 4) == 0
    with pytest.raises(ValueError, match="k=-1: expected a non-negative integer"):
        product_flops(1, 1, -1)


def test_kernel_extents_are_the_stacked_dense_product():
    # 10 routed tokens, H = 4, F = 6: sdd [10,4]@[4,6]; dsd [10,6]@[6,4]; dsd_t [6,10]@[10,4].
    assert kernel_extents("sdd", 10, 4, 6) == (10, 6, 4)
    assert kernel_extents("dsd", 10, 4, 6) == (10, 4, 6)
    assert kernel_extents("dsd_t", 10, 4, 6) == (6, 4, 10)
    for case in ("sdd", "dsd", "dsd_t"):
        assert kernel_flops(case, 10, 4, 6) == 2 * 10 * 4 * 6 == 480
    with pytest.raises(ValueError, match="case='dds': expected one of sdd, dsd, dsd_t"):
        kernel_extents("dds", 1, 1, 1)


def test_kernel_flops_count_real_tokens_not_padding():
    # Experts with 3, 0 and 130 tokens pad to 128, 0 and 256 rows at block 128: the useful
    # work is over the 133 real tokens only, whatever the padding.
    layout = TokenLayout.from_counts(torch.tensor([3, 0, 130]), 128)
    assert layout.rows == 384 and layout.routed == 133
    assert kernel_flops("sdd", layout.routed, 64, 32) == 2 * 133 * 64 * 32


def test_layer_flops_by_hand():
    plain = ModelShape("plain", hidden=4, ffn=6, experts=8, top_k=2, tokens=10, activation="gelu", glu=False)
    # 10 tokens x top-2 = 20 routed rows; two products of 2*20*4*6 = 960 FLOPs each.
    assert layer_flops(plain, "forward") == 2 * 960
    # Backward: a gradient of the input and one of the weight per product.
    assert layer_flops(plain, "forward+backward") == 3 * 2 * 960
    gated = ModelShape("gated", 4, 6, 8, 2, 10, "silu", True)
    assert expert_matrices(True) == 3 and expert_matrices(False) == 2
    assert layer_flops(gated, "forward") == 3 * 960
    assert layer_flops(gated, "forward+backward") == 9 * 960
    assert layer_flops(gated, "forward", tokens=5) == 3 * 480
    with pytest.raises(ValueError, match="case='backward': expected one of forward, forward\\+backward"):
        layer_flops(gated, "backward")


def test_dense_mlp_with_the_same_flops():
    shape = model("qwen3-30b-a3b")
    width = dense_mlp_width(shape)
    assert width == 8 * 768
    # A dense GLU MLP of that width over every token does the layer's expert arithmetic.
    dense_forward = 3 * product_flops(shape.tokens, width, shape.hidden)
    assert dense_forward == layer_flops(shape, "forward")


def test_mixtral_published_shape():
    shape = model("mixtral-8x7b")
    # 8192 tokens x top-2, H 4096, F 14336, SwiGLU: 3 products of 2*16384*4096*14336.
    assert layer_flops(shape, "forward") == 3 * 2 * 16384 * 4096 * 14336 == 5_772_436_045_824


def test_ratios_between_systems():
    results = [SystemResult("moejit", ms=2.0), SystemResult("dense", ms=1.0), SystemResult("grouped_mm", ms=3.0),
               SystemResult("stk", ms=None, note="failed to run: x")]
    fill_ratios(results)
    by = {r.system: r for r in results}
    assert by["dense"].ratio_to_dense == 1.0
    assert by["moejit"].ratio_to_dense == 0.5          # half the dense rate
    assert by["grouped_mm"].ratio_to_dense == pytest.approx(1 / 3)
    assert by["stk"].ratio_to_dense is None
    s = speedups(results)
    assert s == {"dense": 0.5, "grouped_mm": 1.5, "stk": None}


def test_ratios_without_dense_or_moejit():
    results = [SystemResult("moejit", ms=2.0)]
    fill_ratios(results)
    assert results[0].ratio_to_dense is None
    assert speedups([SystemResult("dense", ms=1.0)]) == {"dense": None}
    assert ratio(1.0, 0.0) is None and ratio(None, 1.0) is None and ratio(3.0, 2.0) == 1.5
