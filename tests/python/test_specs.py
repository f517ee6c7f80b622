"""Spec building, validation errors and generated source from Python: no GPU needed."""

import itertools
import os

import pytest

import moejit
from moejit import _core
from moejit.jit import paths as _paths
from moejit.jit.specs import routing_kernel_spec


def test_kernel_spec_fills_the_dynamic_extent_and_a_tile():
    spec = moejit.kernel_spec("sdd", n=114688, k=4096, trans_b=True)
    # Hopper (sm_90a, the default target) gets the wgmma family; sdd a pair of blocks of one
    # block row per tile.
    assert spec.text() == ("op=sdd trans=nt dtype=bf16 block=128 m=dyn n=114688 k=4096 "
                           "tile=128x256x64.s4.w8x1 family=wgmma target=sm_90a")
    assert moejit.KernelSpec.parse(spec.text()) == spec
    assert spec.hash_hex() == moejit.KernelSpec.parse(spec.text()).hash_hex()
    assert spec.threads == 384 and spec.shared_bytes == 230464
    mma = moejit.kernel_spec("sdd", n=114688, k=4096, trans_b=True, family="mma")
    assert mma.text() == ("op=sdd trans=nt dtype=bf16 block=128 m=dyn n=114688 k=4096 "
                          "tile=128x128x64.s3.w2x2 family=mma target=sm_90a")
    assert mma.threads == 128
    ampere = moejit.kernel_spec("sdd", n=114688, k=4096, trans_b=True, target="sm_80")
    assert ampere.family == _core.KernelFamily.mma


def test_family_choice():
    # An explicit mma tile on Hopper selects mma; an explicit wgmma tile, wgmma.
    assert moejit.kernel_spec("dsd", n=512, k=1024, tile="128x128x32.s4.w2x2").family == _core.KernelFamily.mma
    assert moejit.kernel_spec("dsd", n=512, k=1024, tile="128x128x64.s4.w8x1").family == _core.KernelFamily.wgmma
    # A dense extent no 64-wide wgmma tile divides falls back to mma.
    assert moejit.kernel_spec("dsd", n=544, k=1024).family == _core.KernelFamily.mma
    with pytest.raises(moejit.SpecError, match=r"^target=sm_80: expected sm_90a for family=wgmma"):
        moejit.kernel_spec("dsd", n=512, k=1024, target="sm_80", family="wgmma")
    with pytest.raises(moejit.SpecError, match=r"^family=tcgen05: expected mma or wgmma"):
        moejit.kernel_spec("dsd", n=512, k=1024, family="tcgen05")
    with pytest.raises(moejit.SpecError, match=r"^warps=2x2: expected 8x1 for family=wgmma"):
        moejit.kernel_spec("dsd", n=512, k=1024, family="wgmma", tile="128x128x64.s4.w2x2")


def test_moejit_family_environment_overrides_the_heuristic(monkeypatch):
    monkeypatch.setenv("MOEJIT_FAMILY", "mma")
    assert moejit.kernel_spec("sdd", n=512, k=256).family == _core.KernelFamily.mma
    assert moejit.kernel_spec("sdd", n=512, k=256, family="wgmma").family == _core.KernelFamily.wgmma
    monkeypatch.setenv("MOEJIT_FAMILY", "fast")
    with pytest.raises(moejit.SpecError, match="MOEJIT_FAMILY='fast': expected mma or wgmma"):
        moejit.kernel_spec("sdd", n=512, k=256)


@pytest.mark.parametrize("op,trans,dynamic", [
    ("sdd", "nn", "m"), ("sdd", "tt", "m"), ("dsd", "nn", "m"), ("dsd", "tn", "k"),
    ("dds", "nn", "k"), ("dds", "nt", "n"),
])
def test_dynamic_extent(op, trans, dynamic):
    assert _core.dynamic_extent(_core.parse_op(op), trans[0] == "t", trans[1] == "t") == dynamic
    extents = {"m": 256, "n": 512, "k": 1024}
    spec = moejit.kernel_spec(op, trans_a=trans[0] == "t", trans_b=trans[1] == "t", **extents)
    assert getattr(spec, dynamic) == _core.DYNAMIC   # given, but not compiled in
    for name in set(extents) - {dynamic}:
        assert getattr(spec, name) == extents[name]


def test_missing_static_extent_names_it():
    with pytest.raises(moejit.SpecError, match=r"^k=None: expected the compile-time extent k"):
        moejit.kernel_spec("sdd", n=256)


@pytest.mark.parametrize("kwargs,message", [
    (dict(op="sdd", n=256, k=256, block_size=96), r"block=96: expected 64 or 128"),
    (dict(op="sdd", n=256, k=256, dtype="fp32"), r"dtype=fp32: expected bf16 or fp16"),
    (dict(op="sdd", n=256, k=256, target="sm_75"), r"target=sm_75: expected an architecture sm_80 or newer"),
    (dict(op="sdd", n=256, k=100), r"k=100: expected a multiple of tile_k"),
    (dict(op="sdd", n=200, k=256), r"n=200: expected a multiple of block \(128\)"),
    (dict(op="dsd", n=256, k=256, tile="128x128x32.s9.w2x2"), r"stages=9: expected 2 to 8"),
    (dict(op="dsd", n=256, k=256, tile="64x128x32.s4.w2x2", block_size=128),
     None),   # valid: tile_m 64 divides the block
    (dict(op="dds", m=256, n=256, tile="128x64x32.s4.w2x2", block_size=64), None),
    (dict(op="dds", m=256, n=256, tile="128x128x32.s4.w2x2", block_size=64),
     r"tile_n=128: expected a divisor of block \(64\)"),
    (dict(op="sdd", n=256, k=256, tile="256x256x32.s4.w2x2", block_size=128),
     r"tile=256x256x32.s4.w2x2: expected at most 128 accumulators per thread"),
    (dict(op="sdd", n=256, k=256, tile="bogus"), r"tile=bogus: expected MxNxK"),
    (dict(op="dsd", n=256, k=256, tile="128x128x64.s4.w8x1.c0"),
     r"tile=128x128x64.s4.w8x1.c0: expected MxNxK.sS.wWMxWN\[.cC|.cCMxCN\]\[.pingpong\]"),
    (dict(op="dsd", n=1024, k=256, tile="128x128x64.s4.w8x1.c3", family="wgmma"),
     r"cluster=3: expected 1, 2 or 4"),
    (dict(op="sdd", n=256, k=256, tile="128x128x64.s4.w8x1.c2", family="wgmma"),
     r"cluster=2: expected 1 for op=sdd"),
    (dict(op="dsd", n=256, k=256, tile="128x128x32.s4.w2x2.c2", family="mma"),
     r"cluster=2: expected 1 for family=mma"),
    (dict(op="dsd", n=768, k=256, tile="128x256x64.s3.w8x1.c2", family="wgmma"),
     r"n=768: expected n / tile_n \(= 3\) a multiple of the cluster \(2\)"),
    (dict(op="dsd", n=1024, k=256, tile="128x256x64.s3.w8x1.c4", family="wgmma"), None),
    (dict(op="dsd", n=1024, k=256, tile="128x256x64.s4.w8x1.c2x1", family="wgmma"), None),
    (dict(op="dsd", n=1024, k=256, tile="128x256x64.s4.w8x1.c3x1", family="wgmma"),
     r"cluster_m=3: expected 1 or 2"),
    (dict(op="dsd", n=1024, k=256, tile="128x128x64.s5.w8x1.c2x1.pingpong", family="wgmma"),
     r"cluster_m=2: expected 1 with .pingpong"),
    (dict(op="dsd", n=1024, k=256, tile="128x256x64.s4.w8x1.c2x2", family="wgmma"),
     r"cluster_m=2: expected 1 with cluster=2"),
    (dict(op="dds", m=256, n=256, tile="128x128x64.s4.w8x1.c2x1", family="wgmma"),
     r"cluster_m=2: expected 1 for op=dds"),
])
def test_validation_messages(kwargs, message):
    op = kwargs.pop("op")
    if message is None:
        moejit.kernel_spec(op, **kwargs)
        return
    with pytest.raises(moejit.SpecError, match=message):
        moejit.kernel_spec(op, **kwargs)


def test_spec_error_is_a_value_error():
    assert issubclass(moejit.SpecError, ValueError)


def test_source_instantiates_the_template_with_the_constants():
    src = moejit.source("dsd", m=98304, n=2048, trans_a=True, dtype="fp16", block_size=64, family="mma")
    assert '#include "moejit/bsr_gemm_sm80.cuh"' in src
    assert ("moejit::bsr_gemm_sm80<moejit::OpKind::dsd, true, false, moejit::fp16_t, 64, 98304LL, 2048LL, -1LL"
            in src)
    assert "// spec: op=dsd trans=tn dtype=fp16 block=64 m=98304 n=2048 k=dyn" in src
    hopper = moejit.source("dsd", m=98304, n=2048, trans_a=True, dtype="fp16", block_size=64)
    assert '#include "moejit/bsr_gemm_sm90.cuh"' in hopper
    assert ("template __global__ void moejit::bsr_gemm_sm90<moejit::OpKind::dsd, true, false, moejit::fp16_t, 64, "
            "98304LL, 2048LL, -1LL, 64, 256, 64, 5, 4, 1, false, 1>(const __grid_constant__ moejit::BsrGemmSm90Params);"
            in hopper)


def test_cluster_tiles_text_and_source():
    tile = moejit.TileConfig.parse("128x128x64.s5.w8x1.c2.pingpong")
    assert (tile.tile_m, tile.tile_n, tile.stages, tile.pingpong, tile.cluster) == (128, 128, 5, True, 2)
    assert tile.text() == "128x128x64.s5.w8x1.c2.pingpong"
    assert repr(tile) == "TileConfig('128x128x64.s5.w8x1.c2.pingpong')"
    assert moejit.TileConfig(128, 256, 64, 3, 8, 1, cluster=4).text() == "128x256x64.s3.w8x1.c4"
    assert moejit.TileConfig(128, 256, 64, 3, 8, 1).cluster == 1
    assert moejit.TileConfig.parse("128x256x64.s3.w8x1").text() == "128x256x64.s3.w8x1"   # never .c1
    tile.cluster = 4
    assert tile.text() == "128x128x64.s5.w8x1.c4.pingpong"
    assert tile != moejit.TileConfig.parse("128x128x64.s5.w8x1.c2.pingpong")
    spec = moejit.kernel_spec("dsd", n=4096, k=114688, tile="128x256x64.s3.w8x1.c2")
    assert spec.family == _core.KernelFamily.wgmma and spec.tile.cluster == 2
    assert " tile=128x256x64.s3.w8x1.c2 " in spec.text() and moejit.KernelSpec.parse(spec.text()) == spec
    src = moejit.source("dsd", spec=spec)
    assert ", 128, 256, 64, 3, 8, 1, false, 2>(const __grid_constant__ moejit::BsrGemmSm90Params);" in src


def test_cluster_along_m_text_and_source():
    tile = moejit.TileConfig.parse("128x256x64.s4.w8x1.c2x1")
    assert (tile.cluster, tile.cluster_m, tile.cluster_ctas) == (1, 2, 2)
    assert tile.text() == "128x256x64.s4.w8x1.c2x1"
    assert moejit.TileConfig(128, 256, 64, 4, 8, 1, cluster_m=2) == tile
    assert moejit.TileConfig.parse("128x256x64.s4.w8x1.c2").cluster_m == 1
    spec = moejit.kernel_spec("dsd", m=114688, n=4096, trans_a=True, tile="128x256x64.s4.w8x1.c2x1")
    assert " tile=128x256x64.s4.w8x1.c2x1 " in spec.text() and moejit.KernelSpec.parse(spec.text()) == spec
    src = moejit.source("dsd", spec=spec)
    assert ", 128, 256, 64, 4, 8, 1, false, 1, 2>(const __grid_constant__ moejit::BsrGemmSm90Params);" in src


def test_with_tile_copies():
    spec = moejit.kernel_spec("sdd", n=1024, k=512, family="mma")
    other = spec.with_tile(moejit.TileConfig.parse("64x128x32.s3.w2x2"))
    assert other.tile.text() == "64x128x32.s3.w2x2" and spec.tile.text() == "128x128x64.s3.w2x2"
    hopper = spec.with_family(_core.KernelFamily.wgmma)
    assert hopper.family == _core.KernelFamily.wgmma and hopper.tile == spec.tile and spec.family == _core.KernelFamily.mma
    assert other.problem_text() == spec.problem_text() and other != spec


def test_source_accepts_a_ready_spec():
    spec = moejit.kernel_spec("dds", m=512, n=1024, trans_a=True)
    assert moejit.source("dds", spec=spec) == moejit.generate_source(spec).source


def test_spec_text_is_a_stable_cache_key():
    a = moejit.kernel_spec("sdd", n=1024, k=512)
    b = moejit.kernel_spec("sdd", n=1024, k=512)
    c = moejit.kernel_spec("sdd", n=1024, k=512, target="sm_80")
    assert a == b and hash(a) == hash(b) and a.hash_hex() == b.hash_hex()
    assert a != c and a.hash_hex() != c.hash_hex()


@pytest.mark.parametrize("family", ["mma", "wgmma"])
def test_runtime_compiles_each_op_once_without_a_gpu(family):
    runtime = moejit.Runtime()
    specs = [moejit.kernel_spec(op, m=256, n=256, k=256, trans_a=ta, trans_b=tb, family=family)
             for op, ta, tb in itertools.product(["sdd", "dsd", "dds"], [False, True], [False, True])]
    for spec in specs:
        kernel = runtime.compile(spec)
        assert kernel.lowered_name.startswith("_ZN6moejit13bsr_gemm_sm80" if family == "mma"
                                              else "_ZN6moejit13bsr_gemm_sm90")
        assert len(kernel.cubin) > 1000
        assert ("mma.sync.aligned.m16n8k16" if family == "mma" else "wgmma.mma_async.sync.aligned") in kernel.ptx
        assert kernel.resources.registers > 0
        assert kernel.resources.spill_store_bytes == 0 and kernel.resources.spill_load_bytes == 0
        assert kernel.dynamic_shared_bytes == spec.shared_bytes and kernel.threads == spec.threads
    again = runtime.compile(specs[0])
    assert again.cubin == runtime.compile(specs[0]).cubin
    assert runtime.core.compiled_count == len(specs)
    assert "--gpu-architecture=sm_90a" in runtime.core.compile_options(specs[0])


def test_missing_templates_directory_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="kernel templates not found"):
        moejit.Runtime(templates_dir=str(tmp_path))


def test_device_target():
    assert _core.target_for_device(9, 0).text() == "sm_90a"
    assert _core.target_for_device(8, 0).text() == "sm_80"
    assert moejit.Target("90a") == moejit.Target("sm_90a")


def test_every_template_header_is_installed():
    # The installed package's templates are what NVRTC compiles: a header missing from
    # templates/meson.build only fails when a kernel including it is compiled (on the
    # GPU host, for a new header of the wgmma kernel).
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "templates", "moejit")
    installed = os.path.join(_paths.templates_dir(), "moejit")
    if os.path.realpath(source) == os.path.realpath(installed):
        pytest.skip("running on the source tree's templates")
    assert sorted(os.listdir(source)) == sorted(n for n in os.listdir(installed) if not n.startswith("."))


def test_persistent_grid_without_a_gpu():
    # The mma family launches one thread block per tile, and nothing is launched for no
    # tile: neither needs the driver (the wgmma family's grid depends on the device).
    runtime = moejit.Runtime(database=None)
    mma = moejit.kernel_spec("dsd", n=4096, k=114688, target="sm_90a", family="mma")
    assert runtime.core.persistent_grid(mma, 1234, 0) == 1234
    wgmma = moejit.kernel_spec("dsd", n=4096, k=114688, target="sm_90a", family="wgmma", tile="128x256x64.s4.w8x1.c2")
    assert runtime.core.persistent_grid(wgmma, 0, 0) == 0


# ---- strict types at the spec boundary -----------------------------------------------------

STRICT_REJECTIONS = [
    (dict(trans_b="no"), "trans_b='no': expected True or False"),
    (dict(trans_b=1), "trans_b=1: expected True or False"),
    (dict(trans_a=None), "trans_a=None: expected True or False"),
    (dict(n=256.5), "n=256.5: expected a positive integer"),
    (dict(n=256.0), "n=256.0: expected a positive integer"),
    (dict(n="abc"), "n='abc': expected a positive integer"),
    (dict(n=True), "n=True: expected a positive integer"),
    (dict(n=2**70), f"n={2**70}: expected a positive integer extent (at most 2147483647)"),
    (dict(n=-256), "n=-256: expected a positive integer"),
    (dict(k=0), "k=0: expected a positive integer"),
    (dict(m="7"), "m='7': expected a positive integer"),   # the dynamic extent: ignored, still checked
    (dict(block_size=None), "block_size=None: expected a block size"),
    (dict(block_size=128.0), "block_size=128.0: expected a block size"),
    (dict(block_size="128"), "block_size='128': expected a block size"),
]


@pytest.mark.parametrize("kwargs, message", STRICT_REJECTIONS, ids=[str(k) for k, _ in STRICT_REJECTIONS])
def test_kernel_spec_rejects_wrong_types_naming_the_argument(kwargs, message):
    args = dict(n=256, k=256) | kwargs
    with pytest.raises(moejit.SpecError) as e:
        moejit.kernel_spec("sdd", **args)
    assert message in str(e.value)


def test_kernel_spec_takes_numpy_integers_and_booleans():
    np = pytest.importorskip("numpy")
    spec = moejit.kernel_spec("sdd", n=np.int64(256), k=np.int32(256), trans_b=True, block_size=np.int64(128))
    assert spec == moejit.kernel_spec("sdd", n=256, k=256, trans_b=True)


@pytest.mark.parametrize("field, value, message", [
    ("n", 256.5, "n=256.5: expected an integer from 1 to 2147483647"),
    ("n", "abc", "n='abc': expected an integer"),
    ("n", 2**70, f"n={2**70}: expected an integer"),
    ("k", None, "k=None: expected an integer"),
    ("block_size", None, "block_size=None: expected a block size"),
    ("trans_b", "no", "trans_b='no': expected True or False"),
    ("trans_a", 1, "trans_a=1: expected True or False"),
    ("glu", "yes", "glu='yes': expected True or False"),
    ("experts", 2.5, "experts=2.5: expected an integer from 0"),
    ("top_k", -1, "top_k=-1: expected an integer from 0"),
])
def test_core_kernel_spec_fields_are_strict(field, value, message):
    spec = _core.KernelSpec()
    with pytest.raises(_core.SpecError) as e:
        setattr(spec, field, value)
    assert message in str(e.value)
    spec.n = _core.DYNAMIC
    spec.m = 4096
    assert (spec.n, spec.m) == (_core.DYNAMIC, 4096)


@pytest.mark.parametrize("kwargs, message", [
    (dict(glu="yes"), "glu='yes': expected True or False"),
    (dict(experts=8.0), "experts=8.0: expected an integer"),
    (dict(n="4096"), "n='4096': expected an integer"),
])
def test_routing_kernel_spec_is_strict(kwargs, message):
    args = dict(target="sm_90a", experts=8, top_k=2, n=4096, block_size=128, dtype="bf16") | kwargs
    with pytest.raises(moejit.SpecError) as e:
        routing_kernel_spec("expert_activation", **args)
    assert message in str(e.value)
    with pytest.raises(_core.SpecError, match=message.split(":")[0]):
        _core.routing_spec(_core.OpKind.expert_activation, _core.Target("sm_90a"),
                           **{k: v for k, v in args.items() if k in ("experts", "top_k", "n", "block_size", "glu")})
