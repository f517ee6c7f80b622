"""The command line: the main job compiles a model's kernels without a GPU."""

import subprocess
import sys

import pytest

import moejit
from moejit.tools.cli import main
from moejit.jit.layer_kernels import layer_kernels
from moejit.zoo import MODELS, model


def test_build_compiles_the_layer_kernels(capsys):
    assert main(["build", "--model", "qwen3-30b-a3b", "--no-run", "--target", "sm_90a"]) == 0
    out = capsys.readouterr().out
    assert "qwen3-30b-a3b: hidden 2048, ffn 768, 128 experts, top-8" in out
    for name in ["sdd_nt_bf16_b128_n98304_k2048", "dsd_nn_bf16_b128_n2048_k98304", "dsd_tn_bf16_b128_m98304_n2048",
                 "expert_histogram_e128", "expert_bins_b128_e128_n768", "expert_slots_e128",
                 "padded_gather_bf16_topk8_n2048", "weighted_scatter_bf16_topk8_n2048",
                 "weighted_scatter_grad_bf16_topk8_n2048", "expert_activation_bf16_b128_silu_glu",
                 "expert_activation_grad_bf16_b128_silu_glu"]:
        assert name in out
    assert "11 kernels ready" in out and "11 compiled, 0 from the kernel database" in out


def test_build_with_explicit_dimensions(capsys):
    assert main(["build", "--hidden", "512", "--ffn", "1024", "--experts", "4", "--top-k", "2", "--no-run",
                 "--block-size", "64", "--dtype", "fp16", "--show-source"]) == 0
    out = capsys.readouterr().out
    assert "sdd_nt_fp16_b64_n4096_k512" in out
    assert "moejit::fp16_t, 64" in out


def test_build_rejects_partial_dimensions(capsys):
    assert main(["build", "--hidden", "512", "--no-run"]) == 2
    assert "explicit dimensions need all of" in capsys.readouterr().err


def test_build_rejects_unknown_model(capsys):
    assert main(["build", "--model", "gpt-5", "--no-run"]) == 1
    assert "model='gpt-5': expected one of mixtral-8x7b" in capsys.readouterr().err


def test_source_from_spec_text(capsys):
    spec = moejit.kernel_spec("dds", m=512, n=1024)
    assert main(["source", "--spec", spec.text()]) == 0
    assert capsys.readouterr().out == moejit.generate_source(spec).source


def test_source_from_arguments(capsys):
    assert main(["source", "--op", "dsd", "--trans", "tn", "--m", "1024", "--n", "256"]) == 0
    assert "moejit::OpKind::dsd, true, false" in capsys.readouterr().out


def test_models_lists_the_zoo(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in MODELS:
        assert name in out


def test_every_zoo_model_has_valid_layer_kernels():
    for shape in MODELS.values():
        kernels = layer_kernels(shape)
        assert len(kernels) == 3
        assert {k.spec.short_name().split("_")[0] for k in kernels} == {"sdd", "dsd"}
    assert model("mixtral-8x7b").ffn == 14336


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "moejit", "models"], capture_output=True, text=True, check=True)
    assert "mixtral-8x7b" in result.stdout
