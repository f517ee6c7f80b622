// moejit._core: the C++ compiler and runtime, bound for the Python package. It takes
// plain integers for device pointers and streams, so it does not link against torch.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>

#include "autotune/tile_heuristics.hpp"
#include "compiler/codegen.hpp"
#include "compiler/compiled_kernel.hpp"
#include "compiler/kernel_compiler.hpp"
#include "compiler/kernel_spec.hpp"
#include "compiler/launch_geometry.hpp"
#include "compiler/spec_error.hpp"
#include "compiler/validate.hpp"
#include "runtime/jit_runtime.hpp"

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
                     std::uintptr_t stream) {
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
  // Compilation and loading can take a while on a cold cache: let other Python threads run.
  py::gil_scoped_release release;
  runtime.launch_bsr_gemm(spec, p, SparseShape{nnz, block_rows, block_cols}, device,
                          reinterpret_cast<CUstream>(stream));
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "moejit core: kernel specs, code generation, NVRTC compilation and the CUDA runtime";
  m.attr("__version__") = MOEJIT_VERSION;

  auto spec_error = py::register_exception<SpecError>(m, "SpecError", PyExc_ValueError);
  py::register_exception<CompileError>(m, "CompileError", PyExc_RuntimeError);
  (void)spec_error;

  py::enum_<DType>(m, "DType").value("bf16", DType::bf16).value("fp16", DType::fp16);
  py::enum_<OpKind>(m, "OpKind").value("sdd", OpKind::sdd).value("dsd", OpKind::dsd).value("dds", OpKind::dds);
  m.def("parse_dtype", &parse_dtype, py::arg("text"));
  m.def("parse_op", &parse_op, py::arg("text"));
  m.def("dynamic_extent", [](OpKind op, bool ta, bool tb) { return std::string(1, dynamic_extent(op, ta, tb)); },
        py::arg("op"), py::arg("trans_a"), py::arg("trans_b"),
        "Which extent (m, n or k) of the op varies with the token count.");
  m.attr("DYNAMIC") = kDynamic;

  py::class_<Target>(m, "Target")
      .def(py::init(&parse_target), py::arg("text"))
      .def_readonly("major", &Target::major)
      .def_readonly("minor", &Target::minor)
      .def_readonly("arch_specific", &Target::arch_specific)
      .def("text", &Target::text)
      .def("max_shared_bytes_per_block", &Target::max_shared_bytes_per_block)
      .def("__eq__", [](const Target& a, const Target& b) { return a == b; })
      .def("__repr__", [](const Target& t) { return "Target('" + t.text() + "')"; });
  m.def("target_for_device", &target_for_device, py::arg("major"), py::arg("minor"));

  py::class_<TileConfig>(m, "TileConfig")
      .def(py::init([](int tm, int tn, int tk, int stages, int wm, int wn) {
             return TileConfig{tm, tn, tk, stages, wm, wn};
           }),
           py::arg("tile_m") = 128, py::arg("tile_n") = 128, py::arg("tile_k") = 32, py::arg("stages") = 4,
           py::arg("warps_m") = 2, py::arg("warps_n") = 2)
      .def_static("parse", &parse_tile_config, py::arg("text"))
      .def_readwrite("tile_m", &TileConfig::tile_m)
      .def_readwrite("tile_n", &TileConfig::tile_n)
      .def_readwrite("tile_k", &TileConfig::tile_k)
      .def_readwrite("stages", &TileConfig::stages)
      .def_readwrite("warps_m", &TileConfig::warps_m)
      .def_readwrite("warps_n", &TileConfig::warps_n)
      .def_property_readonly("threads", &TileConfig::threads)
      .def("shared_bytes", &TileConfig::shared_bytes, py::arg("dtype"))
      .def("text", &TileConfig::text)
      .def("__eq__", [](const TileConfig& a, const TileConfig& b) { return a == b; })
      .def("__repr__", [](const TileConfig& t) { return "TileConfig('" + t.text() + "')"; });

  py::class_<KernelSpec>(m, "KernelSpec")
      .def(py::init<>())
      .def_static("parse", &parse_kernel_spec, py::arg("text"))
      .def_readwrite("op", &KernelSpec::op)
      .def_readwrite("trans_a", &KernelSpec::trans_a)
      .def_readwrite("trans_b", &KernelSpec::trans_b)
      .def_readwrite("dtype", &KernelSpec::dtype)
      .def_readwrite("block_size", &KernelSpec::block_size)
      .def_readwrite("m", &KernelSpec::m)
      .def_readwrite("n", &KernelSpec::n)
      .def_readwrite("k", &KernelSpec::k)
      .def_readwrite("tile", &KernelSpec::tile)
      .def_readwrite("target", &KernelSpec::target)
      .def("text", &KernelSpec::text)
      .def("hash_hex", &KernelSpec::hash_hex)
      .def("short_name", &KernelSpec::short_name)
      .def("validate", [](const KernelSpec& s) { validate(s); })
      .def("__eq__", [](const KernelSpec& a, const KernelSpec& b) { return a == b; })
      .def("__hash__", [](const KernelSpec& s) { return static_cast<std::int64_t>(s.hash() >> 1); })
      .def("__repr__", [](const KernelSpec& s) { return "KernelSpec('" + s.text() + "')"; });

  m.def("heuristic_tile_config", &heuristic_tile_config, py::arg("spec"));
  m.def("with_heuristic_tile", &with_heuristic_tile, py::arg("spec"));

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

  py::class_<JitRuntime>(m, "JitRuntime")
      .def(py::init([](const std::string& templates_dir, const std::vector<std::string>& nvrtc_candidates,
                       bool line_info) {
             JitOptions options;
             options.templates_dir = templates_dir;
             options.nvrtc_candidates = nvrtc_candidates;
             options.compile.line_info = line_info;
             return std::make_unique<JitRuntime>(std::move(options));
           }),
           py::arg("templates_dir"), py::arg("nvrtc_candidates") = std::vector<std::string>{},
           py::arg("line_info") = false)
      .def_property_readonly("templates_dir", [](const JitRuntime& r) { return r.templates().include_dir(); })
      .def_property_readonly("templates_hash", [](const JitRuntime& r) { return r.templates().content_hash_hex(); })
      .def_property_readonly("nvrtc_version", [](JitRuntime& r) { return r.nvrtc().version(); })
      .def_property_readonly("nvrtc_path", [](JitRuntime& r) { return r.nvrtc().path(); })
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
      .def("device_count", &JitRuntime::device_count)
      .def("device_info", &JitRuntime::device_info, py::arg("device"))
      .def("launch_bsr_gemm", &launch_bsr_gemm, py::arg("spec"), py::arg("a"), py::arg("b"), py::arg("c"),
           py::arg("lda"), py::arg("ldb"), py::arg("ldc"), py::arg("row_indices"), py::arg("column_indices"),
           py::arg("offsets"), py::arg("column_indices_t"), py::arg("offsets_t"), py::arg("block_offsets_t"),
           py::arg("nnz"), py::arg("block_rows"), py::arg("block_cols"), py::arg("device"), py::arg("stream"));
}
