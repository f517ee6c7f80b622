"""Keys that mean what the binary needs: a kernel compiled by another NVRTC version is the
same binary (the NVRTC version is provenance), a process without NVRTC runs from the
databases alone, a kernel found nowhere says how to get it, and each stored kernel says
where it came from."""

import pytest

import moejit
from moejit import _core
from moejit.jit.kernel_db import KernelDb
from moejit.jit.runtime import Runtime
from moejit.jit.specs import routing_kernel_spec

SPEC = routing_kernel_spec("expert_histogram", target="sm_90a", experts=8)


def _config(cache="", read_only=()):
    config = _core.KernelDbConfig()
    config.cache_path = str(cache)
    config.read_only_paths = [str(p) for p in read_only]
    return config


def _copy_with_nvrtc(src, dst, nvrtc_version):
    """Stores `src`'s kernels in `dst` as if another NVRTC version had compiled them."""
    source = _core.KernelDb(str(src), True)
    target = _core.KernelDb(str(dst), False)
    for entry in source.entries():
        key, kernel = source.load(entry.key_hash)
        other = _core.KernelKey(key.spec_text, key.target, key.template_hash, nvrtc_version, key.compile_options,
                                key.moejit_version)
        assert other.hash_hex() == key.hash_hex(), "the NVRTC version must not change the key"
        assert target.insert(other, kernel)


def test_a_database_from_another_nvrtc_version_still_hits(tmp_path):
    made = tmp_path / "made.sqlite"
    Runtime(database=_config(made)).compile(SPEC)
    shipped = tmp_path / "shipped.sqlite"
    _copy_with_nvrtc(made, shipped, "12.9")
    runtime = Runtime(database=_config(read_only=[shipped]))
    runtime.compile(SPEC)
    assert (runtime.core.stats.database_hits, runtime.core.stats.compiled) == (1, 0)
    [row] = KernelDb.open(shipped, read_only=True).entries()
    assert row.nvrtc_version == "12.9"


def test_without_nvrtc_kernels_come_from_the_databases(tmp_path, monkeypatch):
    made = tmp_path / "made.sqlite"
    Runtime(database=_config(made)).compile(SPEC)
    monkeypatch.setenv("MOEJIT_NVRTC", "none")
    runtime = Runtime(database=_config(read_only=[made]), nvrtc_wheels=[])
    runtime.compile(SPEC)
    assert runtime.core.stats.database_hits == 1


def test_a_kernel_in_no_database_without_nvrtc_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MOEJIT_NVRTC", "none")
    runtime = Runtime(database=_config(tmp_path / "empty.sqlite"), nvrtc_wheels=[])
    with pytest.raises(RuntimeError) as error:
        runtime.compile(SPEC)
    message = str(error.value)
    assert SPEC.short_name() in message and "not in any kernel database" in message
    assert "moejit db bake" in message and "nvidia-cuda-nvrtc" in message


def test_each_kernel_records_what_made_it(tmp_path):
    path = tmp_path / "k.sqlite"
    Runtime(database=_config(path), origin="bake").compile(SPEC)
    other = routing_kernel_spec("expert_histogram", target="sm_90a", experts=16)
    Runtime(database=_config(path)).compile(other)
    origins = {r.spec_text: r.origin for r in KernelDb.open(path, read_only=True).entries()}
    assert origins == {SPEC.text(): "bake", other.text(): "compile"}


def test_origin_must_be_known():
    with pytest.raises(moejit.SpecError, match="origin"):
        Runtime(database=None, origin="downloaded")
