"""What a new user meets on the command line: flags checked before any work with one line
naming the flag, custom shapes with their activation, help for every flag, --version,
output that pipes and redirects cleanly."""

import argparse
import os
import shutil
import subprocess
import sys

import pytest

import moejit
from moejit.tools import cli
from moejit.jit import layer_kernels
from moejit.tools.cli import main

SHAPE = ["--hidden", "1024", "--ffn", "1024", "--experts", "8", "--top-k", "2"]
# The mma family compiles in a fraction of the wgmma family's time: the build tests use it.
FAST = ["--no-run", "--target", "sm_80"]
# A small kernel whose PTX (~75 KB) and SASS (~300 KB) are larger than a pipe's buffer.
SMALL_SPEC = "op=sdd trans=nt dtype=bf16 block=128 m=dyn n=256 k=256 tile=128x128x64.s3.w2x2 family=mma target=sm_90a"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One kernel cache for this file's processes, so SMALL_SPEC compiles once."""
    return str(tmp_path_factory.mktemp("cache"))


def _with(flag, value, args=SHAPE):
    out = list(args)
    out[out.index(flag) + 1] = value
    return out


BAD_FLAGS = [
    (_with("--hidden", "0"), "--hidden 0: expected a positive integer"),
    (_with("--ffn", "-1024"), "--ffn -1024: expected a positive integer"),
    (_with("--ffn", "100"), "--ffn 100: expected a multiple of block (128)"),
    (_with("--experts", "0"), "--experts 0: expected a positive integer"),
    (_with("--top-k", "9"), "--top-k 9: expected at most the number of experts (--experts 8)"),
    (_with("--hidden", "2056"), "--hidden 2056: expected a multiple of tile_k"),
    (SHAPE + ["--tokens", "-5"], "--tokens: -5: expected a positive integer"),
]


@pytest.mark.parametrize("command", [["build", "--no-run"], ["tune"], ["bench", "layer"]])
@pytest.mark.parametrize("args,message", BAD_FLAGS)
def test_a_bad_flag_is_one_line_naming_it_before_any_work(command, args, message, capsys, monkeypatch):
    def no_work(*a, **k):
        raise AssertionError("work started before the flags were checked")

    monkeypatch.setattr(cli, "Runtime", no_work)
    monkeypatch.setattr(cli, "gpu_available", no_work)
    with pytest.raises(SystemExit) if "--tokens" in args else _returns(2) as status:
        status.value = main(command + args)
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], captured.err
    assert lines[0].startswith("moejit " + " ".join(c for c in command if not c.startswith("-")))


class _returns:
    """A context whose `.value` the test sets to main's status, checked on exit."""

    def __init__(self, expected):
        self.expected, self.value = expected, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            assert self.value == self.expected
        return False


def test_the_shape_rule_is_the_kernels_and_dmoe_shares_it():
    """hidden 2056 is a multiple of 8 (the routing kernels take it) but no product kernel
    tiles it: the layer and the CLI both reject it, each in its own names."""
    with pytest.raises(layer_kernels.LayerShapeError, match="hidden_size=2056: expected a multiple of tile_k"):
        layer_kernels.check_layer_shape(2056, 1024, 8, 2)
    with pytest.raises(moejit.SpecError, match="k=2056"):   # the kernel's own rule
        moejit.kernel_spec("sdd", n=8 * 1024, k=2056, trans_b=True)
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="hidden_size=2056: expected a multiple of tile_k"):
        moejit.dMoE(2056, 1024, 8, 2, device="meta")
    with pytest.raises(ValueError, match="top_k=9: expected at most the number of experts"):
        moejit.dMoE(1024, 1024, 8, 9, device="meta")
    # What both accept: a multiple of 64 that the routing kernels take as well.
    layer_kernels.check_layer_shape(2048 + 64, 1024, 8, 2)
    moejit.dMoE(2048 + 64, 1024, 8, 2, device="meta")
    assert main(["build", *FAST, "--hidden", "2112", "--ffn", "128", "--experts", "2", "--top-k", "1",
                 "--block-size", "64"]) == 0
    del torch


def test_a_spec_error_carries_its_field_value_and_expectation():
    with pytest.raises(moejit.SpecError) as info:
        moejit.kernel_spec("sdd", n=1024, k=2056, trans_b=True)
    assert (info.value.field, info.value.value) == ("k", "2056")
    assert "multiple of tile_k" in info.value.expected


def test_activation_and_glu_describe_the_custom_layer(capsys):
    assert main(["build", *FAST, *SHAPE, "--activation", "silu", "--glu"]) == 0
    out = capsys.readouterr().out
    assert "custom: hidden 1024, ffn 1024, 8 experts, top-2, 16384 tokens, silu (GLU)" in out
    assert "expert_activation_bf16_b128_silu_glu" in out and "expert_activation_grad_bf16_b128_silu_glu" in out
    assert main(["build", *FAST, *SHAPE]) == 0
    assert "expert_activation_bf16_b128_gelu " in capsys.readouterr().out
    args = cli._parser().parse_args(["bench", "layer", *SHAPE, "--activation", "relu", "--glu"])
    shape = cli._shapes_from_args(args)[0]
    assert (shape.activation, shape.glu) == ("relu", True)
    assert "--activation relu --glu" in cli._bench_command(args)
    # A named model has its own activation: overriding it is refused, not silently dropped.
    assert main(["build", "--no-run", "--model", "mixtral-8x7b", "--activation", "gelu"]) == 2
    assert "--activation and --glu describe a shape" in capsys.readouterr().err


def _all_actions(parser, path=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_actions(sub, path + (name,))
        else:
            yield path, action


def test_every_flag_has_help():
    missing = [f"{' '.join(path)} {'/'.join(a.option_strings) or a.dest}"
               for path, a in _all_actions(cli._parser()) if not a.help]
    assert missing == []
    text = cli._parser()._subparsers._group_actions[0].choices["source"].format_help()
    assert "sdd (C sparse, --trans nt): M = token rows (varies), N = E*F, K = H" in text


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"moejit {moejit.__version__}"


def test_help_and_dir_show_the_public_names():
    assert "hidden_size" in moejit.dMoE.__doc__ and "ffn_hidden_size" in moejit.dMoE.__doc__
    for name in ("exchange_chunks", "init_std", "router_jitter", "block_size", "device"):
        assert f"{name}:" in moejit.dMoE.__doc__, name
    for value_type in (moejit.CompileError, moejit.SpecError, moejit.KernelSpec, moejit.Target, moejit.TileConfig):
        assert value_type.__doc__ and len(value_type.__doc__) > 60, value_type
    names = dir(moejit)
    for lazy in ("dMoE", "ReferenceMoE", "Topology", "ops", "route"):
        assert lazy in names


def _moejit(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "moejit", *args], capture_output=True, text=True, **kwargs)


def test_a_closed_pipe_ends_quietly(cache):
    """`moejit show ... | head -1`: no traceback, no "Broken pipe" message."""
    env = dict(os.environ, MOEJIT_CACHE_DIR=cache)
    code = ("import subprocess, sys; "
            f"p = subprocess.Popen([sys.executable, '-m', 'moejit', 'show', '--spec', {SMALL_SPEC!r}], "
            "stdout=subprocess.PIPE, stderr=subprocess.PIPE); "
            "p.stdout.readline(); p.stdout.close(); err = p.stderr.read().decode(); "
            "sys.stdout.write(f'{p.wait()}\\n' + err)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    status, err = out.split("\n", 1)
    assert "Traceback" not in err and "Broken pipe" not in err and "Errno 32" not in err, err
    assert int(status) == 141, out   # the pipe did break, and was handled


@pytest.mark.skipif(not os.path.exists("/usr/local/cuda/bin/ptxas") and shutil.which("ptxas") is None,
                    reason="no ptxas here")
def test_show_section_ptx_is_a_ptx_file_ptxas_takes(cache, tmp_path):
    env = dict(os.environ, MOEJIT_CACHE_DIR=cache)
    result = _moejit("show", "--spec", SMALL_SPEC, "--section", "ptx", env=env)
    assert result.returncode == 0, result.stderr
    ptx = tmp_path / "k.ptx"
    ptx.write_text(result.stdout)
    assert result.stdout.startswith("//") and ".version" in result.stdout[:2000] and "== " not in result.stdout
    ptxas = shutil.which("ptxas") or "/usr/local/cuda/bin/ptxas"
    assembled = subprocess.run([ptxas, "-arch=sm_90a", str(ptx), "-o", str(tmp_path / "k.cubin")],
                               capture_output=True, text=True)
    assert assembled.returncode == 0, assembled.stderr
    assert "from the kernel database, or compiling" in result.stderr   # progress, on stderr only


def test_inspection_repr_is_a_short_summary(cache, monkeypatch):
    monkeypatch.setenv("MOEJIT_CACHE_DIR", cache)
    info = moejit.inspect(SMALL_SPEC)
    text = repr(info)
    assert len(text) < 400 and "\n" not in text and info.name in text and len(info.ptx) > 10000


def test_a_warm_build_says_where_its_kernels_came_from(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOEJIT_CACHE_DIR", str(tmp_path))
    args = ["build", *FAST, "--model", "olmoe-1b-7b"]
    assert main(args) == 0
    cold = capsys.readouterr().out
    assert "11 compiled, 0 from the kernel database" in cold and "compiled in" in cold
    assert main(args) == 0
    warm = capsys.readouterr().out
    assert "0 compiled, 11 from the kernel database" in warm
    assert "compiled in" not in warm and warm.count(": from the kernel database") == 11
    table = [line for line in warm.splitlines() if line.startswith(("sdd_", "dsd_", "expert_", "padded_", "weighted_"))]
    assert len(table) == 11 and all(" - " in line and "database" in line for line in table)


def test_a_warning_prints_its_message_not_the_source_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOEJIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("MOEJIT_ABLATE", "mma")   # the runtime warns that results are wrong
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["build", "--no-run", "--hidden", "256", "--ffn", "128", "--experts", "2", "--top-k", "1"]) == 0
    err = capsys.readouterr().err
    assert "moejit: warning: moejit runtime with ablated kernels" in err
    assert "warnings.warn" not in err and "MoejitWarning" not in err and ".py:" not in err
