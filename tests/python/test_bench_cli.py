"""`moejit bench` on the command line: argument errors, and a clear message without a GPU."""

import pytest

from moejit.tools.cli import _parser, _shapes_from_args, main
from conftest import CUDA


def test_bench_needs_a_kind(capsys):
    with pytest.raises(SystemExit):
        main(["bench"])
    assert "kernels" in capsys.readouterr().err


def test_unknown_peer_is_named(capsys):
    assert main(["bench", "kernels", "--model", "qwen3-30b-a3b", "--against", "dense,cublaslt"]) == 1
    assert "--against: unknown peer 'cublaslt'; expected names from dense, grouped_mm, bmm, stk, megablocks" \
        in capsys.readouterr().err


def test_unknown_model_is_named(capsys):
    assert main(["bench", "layer", "--model", "mixtral-8x7b", "gpt-5"]) == 1
    assert "model='gpt-5': expected one of mixtral-8x7b" in capsys.readouterr().err


def test_partial_dimensions_are_refused(capsys):
    assert main(["bench", "kernels", "--hidden", "512"]) == 2
    assert "explicit dimensions need all of" in capsys.readouterr().err


def test_model_and_dimensions_are_exclusive(capsys):
    assert main(["bench", "kernels", "--model", "olmoe-1b-7b", "--hidden", "512", "--ffn", "256", "--experts", "4",
                 "--top-k", "2"]) == 2
    assert "give either --model or" in capsys.readouterr().err


def test_timing_settings_are_checked(capsys):
    for flag in ("--reps", "--rounds"):
        with pytest.raises(SystemExit) as exit_:
            main(["bench", "kernels", flag, "0"])
        assert exit_.value.code == 2
        assert f"moejit bench kernels: argument {flag}: 0: expected a positive integer" in capsys.readouterr().err


def test_several_models_and_tokens():
    args = _parser().parse_args(["bench", "kernels", "--model", "mixtral-8x7b", "olmoe-1b-7b", "--tokens", "512"])
    shapes = _shapes_from_args(args)
    assert [s.name for s in shapes] == ["mixtral-8x7b", "olmoe-1b-7b"]
    assert all(s.tokens == 512 for s in shapes)
    args = _parser().parse_args(["bench", "layer", "--hidden", "256", "--ffn", "128", "--experts", "4",
                                 "--top-k", "2"])
    assert [(s.name, s.hidden, s.experts) for s in _shapes_from_args(args)] == [("custom", 256, 4)]
    assert [s.name for s in _shapes_from_args(_parser().parse_args(["bench", "layer"]))] == ["mixtral-8x7b"]


@pytest.mark.skipif(CUDA, reason="checks the message a machine without a GPU gives")
def test_without_a_gpu_bench_says_so(capsys):
    assert main(["bench", "kernels", "--model", "olmoe-1b-7b"]) == 1
    err = capsys.readouterr().err
    assert "moejit bench kernels: needs a CUDA GPU" in err and "moejit bench plot" in err
