"""Type stubs of the extension, generated with pybind11-stubgen.


moejit core: kernel specs, code generation, NVRTC compilation and the CUDA runtime
"""
from __future__ import annotations
import collections.abc
import typing
__all__: list[str] = ['Activation', 'CacheStats', 'CompileError', 'CompiledKernel', 'DType', 'DYNAMIC', 'DeviceInfo', 'GeneratedSource', 'JitRuntime', 'KernelDb', 'KernelDbConfig', 'KernelDbError', 'KernelEntry', 'KernelFamily', 'KernelKey', 'KernelSpec', 'LaunchGeometry', 'OpKind', 'ResourceUsage', 'RoutingLayout', 'SpecError', 'Target', 'TileConfig', 'SalvageReport', 'TuningEntry', 'VerifyReport', 'dynamic_extent', 'generate_source', 'heuristic_family', 'heuristic_tile_config', 'is_routing', 'launch_geometry', 'nearest_bucket', 'nvrtc_search_order', 'build_toolkit_root', 'parse_activation', 'parse_dtype', 'parse_family', 'parse_op', 'routing_spec', 'search_space', 'target_for_device', 'token_bucket', 'with_heuristic_implementation', 'with_heuristic_tile']
class SpecError(ValueError):
    field: str
    value: str
    expected: str
class CompileError(RuntimeError):
    pass
class DType:
    """
    Members:
    
      bf16
    
      fp16
    """
    __members__: typing.ClassVar[dict[str, DType]]
    bf16: typing.ClassVar[DType]
    fp16: typing.ClassVar[DType]
    @typing.overload
    def __eq__(self, other: DType) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: DType) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class OpKind:
    """
    Members:
    
      sdd
    
      dsd
    
      dds
    
      expert_histogram
    
      expert_bins
    
      expert_slots
    
      padded_gather
    
      weighted_scatter
    
      weighted_scatter_grad
    
      expert_activation
    
      expert_activation_grad
    """
    __members__: typing.ClassVar[dict[str, OpKind]]
    dds: typing.ClassVar[OpKind]
    dsd: typing.ClassVar[OpKind]
    expert_activation: typing.ClassVar[OpKind]
    expert_activation_grad: typing.ClassVar[OpKind]
    expert_bins: typing.ClassVar[OpKind]
    expert_histogram: typing.ClassVar[OpKind]
    expert_slots: typing.ClassVar[OpKind]
    padded_gather: typing.ClassVar[OpKind]
    sdd: typing.ClassVar[OpKind]
    weighted_scatter: typing.ClassVar[OpKind]
    weighted_scatter_grad: typing.ClassVar[OpKind]
    @typing.overload
    def __eq__(self, other: OpKind) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: OpKind) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class Activation:
    """
    Members:
    
      gelu
    
      gelu_exact
    
      silu
    
      relu
    """
    __members__: typing.ClassVar[dict[str, Activation]]
    gelu: typing.ClassVar[Activation]
    gelu_exact: typing.ClassVar[Activation]
    relu: typing.ClassVar[Activation]
    silu: typing.ClassVar[Activation]
    @typing.overload
    def __eq__(self, other: Activation) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: Activation) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class KernelFamily:
    """
    Members:
    
      mma
    
      wgmma
    """
    __members__: typing.ClassVar[dict[str, KernelFamily]]
    mma: typing.ClassVar[KernelFamily]
    wgmma: typing.ClassVar[KernelFamily]
    @typing.overload
    def __eq__(self, other: KernelFamily) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: KernelFamily) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class Target:
    __hash__: typing.ClassVar[None] = None
    def __eq__(self, arg0: Target) -> bool:
        ...
    def __init__(self, text: str) -> None:
        ...
    def __repr__(self) -> str:
        ...
    def max_shared_bytes_per_block(self) -> int:
        ...
    def runs_on(self, major: typing.SupportsInt | typing.SupportsIndex, minor: typing.SupportsInt | typing.SupportsIndex) -> bool:
        """
        Whether a cubin for this target loads on a device of compute capability major.minor.
        """
    def text(self) -> str:
        ...
    @property
    def arch_specific(self) -> bool:
        ...
    @property
    def major(self) -> int:
        ...
    @property
    def minor(self) -> int:
        ...
class TileConfig:
    __hash__: typing.ClassVar[None] = None
    @staticmethod
    def parse(text: str) -> TileConfig:
        ...
    def __eq__(self, arg0: TileConfig) -> bool:
        ...
    def __init__(self, tile_m: typing.SupportsInt | typing.SupportsIndex = 128, tile_n: typing.SupportsInt | typing.SupportsIndex = 128, tile_k: typing.SupportsInt | typing.SupportsIndex = 32, stages: typing.SupportsInt | typing.SupportsIndex = 4, warps_m: typing.SupportsInt | typing.SupportsIndex = 2, warps_n: typing.SupportsInt | typing.SupportsIndex = 2, pingpong: bool = False, cluster: typing.SupportsInt | typing.SupportsIndex = 1, cluster_m: typing.SupportsInt | typing.SupportsIndex = 1) -> None:
        ...
    def __repr__(self) -> str:
        ...
    def shared_bytes(self, dtype: DType) -> int:
        ...
    def text(self) -> str:
        ...
    @property
    def cluster(self) -> int:
        """
        wgmma family, dsd only: CTAs per thread-block cluster along N sharing the A tile by TMA multicast (1, 2 or 4; text suffix .cN)
        """
    @cluster.setter
    def cluster(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def cluster_ctas(self) -> int:
        """
        thread blocks per cluster
        """
    @property
    def cluster_m(self) -> int:
        """
        wgmma family, dsd only: CTAs per thread-block cluster along M sharing the B tile by TMA multicast (1 or 2; text suffix .c2x1)
        """
    @cluster_m.setter
    def cluster_m(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def pingpong(self) -> bool:
        """
        wgmma family: the consumer warpgroups take turns on whole tiles (text suffix .pingpong)
        """
    @pingpong.setter
    def pingpong(self, arg0: bool) -> None:
        ...
    @property
    def stages(self) -> int:
        ...
    @stages.setter
    def stages(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def threads(self) -> int:
        ...
    @property
    def tile_k(self) -> int:
        ...
    @tile_k.setter
    def tile_k(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def tile_m(self) -> int:
        ...
    @tile_m.setter
    def tile_m(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def tile_n(self) -> int:
        ...
    @tile_n.setter
    def tile_n(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def warps_m(self) -> int:
        ...
    @warps_m.setter
    def warps_m(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def warps_n(self) -> int:
        ...
    @warps_n.setter
    def warps_n(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class KernelSpec:
    activation: Activation
    dtype: DType
    family: KernelFamily
    glu: bool
    op: OpKind
    target: Target
    tile: TileConfig
    trans_a: bool
    trans_b: bool
    @staticmethod
    def parse(text: str) -> KernelSpec:
        ...
    def __eq__(self, arg0: KernelSpec) -> bool:
        ...
    def __hash__(self) -> int:
        ...
    def __init__(self) -> None:
        ...
    def __repr__(self) -> str:
        ...
    def hash_hex(self) -> str:
        ...
    def problem_text(self) -> str:
        ...
    def short_name(self) -> str:
        ...
    def text(self) -> str:
        ...
    def validate(self) -> None:
        ...
    def with_family(self, family: KernelFamily) -> KernelSpec:
        """
        A copy of the spec with another kernel family (the tile is kept).
        """
    def with_tile(self, tile: TileConfig) -> KernelSpec:
        """
        A copy of the spec with another tile configuration.
        """
    @property
    def block_size(self) -> int:
        ...
    @block_size.setter
    def block_size(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def experts(self) -> int:
        ...
    @experts.setter
    def experts(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def k(self) -> int:
        ...
    @k.setter
    def k(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def m(self) -> int:
        ...
    @m.setter
    def m(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def n(self) -> int:
        ...
    @n.setter
    def n(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def shared_bytes(self) -> int:
        """
        Dynamic shared memory of one thread block of the kernel.
        """
    @property
    def threads(self) -> int:
        """
        Threads of one thread block of the kernel.
        """
    @property
    def top_k(self) -> int:
        ...
    @top_k.setter
    def top_k(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class RoutingLayout:
    def __init__(self, assignments: typing.SupportsInt | typing.SupportsIndex, experts: typing.SupportsInt | typing.SupportsIndex, block: typing.SupportsInt | typing.SupportsIndex, ffn: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def assignments(self) -> int:
        ...
    @property
    def bins(self) -> int:
        ...
    @property
    def block(self) -> int:
        ...
    @property
    def block_cols(self) -> int:
        ...
    @property
    def block_offsets_t(self) -> int:
        ...
    @property
    def chunk_counts(self) -> int:
        ...
    @property
    def chunks(self) -> int:
        ...
    @property
    def column_indices(self) -> int:
        ...
    @property
    def column_indices_t(self) -> int:
        ...
    @property
    def expert_counts(self) -> int:
        ...
    @property
    def experts(self) -> int:
        ...
    @property
    def ffn(self) -> int:
        ...
    @property
    def live_nnz(self) -> int:
        ...
    @property
    def live_rows(self) -> int:
        ...
    @property
    def max_block_rows(self) -> int:
        ...
    @property
    def max_nnz(self) -> int:
        ...
    @property
    def offsets(self) -> int:
        ...
    @property
    def offsets_t(self) -> int:
        ...
    @property
    def row_assignment(self) -> int:
        ...
    @property
    def row_indices(self) -> int:
        ...
    @property
    def rows(self) -> int:
        ...
    @property
    def slots(self) -> int:
        ...
    @property
    def total(self) -> int:
        ...
class GeneratedSource:
    @property
    def file_name(self) -> str:
        ...
    @property
    def name_expression(self) -> str:
        ...
    @property
    def source(self) -> str:
        ...
    @property
    def template_header(self) -> str:
        ...
class LaunchGeometry:
    @property
    def grid_x(self) -> int:
        ...
    @property
    def shared_bytes(self) -> int:
        ...
    @property
    def threads(self) -> int:
        ...
class ResourceUsage:
    @property
    def registers(self) -> int:
        ...
    @property
    def spill_load_bytes(self) -> int:
        ...
    @property
    def spill_store_bytes(self) -> int:
        ...
    @property
    def stack_bytes(self) -> int:
        ...
    @property
    def static_shared_bytes(self) -> int:
        ...
class CompiledKernel:
    @property
    def compile_ms(self) -> float:
        ...
    @property
    def cubin(self) -> bytes:
        ...
    @property
    def dynamic_shared_bytes(self) -> int:
        ...
    @property
    def log(self) -> str:
        ...
    @property
    def lowered_name(self) -> str:
        ...
    @property
    def options(self) -> list[str]:
        ...
    @property
    def ptx(self) -> str:
        ...
    @property
    def resources(self) -> ResourceUsage:
        ...
    @property
    def source(self) -> str:
        ...
    @property
    def spec(self) -> KernelSpec:
        ...
    @property
    def threads(self) -> int:
        ...
class DeviceInfo:
    @property
    def major(self) -> int:
        ...
    @property
    def max_shared_bytes_per_block(self) -> int:
        ...
    @property
    def minor(self) -> int:
        ...
    @property
    def multiprocessors(self) -> int:
        ...
    @property
    def name(self) -> str:
        ...
class KernelDbError(RuntimeError):
    pass
class KernelKey:
    __hash__: typing.ClassVar[None] = None
    def __eq__(self, arg0: KernelKey) -> bool:
        ...
    def __init__(self, spec_text: str, target: str, template_hash: str, nvrtc_version: str, compile_options: str, moejit_version: str) -> None:
        ...
    def hash_hex(self) -> str:
        ...
    @property
    def compile_options(self) -> str:
        ...
    @property
    def moejit_version(self) -> str:
        ...
    @property
    def nvrtc_version(self) -> str:
        ...
    @property
    def spec_text(self) -> str:
        ...
    @property
    def target(self) -> str:
        ...
    @property
    def template_hash(self) -> str:
        ...
class KernelEntry:
    @property
    def compile_ms(self) -> float:
        ...
    @property
    def created_at(self) -> float:
        ...
    @property
    def dynamic_shared_bytes(self) -> int:
        ...
    @property
    def key(self) -> KernelKey:
        ...
    @property
    def key_hash(self) -> str:
        ...
    @property
    def last_used_at(self) -> float:
        ...
    @property
    def lowered_name(self) -> str:
        ...
    @property
    def resources(self) -> ResourceUsage:
        ...
    @property
    def size_bytes(self) -> int:
        ...
    @property
    def threads(self) -> int:
        ...
    @property
    def tile(self) -> str:
        ...
class TuningEntry:
    best_tile: str
    candidates_json: str
    gpu_name: str
    moejit_version: str
    nvrtc_version: str
    problem: str
    target: str
    template_hash: str
    def __init__(self) -> None:
        ...
    @property
    def best_ms(self) -> float:
        ...
    @best_ms.setter
    def best_ms(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def token_bucket(self) -> int:
        ...
    @token_bucket.setter
    def token_bucket(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def tuned_at(self) -> float:
        ...
    @tuned_at.setter
    def tuned_at(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
class SalvageReport:
    @property
    def copied(self) -> int:
        ...
    @property
    def dropped(self) -> int:
        ...
    @property
    def tunings(self) -> int:
        ...
    @property
    def unreadable(self) -> int:
        ...
class VerifyReport:
    @property
    def damaged(self) -> list[str]:
        ...
    @property
    def reasons(self) -> list[str]:
        ...
    @property
    def unreadable(self) -> int:
        ...
    @property
    def integrity_message(self) -> str:
        ...
    @property
    def integrity_ok(self) -> bool:
        ...
    @property
    def kernels(self) -> int:
        ...
class KernelDb:
    SCHEMA_VERSION: typing.ClassVar[int] = 3
    def __init__(self, path: str, read_only: bool = False, busy_timeout_ms: typing.SupportsInt | typing.SupportsIndex = 60000) -> None:
        ...
    def check(self, key_hash: str) -> typing.Any:
        """
        Why the stored kernel fails its integrity check, or None if it passes.
        """
    def copy_into(self, destination: KernelDb, keep: collections.abc.Callable[[KernelEntry], bool]) -> int:
        ...
    def entries(self) -> list[KernelEntry]:
        ...
    def evict_to(self, max_bytes: typing.SupportsInt | typing.SupportsIndex) -> int:
        ...
    def find(self, key: KernelKey) -> CompiledKernel:
        ...
    def insert(self, key: KernelKey, kernel: CompiledKernel) -> bool:
        ...
    def load(self, key_hash: str) -> typing.Any:
        ...
    def prune_older_than(self, max_age_seconds: typing.SupportsFloat | typing.SupportsIndex) -> int:
        ...
    def put_tuning(self, entry: TuningEntry) -> None:
        ...
    def quick_check(self) -> str:
        ...
    def remove(self, key_hash: str) -> bool:
        ...
    def salvage_into(self, destination: KernelDb) -> SalvageReport:
        ...
    def total_bytes(self) -> int:
        ...
    def tunings(self) -> list[TuningEntry]:
        ...
    def verify(self) -> VerifyReport:
        ...
    @property
    def path(self) -> str:
        ...
    @property
    def immutable(self) -> bool:
        ...
    @property
    def read_only(self) -> bool:
        ...
    @property
    def schema_version(self) -> int:
        ...
class KernelDbConfig:
    cache_path: str
    @staticmethod
    def from_environment(packaged: collections.abc.Sequence[str] = []) -> KernelDbConfig:
        ...
    def __init__(self) -> None:
        ...
    @property
    def busy_timeout_ms(self) -> int:
        ...
    @busy_timeout_ms.setter
    def busy_timeout_ms(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def quick_check_max_bytes(self) -> int:
        ...
    @quick_check_max_bytes.setter
    def quick_check_max_bytes(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def cache_max_bytes(self) -> int:
        ...
    @cache_max_bytes.setter
    def cache_max_bytes(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def read_only_paths(self) -> list[str]:
        ...
    @read_only_paths.setter
    def read_only_paths(self, arg0: collections.abc.Sequence[str]) -> None:
        ...
class CacheStats:
    def __repr__(self) -> str:
        ...
    @property
    def compiled(self) -> int:
        ...
    @property
    def database_hits(self) -> int:
        ...
    @property
    def memory_hits(self) -> int:
        ...
class JitRuntime:
    def __init__(self, templates_dir: str, nvrtc_wheels: collections.abc.Sequence[str] = [], line_info: bool = False, database: KernelDbConfig | None = None, warn: collections.abc.Callable[[str], None] = None, extra_options: collections.abc.Sequence[str] = [], dump_dir: str = '', failure_dir: str = '', log: collections.abc.Callable[[str], None] = None) -> None:
        ...
    def check_loads(self, kernel: CompiledKernel, device: typing.SupportsInt | typing.SupportsIndex) -> None:
        """
        Load a compiled kernel into the device and unload it: raises if the driver rejects it.
        """
    def compile(self, spec: KernelSpec) -> CompiledKernel:
        """
        Compile (once per runtime) and return the kernel with its artifacts.
        """
    def compile_options(self, spec: KernelSpec) -> list[str]:
        ...
    def device_count(self) -> int:
        ...
    def device_info(self, device: typing.SupportsInt | typing.SupportsIndex) -> DeviceInfo:
        ...
    def kernel_key(self, spec: KernelSpec) -> KernelKey:
        ...
    def launch_activation(self, spec: KernelSpec, h: typing.SupportsInt | typing.SupportsIndex, gate: typing.SupportsInt | typing.SupportsIndex, grad: typing.SupportsInt | typing.SupportsIndex, out: typing.SupportsInt | typing.SupportsIndex, out_gate: typing.SupportsInt | typing.SupportsIndex, live_nnz: typing.SupportsInt | typing.SupportsIndex, capacity_blocks: typing.SupportsInt | typing.SupportsIndex, device: typing.SupportsInt | typing.SupportsIndex, stream: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def launch_bsr_gemm(self, spec: KernelSpec, a: typing.SupportsInt | typing.SupportsIndex, b: typing.SupportsInt | typing.SupportsIndex, c: typing.SupportsInt | typing.SupportsIndex, lda: typing.SupportsInt | typing.SupportsIndex, ldb: typing.SupportsInt | typing.SupportsIndex, ldc: typing.SupportsInt | typing.SupportsIndex, row_indices: typing.SupportsInt | typing.SupportsIndex, column_indices: typing.SupportsInt | typing.SupportsIndex, offsets: typing.SupportsInt | typing.SupportsIndex, column_indices_t: typing.SupportsInt | typing.SupportsIndex, offsets_t: typing.SupportsInt | typing.SupportsIndex, block_offsets_t: typing.SupportsInt | typing.SupportsIndex, nnz: typing.SupportsInt | typing.SupportsIndex, block_rows: typing.SupportsInt | typing.SupportsIndex, block_cols: typing.SupportsInt | typing.SupportsIndex, device: typing.SupportsInt | typing.SupportsIndex, stream: typing.SupportsInt | typing.SupportsIndex, live_nnz: typing.SupportsInt | typing.SupportsIndex = 0, live_rows: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
        ...
    def launch_routing(self, spec: KernelSpec, layout: RoutingLayout, plan: typing.SupportsInt | typing.SupportsIndex, expert_indices: typing.SupportsInt | typing.SupportsIndex = 0, input: typing.SupportsInt | typing.SupportsIndex = 0, output: typing.SupportsInt | typing.SupportsIndex = 0, weights: typing.SupportsInt | typing.SupportsIndex = 0, weight_grad: typing.SupportsInt | typing.SupportsIndex = 0, rows_forward: typing.SupportsInt | typing.SupportsIndex = 0, tokens: typing.SupportsInt | typing.SupportsIndex = 0, device: typing.SupportsInt | typing.SupportsIndex = 0, stream: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
        ...
    def persistent_grid(self, spec: KernelSpec, tiles: typing.SupportsInt | typing.SupportsIndex, device: typing.SupportsInt | typing.SupportsIndex) -> int:
        """
        Thread blocks launched for `tiles` C tiles: all of them (mma), one per SM at most (wgmma), or as many whole clusters as the device runs at once (a cluster tile).
        """
    def prepare(self, spec: KernelSpec, device: typing.SupportsInt | typing.SupportsIndex) -> None:
        """
        Compile or fetch the kernel and load it into the device.
        """
    def record_tuning(self, entry: TuningEntry) -> bool:
        ...
    def tuned_tile(self, problem: KernelSpec, gpu_name: str, bucket: typing.SupportsInt | typing.SupportsIndex) -> TileConfig | None:
        ...
    def tunings(self, problem: KernelSpec, gpu_name: str) -> list[TuningEntry]:
        ...
    @property
    def cache_writable(self) -> bool:
        ...
    @property
    def compiled_count(self) -> int:
        ...
    @property
    def database_paths(self) -> list[str]:
        ...
    @property
    def driver_version(self) -> int:
        ...
    @property
    def nvrtc_reason(self) -> str:
        ...
    @property
    def nvrtc_path(self) -> str:
        ...
    @property
    def nvrtc_version(self) -> str:
        ...
    @property
    def stats(self) -> CacheStats:
        ...
    @property
    def templates_dir(self) -> str:
        ...
    @property
    def templates_hash(self) -> str:
        ...
def dynamic_extent(op: OpKind, trans_a: bool, trans_b: bool) -> str:
    """
    Which extent (m, n or k) of the op varies with the token count.
    """
def generate_source(spec: KernelSpec) -> GeneratedSource:
    ...
def heuristic_family(spec: KernelSpec) -> KernelFamily:
    """
    wgmma on sm_90a where one of its tiles fits the spec, else mma.
    """
def heuristic_tile_config(spec: KernelSpec) -> TileConfig:
    ...
def is_routing(op: OpKind) -> bool:
    ...
def launch_geometry(spec: KernelSpec, nnz: typing.SupportsInt | typing.SupportsIndex, block_rows: typing.SupportsInt | typing.SupportsIndex, block_cols: typing.SupportsInt | typing.SupportsIndex) -> LaunchGeometry:
    ...
def nearest_bucket(tuned: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], bucket: typing.SupportsInt | typing.SupportsIndex) -> int:
    ...
def nvrtc_search_order(wheels: collections.abc.Sequence[str], build_toolkit: str | None = None) -> list[tuple[str, str]]:
    ...
def build_toolkit_root() -> str:
    ...
def parse_activation(text: str) -> Activation:
    ...
def parse_dtype(text: str) -> DType:
    ...
def parse_family(text: str) -> KernelFamily:
    ...
def parse_op(text: str) -> OpKind:
    ...
def routing_spec(op: OpKind, target: Target, experts: typing.SupportsInt | typing.SupportsIndex, top_k: typing.SupportsInt | typing.SupportsIndex = 0, n: typing.SupportsInt | typing.SupportsIndex = 0, block_size: typing.SupportsInt | typing.SupportsIndex = 0, dtype: DType = ..., activation: Activation = ..., glu: bool = False) -> KernelSpec:
    """
    A routing, permutation or activation kernel spec; fields the op does not use are ignored.
    """
def search_space(problem: KernelSpec) -> list[TileConfig]:
    """
    Every statically valid tile configuration for the spec's problem, the heuristic one first.
    """
def target_for_device(major: typing.SupportsInt | typing.SupportsIndex, minor: typing.SupportsInt | typing.SupportsIndex) -> Target:
    ...
def token_bucket(routed_tokens: typing.SupportsInt | typing.SupportsIndex, experts: typing.SupportsInt | typing.SupportsIndex) -> int:
    ...
def with_heuristic_implementation(spec: KernelSpec) -> KernelSpec:
    """
    The spec with the heuristic family and that family's heuristic tile.
    """
def with_heuristic_tile(spec: KernelSpec) -> KernelSpec:
    ...
DYNAMIC: int = -1
__version__: str = '0.1.0'
