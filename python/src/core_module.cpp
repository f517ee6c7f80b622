// moejit._core: the C++ compiler and runtime, bound for the Python package. It takes
// plain integers for device pointers and streams, so it does not link against torch.
#include <pybind11/pybind11.h>
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <fmt/format.h>

#include <cstdint>
#include <limits>

#include "autotune/search_space.hpp"
#include "autotune/tile_heuristics.hpp"
#include "compiler/codegen.hpp"
#include "compiler/compiled_kernel.hpp"
#include "compiler/kernel_compiler.hpp"
#include "compiler/kernel_spec.hpp"
#include "compiler/launch_geometry.hpp"
#include "compiler/routing_layout.hpp"
#include "compiler/routing_spec.hpp"
#include "compiler/spec_error.hpp"
#include "compiler/validate.hpp"
#include "runtime/jit_runtime.hpp"
#include "runtime/kernel_db.hpp"
#include "runtime/kernel_db_stack.hpp"
#include "runtime/kernel_key.hpp"

namespace py = pybind11;
using namespace moejit;

namespace {

template <class T>
const T* as_ptr(std::uintptr_t address) {
  return reinterpret_cast<const T*>(address);
}

void launch_bsr_gemm(JitRuntime& runtime, const KernelSpec& spec, std::uintptr_t a, std::uintptr_t b,
                     std::uintptr_t c, std::int64_t lda, std::int64_t ldb, std::int64_t ldc,
                     std::uintptr_t row_indices, std::uintptr_t column_indices, std::uintptr_t offsets,
                     std::uintptr_t column_indices_t, std::uintptr_t offsets_t, std::uintptr_t block_offsets_t,
                     std::int64_t nnz, std::int64_t block_rows, std::int64_t block_cols, int device,
                     std::uintptr_t stream, std::uintptr_t live_nnz, std::uintptr_t live_rows) {
  BsrGemmParams p{};
  p.a = as_ptr<void>(a);
  p.b = as_ptr<void>(b);
  p.c = reinterpret_cast<void*>(c);
  p.lda = lda;
  p.ldb = ldb;
  p.ldc = ldc;
  p.row_indices = as_ptr<int>(row_indices);
  p.column_indices = as_ptr<int>(column_indices);
  p.offsets = as_ptr<int>(offsets);
  p.column_indices_t = as_ptr<int>(column_indices_t);
  p.offsets_t = as_ptr<int>(offsets_t);
  p.block_offsets_t = as_ptr<int>(block_offsets_t);
  p.nnz = static_cast<int>(nnz);
  p.block_rows = static_cast<int>(block_rows);
  p.block_cols = static_cast<int>(block_cols);
  p.live_nnz = as_ptr<int>(live_nnz);
  p.live_rows = as_ptr<int>(live_rows);
  // Compilation and loading can take a while on a cold cache: let other Python threads run.
  py::gil_scoped_release release;
  runtime.launch_bsr_gemm(spec, p, SparseShape{nnz, block_rows, block_cols}, device,
                          reinterpret_cast<CUstream>(stream));
}

// One routing kernel on the plan buffer at `plan` (laid out by `layout`); the permutation
// pointers are 0 where the op does not use them.
void launch_routing(JitRuntime& runtime, const KernelSpec& spec, const RoutingLayout& layout, std::uintptr_t plan,
                    std::uintptr_t expert_indices, std::uintptr_t input, std::uintptr_t output,
                    std::uintptr_t weights, std::uintptr_t weight_grad, std::uintptr_t rows_forward,
                    std::int64_t tokens, int device, std::uintptr_t stream) {
  RoutingParams p = routing_params(layout, reinterpret_cast<int*>(plan), as_ptr<long long>(expert_indices));
  p.input = as_ptr<void>(input);
  p.output = reinterpret_cast<void*>(output);
  p.weights = as_ptr<float>(weights);
  p.weight_grad = reinterpret_cast<float*>(weight_grad);
  p.rows_forward = as_ptr<void>(rows_forward);
  p.tokens = static_cast<int>(tokens);
  py::gil_scoped_release release;
  runtime.launch_routing(spec, p, RoutingShape{layout.assignments, tokens, layout.rows}, device,
                         reinterpret_cast<CUstream>(stream));
}

// One expert activation kernel (forward or backward) over `capacity_blocks` blocks.
void launch_activation(JitRuntime& runtime, const KernelSpec& spec, std::uintptr_t h, std::uintptr_t gate,
                       std::uintptr_t grad, std::uintptr_t out, std::uintptr_t out_gate, std::uintptr_t live_nnz,
                       std::int64_t capacity_blocks, int device, std::uintptr_t stream) {
  ActivationParams p{};
  p.h = as_ptr<void>(h);
  p.gate = as_ptr<void>(gate);
  p.grad = as_ptr<void>(grad);
  p.out = reinterpret_cast<void*>(out);
  p.out_gate = reinterpret_cast<void*>(out_gate);
  p.live_nnz = as_ptr<int>(live_nnz);
  p.capacity_blocks = capacity_blocks;
  py::gil_scoped_release release;
  runtime.launch_activation(spec, p, device, reinterpret_cast<CUstream>(stream));
}

// Strict conversions at the spec boundary: Python's bool is an int and a float converts to
// one, so plain casters would take trans_b=1, n=256.5 or n=True as something else.
std::string shown(py::handle value) { return py::repr(value).cast<std::string>(); }

bool spec_flag(const char* field, py::handle value) {
  if (!py::isinstance<py::bool_>(value)) throw SpecError(field, shown(value), "True or False");
  return value.cast<bool>();
}

constexpr std::int64_t kMaxExtent = std::numeric_limits<std::int32_t>::max();

std::int64_t spec_integer(const char* field, py::handle value, std::int64_t low, std::int64_t high,
                          const std::string& expected) {
  if (py::isinstance<py::bool_>(value) || !PyIndex_Check(value.ptr())) {
    throw SpecError(field, shown(value), expected);
  }
  const auto index = py::reinterpret_steal<py::object>(PyNumber_Index(value.ptr()));
  if (!index) throw py::error_already_set();
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
  if (overflow != 0 || v < low || v > high) throw SpecError(field, shown(value), expected);
  return v;
}

std::int64_t spec_extent(const char* field, py::handle value) {
  const std::string expected =
      fmt::format("an integer from 1 to {} (or DYNAMIC for the extent that varies)", kMaxExtent);
  const std::int64_t v = spec_integer(field, value, kDynamic, kMaxExtent, expected);
  if (v == 0) throw SpecError(field, shown(value), expected);
  return v;
}

int spec_count(const char* field, py::handle value) {
  return static_cast<int>(spec_integer(field, value, 0, kMaxExtent, fmt::format("an integer from 0 to {}", kMaxExtent)));
}

std::shared_ptr<CompiledKernel> shared(CompiledKernel kernel) {
  return std::make_shared<CompiledKernel>(std::move(kernel));
}

void bind_kernel_db(py::module_& m) {
  py::register_exception<KernelDbError>(m, "KernelDbError", PyExc_RuntimeError);

  py::class_<KernelKey>(m, "KernelKey")
      .def(py::init([](std::string spec_text, std::string target, std::string template_hash,
                       std::string nvrtc_version, std::string compile_options, std::string moejit_version) {
             return KernelKey{std::move(spec_text), std::move(target), std::move(template_hash),
                              std::move(nvrtc_version), std::move(compile_options), std::move(moejit_version)};
           }),
           py::arg("spec_text"), py::arg("target"), py::arg("template_hash"), py::arg("nvrtc_version"),
           py::arg("compile_options"), py::arg("moejit_version"))
      .def_readonly("spec_text", &KernelKey::spec_text)
      .def_readonly("target", &KernelKey::target)
      .def_readonly("template_hash", &KernelKey::template_hash)
      .def_readonly("nvrtc_version", &KernelKey::nvrtc_version)
      .def_readonly("compile_options", &KernelKey::compile_options)
      .def_readonly("moejit_version", &KernelKey::moejit_version)
      .def("hash_hex", &KernelKey::hash_hex)
      .def("__eq__", [](const KernelKey& a, const KernelKey& b) { return a == b; });

  py::class_<KernelEntry>(m, "KernelEntry")
      .def_readonly("key_hash", &KernelEntry::key_hash)
      .def_readonly("key", &KernelEntry::key)
      .def_readonly("tile", &KernelEntry::tile)
      .def_readonly("lowered_name", &KernelEntry::lowered_name)
      .def_readonly("resources", &KernelEntry::resources)
      .def_readonly("threads", &KernelEntry::threads)
      .def_readonly("dynamic_shared_bytes", &KernelEntry::dynamic_shared_bytes)
      .def_readonly("compile_ms", &KernelEntry::compile_ms)
      .def_readonly("created_at", &KernelEntry::created_at)
      .def_readonly("last_used_at", &KernelEntry::last_used_at)
      .def_readonly("size_bytes", &KernelEntry::size_bytes)
      .def_readonly("origin", &KernelEntry::origin);

  py::class_<TuningEntry>(m, "TuningEntry")
      .def(py::init<>())
      .def_readwrite("problem", &TuningEntry::problem)
      .def_readwrite("target", &TuningEntry::target)
      .def_readwrite("gpu_name", &TuningEntry::gpu_name)
      .def_readwrite("token_bucket", &TuningEntry::token_bucket)
      .def_readwrite("best_tile", &TuningEntry::best_tile)
      .def_readwrite("best_ms", &TuningEntry::best_ms)
      .def_readwrite("candidates_json", &TuningEntry::candidates_json)
      .def_readwrite("tuned_at", &TuningEntry::tuned_at)
      .def_readwrite("template_hash", &TuningEntry::template_hash)
      .def_readwrite("nvrtc_version", &TuningEntry::nvrtc_version)
      .def_readwrite("moejit_version", &TuningEntry::moejit_version);

  py::class_<VerifyReport>(m, "VerifyReport")
      .def_readonly("integrity_ok", &VerifyReport::integrity_ok)
      .def_readonly("integrity_message", &VerifyReport::integrity_message)
      .def_readonly("kernels", &VerifyReport::kernels)
      .def_readonly("damaged", &VerifyReport::damaged)
      .def_readonly("reasons", &VerifyReport::reasons)
      .def_readonly("unreadable", &VerifyReport::unreadable);

  py::class_<SalvageReport>(m, "SalvageReport")
      .def_readonly("copied", &SalvageReport::copied)
      .def_readonly("dropped", &SalvageReport::dropped)
      .def_readonly("unreadable", &SalvageReport::unreadable)
      .def_readonly("tunings", &SalvageReport::tunings);

  py::class_<KernelDb>(m, "KernelDb")
      .def(py::init<const std::string&, bool, int>(), py::arg("path"), py::arg("read_only") = false,
           py::arg("busy_timeout_ms") = 60000)
      .def_readonly_static("SCHEMA_VERSION", &KernelDb::kSchemaVersion)
      .def_property_readonly("path", &KernelDb::path)
      .def_property_readonly("read_only", &KernelDb::read_only)
      .def_property_readonly("immutable", &KernelDb::immutable)
      .def_property_readonly("schema_version", &KernelDb::schema_version)
      .def("find", [](KernelDb& db, const KernelKey& key) -> std::shared_ptr<CompiledKernel> {
             auto hit = db.find(key);
             return hit ? shared(std::move(*hit)) : nullptr;
           }, py::arg("key"))
      .def("check", [](KernelDb& db, const std::string& hash) -> py::object {
             std::string rejected;
             if (db.load(hash, &rejected)) return py::none();
             if (rejected.empty()) throw py::key_error(hash);
             return py::str(rejected);
           }, py::arg("key_hash"), "Why the stored kernel fails its integrity check, or None if it passes.")
      .def("insert", [](KernelDb& db, const KernelKey& key, const CompiledKernel& k) { return db.insert(key, k); },
           py::arg("key"), py::arg("kernel"))
      .def("entries", &KernelDb::entries)
      .def("load", [](KernelDb& db, const std::string& hash) -> py::object {
             auto hit = db.load(hash);
             if (!hit) return py::none();
             return py::make_tuple(hit->first, shared(std::move(hit->second)));
           }, py::arg("key_hash"))
      .def("remove", &KernelDb::remove, py::arg("key_hash"))
      .def("total_bytes", &KernelDb::total_bytes)
      .def("evict_to", &KernelDb::evict_to, py::arg("max_bytes"))
      .def("prune_older_than", &KernelDb::prune_older_than, py::arg("max_age_seconds"))
      .def("verify", &KernelDb::verify)
      .def("quick_check", &KernelDb::quick_check)
      .def("salvage_into", &KernelDb::salvage_into, py::arg("destination"))
      .def("put_tuning", &KernelDb::put_tuning, py::arg("entry"))
      .def("tunings", &KernelDb::tunings)
      .def("copy_into", &KernelDb::copy_into, py::arg("destination"), py::arg("keep"));

  py::class_<KernelDbConfig>(m, "KernelDbConfig")
      .def(py::init<>())
      .def_static("from_environment", &KernelDbConfig::from_environment,
                  py::arg("packaged") = std::vector<std::string>{})
      .def_readwrite("cache_path", &KernelDbConfig::cache_path)
      .def_readwrite("read_only_paths", &KernelDbConfig::read_only_paths)
      .def_readwrite("cache_max_bytes", &KernelDbConfig::cache_max_bytes)
      .def_readwrite("busy_timeout_ms", &KernelDbConfig::busy_timeout_ms)
      .def_readwrite("quick_check_max_bytes", &KernelDbConfig::quick_check_max_bytes);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "moejit core: kernel specs, code generation, NVRTC compilation and the CUDA runtime";
  m.attr("__version__") = MOEJIT_VERSION;

  static py::handle spec_error_type = py::register_exception<SpecError>(m, "SpecError", PyExc_ValueError).ptr();
  py::register_exception<CompileError>(m, "CompileError", PyExc_RuntimeError);
  // Registered after register_exception's own translator, so tried first: the raised
  // SpecError carries the offending field, its value and what is allowed as attributes.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const SpecError& e) {
      py::object error = py::reinterpret_borrow<py::object>(spec_error_type)(e.what());
      error.attr("field") = e.field();
      error.attr("value") = e.value();
      error.attr("expected") = e.expected();
      PyErr_SetObject(spec_error_type.ptr(), error.ptr());
    }
  });

  py::enum_<DType>(m, "DType").value("bf16", DType::bf16).value("fp16", DType::fp16);
  py::enum_<OpKind>(m, "OpKind")
      .value("sdd", OpKind::sdd)
      .value("dsd", OpKind::dsd)
      .value("dds", OpKind::dds)
      .value("expert_histogram", OpKind::expert_histogram)
      .value("expert_bins", OpKind::expert_bins)
      .value("expert_slots", OpKind::expert_slots)
      .value("padded_gather", OpKind::padded_gather)
      .value("weighted_scatter", OpKind::weighted_scatter)
      .value("weighted_scatter_grad", OpKind::weighted_scatter_grad)
      .value("expert_activation", OpKind::expert_activation)
      .value("expert_activation_grad", OpKind::expert_activation_grad);
  py::enum_<Activation>(m, "Activation")
      .value("gelu", Activation::gelu)
      .value("gelu_exact", Activation::gelu_exact)
      .value("silu", Activation::silu)
      .value("relu", Activation::relu);
  m.def("parse_activation", &parse_activation, py::arg("text"));
  m.def("is_routing", &is_routing, py::arg("op"));
  py::enum_<KernelFamily>(m, "KernelFamily")
      .value("mma", KernelFamily::mma)
      .value("wgmma", KernelFamily::wgmma);
  m.def("parse_family", &parse_family, py::arg("text"));
  m.def("parse_dtype", &parse_dtype, py::arg("text"));
  m.def("parse_op", &parse_op, py::arg("text"));
  m.def("dynamic_extent", [](OpKind op, bool ta, bool tb) { return std::string(1, dynamic_extent(op, ta, tb)); },
        py::arg("op"), py::arg("trans_a"), py::arg("trans_b"),
        "Which extent (m, n or k) of the op varies with the token count.");
  m.attr("DYNAMIC") = kDynamic;
  m.def(
      "nvrtc_search_order",
      [](const std::vector<std::string>& wheels, std::optional<std::string> build_toolkit) {
        std::vector<std::pair<std::string, std::string>> out;
        for (const NvrtcCandidate& c : nvrtc_search_order(wheels, build_toolkit.value_or(build_toolkit_root()))) {
          out.emplace_back(c.path, c.reason);
        }
        return out;
      },
      py::arg("wheels"), py::arg("build_toolkit") = std::nullopt,
      "The (path, reason) pairs NVRTC is looked for at, in order, given pip wheels' libnvrtc files; the first "
      "that opens is used. build_toolkit: the toolkit root moejit was built with (default: this build's).");
  m.def("build_toolkit_root", &build_toolkit_root, "The CUDA toolkit root this build of moejit was configured with.");

  py::class_<Target>(m, "Target")
      .def(py::init(&parse_target), py::arg("text"))
      .def_readonly("major", &Target::major)
      .def_readonly("minor", &Target::minor)
      .def_readonly("arch_specific", &Target::arch_specific)
      .def("text", &Target::text)
      .def("max_shared_bytes_per_block", &Target::max_shared_bytes_per_block)
      .def("runs_on", &Target::runs_on, py::arg("major"), py::arg("minor"),
           "Whether a cubin for this target loads on a device of compute capability major.minor.")
      .def("__eq__", [](const Target& a, const Target& b) { return a == b; })
      .def("__repr__", [](const Target& t) { return "Target('" + t.text() + "')"; });
  m.def("target_for_device", &target_for_device, py::arg("major"), py::arg("minor"));

  py::class_<TileConfig>(m, "TileConfig")
      .def(py::init([](int tm, int tn, int tk, int stages, int wm, int wn, bool pingpong, int cluster, int cluster_m) {
             return TileConfig{tm, tn, tk, stages, wm, wn, pingpong, cluster, cluster_m};
           }),
           py::arg("tile_m") = 128, py::arg("tile_n") = 128, py::arg("tile_k") = 32, py::arg("stages") = 4,
           py::arg("warps_m") = 2, py::arg("warps_n") = 2, py::arg("pingpong") = false, py::arg("cluster") = 1,
           py::arg("cluster_m") = 1)
      .def_static("parse", &parse_tile_config, py::arg("text"))
      .def_readwrite("tile_m", &TileConfig::tile_m)
      .def_readwrite("tile_n", &TileConfig::tile_n)
      .def_readwrite("tile_k", &TileConfig::tile_k)
      .def_readwrite("stages", &TileConfig::stages)
      .def_readwrite("warps_m", &TileConfig::warps_m)
      .def_readwrite("warps_n", &TileConfig::warps_n)
      .def_readwrite("pingpong", &TileConfig::pingpong,
                     "wgmma family: the consumer warpgroups take turns on whole tiles (text suffix .pingpong)")
      .def_readwrite("cluster", &TileConfig::cluster,
                     "wgmma family, dsd only: CTAs per thread-block cluster along N sharing the A tile by TMA "
                     "multicast (1, 2 or 4; text suffix .cN)")
      .def_readwrite("cluster_m", &TileConfig::cluster_m,
                     "wgmma family, dsd only: CTAs per thread-block cluster along M sharing the B tile by TMA "
                     "multicast (1 or 2; text suffix .c2x1)")
      .def_property_readonly("cluster_ctas", &TileConfig::cluster_ctas, "thread blocks per cluster")
      .def_property_readonly("threads", &TileConfig::threads)
      .def("shared_bytes", &TileConfig::shared_bytes, py::arg("dtype"))
      .def("text", &TileConfig::text)
      .def("__eq__", [](const TileConfig& a, const TileConfig& b) { return a == b; })
      .def("__repr__", [](const TileConfig& t) { return "TileConfig('" + t.text() + "')"; });

  py::class_<KernelSpec>(m, "KernelSpec")
      .def(py::init<>())
      .def_static("parse", &parse_kernel_spec, py::arg("text"))
      .def_readwrite("op", &KernelSpec::op)
      .def_property("trans_a", [](const KernelSpec& s) { return s.trans_a; },
                    [](KernelSpec& s, py::handle v) { s.trans_a = spec_flag("trans_a", v); })
      .def_property("trans_b", [](const KernelSpec& s) { return s.trans_b; },
                    [](KernelSpec& s, py::handle v) { s.trans_b = spec_flag("trans_b", v); })
      .def_readwrite("dtype", &KernelSpec::dtype)
      .def_property("block_size", [](const KernelSpec& s) { return s.block_size; },
                    [](KernelSpec& s, py::handle v) {
                      s.block_size = static_cast<int>(
                          spec_integer("block_size", v, 1, kMaxExtent, "a block size such as 64 or 128"));
                    })
      .def_property("m", [](const KernelSpec& s) { return s.m; },
                    [](KernelSpec& s, py::handle v) { s.m = spec_extent("m", v); })
      .def_property("n", [](const KernelSpec& s) { return s.n; },
                    [](KernelSpec& s, py::handle v) { s.n = spec_extent("n", v); })
      .def_property("k", [](const KernelSpec& s) { return s.k; },
                    [](KernelSpec& s, py::handle v) { s.k = spec_extent("k", v); })
      .def_readwrite("tile", &KernelSpec::tile)
      .def_readwrite("family", &KernelSpec::family)
      .def_readwrite("target", &KernelSpec::target)
      .def_property("experts", [](const KernelSpec& s) { return s.experts; },
                    [](KernelSpec& s, py::handle v) { s.experts = spec_count("experts", v); })
      .def_property("top_k", [](const KernelSpec& s) { return s.top_k; },
                    [](KernelSpec& s, py::handle v) { s.top_k = spec_count("top_k", v); })
      .def_readwrite("activation", &KernelSpec::activation)
      .def_property("glu", [](const KernelSpec& s) { return s.glu; },
                    [](KernelSpec& s, py::handle v) { s.glu = spec_flag("glu", v); })
      .def_property_readonly("threads", &KernelSpec::threads, "Threads of one thread block of the kernel.")
      .def_property_readonly("shared_bytes", &KernelSpec::shared_bytes,
                             "Dynamic shared memory of one thread block of the kernel.")
      .def("text", &KernelSpec::text)
      .def("hash_hex", &KernelSpec::hash_hex)
      .def("short_name", &KernelSpec::short_name)
      .def("problem_text", &KernelSpec::problem_text)
      .def("with_tile",
           [](KernelSpec spec, const TileConfig& tile) {
             spec.tile = tile;
             return spec;
           },
           py::arg("tile"), "A copy of the spec with another tile configuration.")
      .def("with_family",
           [](KernelSpec spec, KernelFamily family) {
             spec.family = family;
             return spec;
           },
           py::arg("family"), "A copy of the spec with another kernel family (the tile is kept).")
      .def("validate", [](const KernelSpec& s) { validate(s); })
      .def("__eq__", [](const KernelSpec& a, const KernelSpec& b) { return a == b; })
      .def("__hash__", [](const KernelSpec& s) { return static_cast<std::int64_t>(s.hash() >> 1); })
      .def("__repr__", [](const KernelSpec& s) { return "KernelSpec('" + s.text() + "')"; });

  m.def("routing_spec",
        [](OpKind op, const Target& target, py::handle experts, py::handle top_k, py::handle n, py::handle block_size,
           DType dtype, Activation activation, py::handle glu) {
          return routing_spec(op, target, spec_count("experts", experts), spec_count("top_k", top_k),
                              spec_count("n", n), spec_count("block_size", block_size), dtype, activation,
                              spec_flag("glu", glu));
        },
        py::arg("op"), py::arg("target"), py::arg("experts"), py::arg("top_k") = 0,
        py::arg("n") = 0, py::arg("block_size") = 0, py::arg("dtype") = DType::bf16,
        py::arg("activation") = Activation::gelu, py::arg("glu") = false,
        "A routing, permutation or activation kernel spec; fields the op does not use are ignored.");

  py::class_<RoutingLayout>(m, "RoutingLayout")
      .def(py::init(&routing_layout), py::arg("assignments"), py::arg("experts"), py::arg("block"), py::arg("ffn"))
      .def_readonly("assignments", &RoutingLayout::assignments)
      .def_readonly("experts", &RoutingLayout::experts)
      .def_readonly("block", &RoutingLayout::block)
      .def_readonly("ffn", &RoutingLayout::ffn)
      .def_readonly("max_block_rows", &RoutingLayout::max_block_rows)
      .def_readonly("rows", &RoutingLayout::rows)
      .def_readonly("block_cols", &RoutingLayout::block_cols)
      .def_readonly("max_nnz", &RoutingLayout::max_nnz)
      .def_readonly("chunks", &RoutingLayout::chunks)
      .def_readonly("live_nnz", &RoutingLayout::live_nnz)
      .def_readonly("expert_counts", &RoutingLayout::expert_counts)
      .def_readonly("bins", &RoutingLayout::bins)
      .def_readonly("offsets", &RoutingLayout::offsets)
      .def_readonly("offsets_t", &RoutingLayout::offsets_t)
      .def_readonly("row_indices", &RoutingLayout::row_indices)
      .def_readonly("column_indices", &RoutingLayout::column_indices)
      .def_readonly("column_indices_t", &RoutingLayout::column_indices_t)
      .def_readonly("block_offsets_t", &RoutingLayout::block_offsets_t)
      .def_readonly("live_rows", &RoutingLayout::live_rows)
      .def_readonly("slots", &RoutingLayout::slots)
      .def_readonly("row_assignment", &RoutingLayout::row_assignment)
      .def_readonly("chunk_counts", &RoutingLayout::chunk_counts)
      .def_readonly("total", &RoutingLayout::total);

  m.def("heuristic_tile_config", &heuristic_tile_config, py::arg("spec"));
  m.def("search_space", &search_space, py::arg("problem"),
        "Every statically valid tile configuration for the spec's problem, the heuristic one first.");
  m.def("token_bucket", &token_bucket, py::arg("routed_tokens"), py::arg("experts"));
  m.def("nearest_bucket", &nearest_bucket, py::arg("tuned"), py::arg("bucket"));
  m.def("with_heuristic_tile", &with_heuristic_tile, py::arg("spec"));
  m.def("heuristic_family", &heuristic_family, py::arg("spec"),
        "wgmma on sm_90a where one of its tiles fits the spec, else mma.");
  m.def("with_heuristic_implementation", &with_heuristic_implementation, py::arg("spec"),
        "The spec with the heuristic family and that family's heuristic tile.");

  py::class_<GeneratedSource>(m, "GeneratedSource")
      .def_readonly("file_name", &GeneratedSource::file_name)
      .def_readonly("source", &GeneratedSource::source)
      .def_readonly("name_expression", &GeneratedSource::name_expression)
      .def_readonly("template_header", &GeneratedSource::template_header);
  m.def("generate_source", &generate_source, py::arg("spec"));

  py::class_<LaunchGeometry>(m, "LaunchGeometry")
      .def_readonly("grid_x", &LaunchGeometry::grid_x)
      .def_readonly("threads", &LaunchGeometry::threads)
      .def_readonly("shared_bytes", &LaunchGeometry::shared_bytes);
  m.def("launch_geometry",
        [](const KernelSpec& s, std::int64_t nnz, std::int64_t rows, std::int64_t cols) {
          return launch_geometry(s, SparseShape{nnz, rows, cols});
        },
        py::arg("spec"), py::arg("nnz"), py::arg("block_rows"), py::arg("block_cols"));

  py::class_<ResourceUsage>(m, "ResourceUsage")
      .def_readonly("registers", &ResourceUsage::registers)
      .def_readonly("static_shared_bytes", &ResourceUsage::static_shared_bytes)
      .def_readonly("stack_bytes", &ResourceUsage::stack_bytes)
      .def_readonly("spill_store_bytes", &ResourceUsage::spill_store_bytes)
      .def_readonly("spill_load_bytes", &ResourceUsage::spill_load_bytes);

  py::class_<CompiledKernel, std::shared_ptr<CompiledKernel>>(m, "CompiledKernel")
      .def_readonly("spec", &CompiledKernel::spec)
      .def_readonly("source", &CompiledKernel::source)
      .def_readonly("lowered_name", &CompiledKernel::lowered_name)
      .def_property_readonly("cubin", [](const CompiledKernel& k) { return py::bytes(k.cubin); })
      .def_readonly("ptx", &CompiledKernel::ptx)
      .def_readonly("log", &CompiledKernel::log)
      .def_readonly("options", &CompiledKernel::options)
      .def_readonly("resources", &CompiledKernel::resources)
      .def_readonly("threads", &CompiledKernel::threads)
      .def_readonly("dynamic_shared_bytes", &CompiledKernel::dynamic_shared_bytes)
      .def_readonly("compile_ms", &CompiledKernel::compile_ms);

  py::class_<DeviceInfo>(m, "DeviceInfo")
      .def_readonly("name", &DeviceInfo::name)
      .def_readonly("major", &DeviceInfo::major)
      .def_readonly("minor", &DeviceInfo::minor)
      .def_readonly("multiprocessors", &DeviceInfo::multiprocessors)
      .def_readonly("max_shared_bytes_per_block", &DeviceInfo::max_shared_bytes_per_block);

  bind_kernel_db(m);

  py::class_<CacheStats>(m, "CacheStats")
      .def_readonly("memory_hits", &CacheStats::memory_hits)
      .def_readonly("database_hits", &CacheStats::database_hits)
      .def_readonly("compiled", &CacheStats::compiled)
      .def("__repr__", [](const CacheStats& s) {
        return "CacheStats(memory_hits=" + std::to_string(s.memory_hits) +
               ", database_hits=" + std::to_string(s.database_hits) + ", compiled=" + std::to_string(s.compiled) + ")";
      });

  py::class_<JitRuntime>(m, "JitRuntime")
      .def(py::init([](const std::string& templates_dir, const std::vector<std::string>& nvrtc_wheels,
                       bool line_info, std::optional<KernelDbConfig> database, WarningHandler warn,
                       const std::vector<std::string>& extra_options, const std::string& dump_dir,
                       const std::string& failure_dir, std::function<void(const std::string&)> log,
                       const std::string& origin) {
             JitOptions options;
             options.templates_dir = templates_dir;
             options.nvrtc_wheels = nvrtc_wheels;
             options.compile.line_info = line_info;
             options.compile.extra_options = extra_options;
             options.database = std::move(database);
             options.warn = std::move(warn);
             options.dump_dir = dump_dir;
             options.failure_dir = failure_dir;
             options.log = std::move(log);
             if (origin != "compile" && origin != "tune" && origin != "bake") {
               throw SpecError("origin", origin, "compile, tune or bake");
             }
             options.origin = origin;
             return std::make_unique<JitRuntime>(std::move(options));
           }),
           py::arg("templates_dir"), py::arg("nvrtc_wheels") = std::vector<std::string>{},
           py::arg("line_info") = false, py::arg("database") = std::nullopt, py::arg("warn") = nullptr,
           py::arg("extra_options") = std::vector<std::string>{}, py::arg("dump_dir") = "",
           py::arg("failure_dir") = "", py::arg("log") = nullptr, py::arg("origin") = "compile")
      .def_property_readonly("stats", &JitRuntime::stats)
      .def("kernel_key", &JitRuntime::kernel_key, py::arg("spec"))
      .def("tuned_tile", &JitRuntime::tuned_tile, py::arg("problem"), py::arg("gpu_name"), py::arg("bucket"))
      .def("record_tuning", &JitRuntime::record_tuning, py::arg("entry"))
      .def("tunings", &JitRuntime::tunings, py::arg("problem"), py::arg("gpu_name"))
      .def_property_readonly("database_paths",
                             [](JitRuntime& r) {
                               return r.database() ? r.database()->open_paths() : std::vector<std::string>{};
                             })
      .def_property_readonly("cache_writable",
                             [](JitRuntime& r) { return r.database() != nullptr && r.database()->cache_writable(); })
      .def_property_readonly("templates_dir", [](const JitRuntime& r) { return r.templates().include_dir(); })
      .def_property_readonly("templates_hash", [](const JitRuntime& r) { return r.templates().content_hash_hex(); })
      .def_property_readonly("nvrtc_version", [](JitRuntime& r) { return r.nvrtc().version(); })
      .def_property_readonly("nvrtc_path", [](JitRuntime& r) { return r.nvrtc().path(); })
      .def_property_readonly("nvrtc_reason", [](JitRuntime& r) { return r.nvrtc().reason(); },
                             "Why this NVRTC was chosen (see nvrtc_search_order).")
      .def_property_readonly("driver_version", [](JitRuntime& r) { return r.driver().version(); })
      .def("compile_options", [](JitRuntime& r, const KernelSpec& s) { return r.compiler().options(s, r.options().compile); },
           py::arg("spec"))
      .def("compile",
           [](JitRuntime& r, const KernelSpec& s) {
             py::gil_scoped_release release;
             return std::const_pointer_cast<CompiledKernel>(r.compile(s));
           },
           py::arg("spec"), "Compile (once per runtime) and return the kernel with its artifacts.")
      .def_property_readonly("compiled_count", &JitRuntime::compiled_count)
      .def("prepare",
           [](JitRuntime& r, const KernelSpec& s, int device) {
             py::gil_scoped_release release;
             r.prepare(s, device);
           },
           py::arg("spec"), py::arg("device"), "Compile or fetch the kernel and load it into the device.")
      .def("check_loads", &JitRuntime::check_loads, py::arg("kernel"), py::arg("device"),
           "Load a compiled kernel into the device and unload it: raises if the driver rejects it.")
      .def(
          "persistent_grid",
          [](JitRuntime& r, const KernelSpec& s, std::int64_t tiles, int device) {
            py::gil_scoped_release release;
            return r.persistent_grid(s, tiles, device);
          },
          py::arg("spec"), py::arg("tiles"), py::arg("device"),
          "Thread blocks launched for `tiles` C tiles: all of them (mma), one per SM at most (wgmma), or as many "
          "whole clusters as the device runs at once (a cluster tile).")
      .def("device_count", &JitRuntime::device_count)
      .def("device_info", &JitRuntime::device_info, py::arg("device"))
      .def("launch_bsr_gemm", &launch_bsr_gemm, py::arg("spec"), py::arg("a"), py::arg("b"), py::arg("c"),
           py::arg("lda"), py::arg("ldb"), py::arg("ldc"), py::arg("row_indices"), py::arg("column_indices"),
           py::arg("offsets"), py::arg("column_indices_t"), py::arg("offsets_t"), py::arg("block_offsets_t"),
           py::arg("nnz"), py::arg("block_rows"), py::arg("block_cols"), py::arg("device"), py::arg("stream"),
           py::arg("live_nnz") = 0, py::arg("live_rows") = 0)
      .def("launch_routing", &launch_routing, py::arg("spec"), py::arg("layout"), py::arg("plan"),
           py::arg("expert_indices") = 0, py::arg("input") = 0, py::arg("output") = 0, py::arg("weights") = 0,
           py::arg("weight_grad") = 0, py::arg("rows_forward") = 0, py::arg("tokens") = 0, py::arg("device") = 0,
           py::arg("stream") = 0)
      .def("launch_activation", &launch_activation, py::arg("spec"), py::arg("h"), py::arg("gate"), py::arg("grad"),
           py::arg("out"), py::arg("out_gate"), py::arg("live_nnz"), py::arg("capacity_blocks"), py::arg("device"),
           py::arg("stream"));

  // Docstrings of the public exceptions and value types (help(moejit.KernelSpec) and the like).
  const std::pair<const char*, const char*> docs[] = {
      {"SpecError",
       "An invalid or malformed kernel spec, tile or layer shape (a ValueError). The message names the field, "
       "its value and what is allowed; raised from C++ it also has the attributes field, value and expected."},
      {"CompileError",
       "NVRTC rejected a generated kernel (a RuntimeError). The message names the kernel, its target and spec, "
       "and quotes NVRTC's log with the generated and template source lines it points at."},
      {"KernelSpec",
       "One kernel: op (sdd, dsd, dds or a routing op), its compile-time extents m, n, k (the one that varies "
       "with the token count is DYNAMIC), transposes, dtype, block size, target, kernel family and tile. A "
       "plain value: text() is its canonical form (KernelSpec.parse reads it back) and its hash is the "
       "kernel database key. Build one with moejit.kernel_spec(...)."},
      {"Target",
       "A compile target, such as Target('sm_90a') (Hopper's architecture-specific features) or "
       "Target('sm_80'): compute capability major.minor and whether it is arch-specific (the 'a' suffix)."},
      {"TileConfig",
       "How one thread block computes its part of C: tile_m x tile_n x tile_k elements, stages of the "
       "shared-memory pipeline, warps_m x warps_n warps, and for the wgmma family pingpong and clusters. "
       "Text form MxNxK.sS.wWMxWN[.cC|.cCMxCN][.pingpong], as TileConfig.parse reads and text() writes."},
  };
  for (const auto& [name, doc] : docs) m.attr(name).attr("__doc__") = doc;
}
