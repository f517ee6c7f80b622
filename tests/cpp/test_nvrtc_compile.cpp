// Compiling kernel specs with NVRTC (the "nvrtc" suite: it needs libnvrtc, which the CI
// machine has; a missing NVRTC fails these tests, it never skips them), the template
// library whose content hash is part of every cache key, and compile-log annotation.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <unistd.h>

#include <doctest/doctest.h>

#include "autotune/tile_heuristics.hpp"
#include "compiler/codegen.hpp"
#include "compiler/compiled_kernel.hpp"
#include "compiler/kernel_compiler.hpp"
#include "compiler/kernel_spec.hpp"
#include "compiler/nvrtc_library.hpp"
#include "compiler/spec_error.hpp"
#include "compiler/template_library.hpp"
#include "compiler/validate.hpp"
#include "test_support.hpp"

using namespace moejit;
namespace fs = std::filesystem;

namespace {

const std::string kTemplatesDir = MOEJIT_TEST_TEMPLATES_DIR;

// NVRTC is loaded once for the whole run. If it cannot be loaded, every test that needs
// it fails with the loader's message (what was tried, what to install).
const NvrtcLibrary& nvrtc() {
  static const std::unique_ptr<NvrtcLibrary> library = [] {
    try {
      return std::make_unique<NvrtcLibrary>();
    } catch (const std::exception& e) {
      FAIL("NVRTC is required by the nvrtc suite (CI has the CUDA toolkit): " << e.what());
      return std::unique_ptr<NvrtcLibrary>();
    }
  }();
  REQUIRE(library != nullptr);
  return *library;
}

const TemplateLibrary& templates() {
  static const TemplateLibrary library(kTemplatesDir);
  return library;
}

// A copy of the template directory in a fresh temporary directory, removed afterwards.
class TemplateCopy {
 public:
  TemplateCopy() {
    static std::atomic<int> counter{0};
    std::random_device random;
    root_ = fs::temp_directory_path() /
            ("moejit-test-templates-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" +
             std::to_string(random()));
    fs::create_directories(root_);
    fs::copy(fs::path(kTemplatesDir) / "moejit", root_ / "moejit", fs::copy_options::recursive);
  }
  ~TemplateCopy() {
    std::error_code ignored;
    fs::remove_all(root_, ignored);
  }
  TemplateCopy(const TemplateCopy&) = delete;
  TemplateCopy& operator=(const TemplateCopy&) = delete;

  std::string dir() const { return root_.string(); }
  fs::path file(const std::string& include_name) const { return root_ / include_name; }
  void append(const std::string& include_name, const std::string& text) const {
    std::ofstream out(file(include_name), std::ios::app | std::ios::binary);
    REQUIRE(out.good());
    out << text;
  }
  void write(const std::string& include_name, const std::string& text) const {
    std::ofstream out(file(include_name), std::ios::trunc | std::ios::binary);
    REQUIRE(out.good());
    out << text;
  }

 private:
  fs::path root_;
};

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

struct Outcome {
  KernelSpec spec;
  std::optional<CompiledKernel> kernel;
  std::string error;
};

// Compiles `specs` on every core: the compiler is documented thread-safe (one NVRTC
// program per call), and this keeps the 48-kernel grid quick on CI's 2 cores.
std::vector<Outcome> compile_all(const KernelCompiler& compiler, const std::vector<KernelSpec>& specs) {
  std::vector<Outcome> out(specs.size());
  std::atomic<std::size_t> next{0};
  const unsigned workers = std::max(1u, std::min<unsigned>(std::thread::hardware_concurrency(), 8));
  std::vector<std::thread> threads;
  for (unsigned w = 0; w < workers; ++w) {
    threads.emplace_back([&] {
      for (std::size_t i = next++; i < specs.size(); i = next++) {
        out[i].spec = specs[i];
        try {
          out[i].kernel = compiler.compile(specs[i]);
        } catch (const std::exception& e) {
          out[i].error = e.what();
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return out;
}

void check_kernel(const Outcome& outcome) {
  const KernelSpec& spec = outcome.spec;
  CAPTURE(spec);
  REQUIRE_MESSAGE(outcome.kernel.has_value(), outcome.error);
  const CompiledKernel& k = *outcome.kernel;
  CHECK(k.spec == spec);
  CHECK(k.cubin.size() > 1000);
  CHECK(k.cubin.rfind("\x7f" "ELF", 0) == 0);
  const bool wgmma = spec.family == KernelFamily::wgmma;
  CHECK(k.lowered_name.rfind(wgmma ? "_ZN6moejit13bsr_gemm_sm90" : "_ZN6moejit13bsr_gemm_sm80", 0) == 0);
  CHECK(contains(k.ptx, ".target " + spec.target.text()));
  CHECK(contains(k.ptx, ".entry " + k.lowered_name + "("));
  CHECK(k.source == generate_source(spec).source);
  CHECK(k.resources.registers > 0);
  CHECK(k.resources.registers <= spec.target.max_registers_per_thread());
  CHECK(k.resources.spill_store_bytes == 0);
  CHECK(k.resources.spill_load_bytes == 0);
  CHECK(k.resources.stack_bytes == 0);
  CHECK(k.threads == spec.threads());
  CHECK(k.dynamic_shared_bytes == spec.shared_bytes());
  if (wgmma) {
    // ptxas gives every thread the launch bound's registers (it does not shrink a kernel
    // that uses setmaxnreg); the split the template requests must fit that allocation,
    // or setmaxnreg.inc would wait forever on the GPU.
    const WgmmaRegisters r = wgmma_registers(spec.tile);
    CHECK(k.resources.registers == r.launch);
    CHECK(r.producer * 128 + r.consumer * spec.tile.threads() <= k.resources.registers * k.threads);
    CHECK(r.consumer >= wgmma_warpgroup_rows(spec.tile) * spec.tile.tile_n / 128 + 32);   // accumulators and more
    for (const char* instruction : {"wgmma.mma_async.sync.aligned", "cp.async.bulk.tensor.2d.global.shared::cta",
                                    "mbarrier.try_wait.parity", "setmaxnreg.inc.sync.aligned.u32",
                                    "setmaxnreg.dec.sync.aligned.u32"}) {
      CAPTURE(instruction);
      CHECK(contains(k.ptx, instruction));
    }
    // Operand copies: 2-D for a K-major operand, 3-D for an MN-major one (its chunks).
    CHECK((contains(k.ptx, "cp.async.bulk.tensor.2d.shared::cluster.global") ||
           contains(k.ptx, "cp.async.bulk.tensor.3d.shared::cluster.global")));
    CHECK(!contains(k.ptx, "mma.sync.aligned"));
    CHECK(!contains(k.ptx, "ld.local"));
    CHECK(!contains(k.ptx, "st.local"));
  }
  CHECK(k.dynamic_shared_bytes + k.resources.static_shared_bytes <= spec.target.max_shared_bytes_per_block());
  CHECK(contains(k.log, "registers"));
  CHECK(k.compile_ms > 0);
  // The CUBIN's own records agree with ptxas (they stand in when NVRTC skips ptxas).
  const auto from_cubin = read_cubin_resources(k.cubin);
  REQUIRE(from_cubin.has_value());
  CHECK(from_cubin->registers == parse_ptxas_resources(k.log).registers);
  CHECK(from_cubin->frame_bytes == parse_ptxas_resources(k.log).stack_bytes);
  const ResourceUsage without_log = kernel_resources("", k.cubin);
  CHECK(without_log.registers == k.resources.registers);
  CHECK(without_log.spill_store_bytes == 0);
}

}  // namespace

TEST_SUITE("nvrtc") {

TEST_CASE("NVRTC loads and reports its version") {
  const NvrtcLibrary& library = nvrtc();
  CHECK(library.major() >= 12);
  CHECK(library.version() == std::to_string(library.major()) + "." + std::to_string(library.minor()));
  CHECK(!library.path().empty());
  MESSAGE("NVRTC " << library.version() << " from " << library.path());
}

TEST_CASE("NVRTC options: target, include directory, ptxas verbosity, then the caller's") {
  const KernelCompiler compiler(nvrtc(), templates());
  const KernelSpec spec = test::moe_spec(OpKind::sdd, false, true, DType::bf16, 128);
  const std::vector<std::string> base = compiler.options(spec);
  CHECK(base == std::vector<std::string>{"--gpu-architecture=sm_90a", "-std=c++17", "-I" + kTemplatesDir,
                                         "--ptxas-options=-v"});
  CompileOptions options;
  options.line_info = true;
  options.extra_options = {"-DMOEJIT_TEST=1", "--use_fast_math"};
  const std::vector<std::string> with = compiler.options(spec, options);
  REQUIRE(with.size() == base.size() + 3);
  CHECK(std::equal(base.begin(), base.end(), with.begin()));
  CHECK(with[4] == "-lineinfo");
  CHECK(with[5] == "-DMOEJIT_TEST=1");
  CHECK(with[6] == "--use_fast_math");
  KernelSpec sm80 = spec;
  sm80.target = test::sm_80();
  CHECK(compiler.options(sm80).front() == "--gpu-architecture=sm_80");
}

// Compiles `specs` in parallel, checks every kernel (check_kernel) and that distinct
// specs gave distinct kernels; `what` names them in the timing message.
void compile_and_check_all(const KernelCompiler& compiler, const std::vector<KernelSpec>& specs,
                           const std::string& what) {
  const auto start = std::chrono::steady_clock::now();
  const std::vector<Outcome> outcomes = compile_all(compiler, specs);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  MESSAGE("compiled " << outcomes.size() << " " << what << " in " << seconds << " s");
  std::vector<std::string> names;
  for (const Outcome& outcome : outcomes) {
    check_kernel(outcome);
    if (outcome.kernel) names.push_back(outcome.kernel->lowered_name);
  }
  std::sort(names.begin(), names.end());
  CHECK(std::unique(names.begin(), names.end()) == names.end());
  CHECK(names.size() == specs.size());
}

// Half `part` (0 or 1) of `specs`: the longest compile tests run as two test cases, which
// tests/meson.build registers as two meson tests, so progress shows as each half ends.
std::vector<KernelSpec> half(const std::vector<KernelSpec>& specs, int part) {
  const auto middle = specs.begin() + static_cast<std::ptrdiff_t>(specs.size() / 2);
  return part == 0 ? std::vector<KernelSpec>(specs.begin(), middle) : std::vector<KernelSpec>(middle, specs.end());
}

std::vector<KernelSpec> wgmma_tile_specs() {
  std::vector<KernelSpec> specs = test::wgmma_spec_grid();
  REQUIRE(specs.size() == 48);
  // Beyond the heuristic tiles: every tile shape the search space may pick, at the
  // shallowest and a deep ring, on the layer's dsd kernels and (where the tile fits in a
  // block) on sdd and dds.
  const TileConfig extra[] = {{128, 256, 64, 3, 8, 1}, {128, 128, 64, 2, 8, 1}, {128, 64, 64, 6, 8, 1},
                              {64, 256, 64, 4, 4, 1},  {64, 128, 64, 5, 4, 1},  {64, 64, 64, 2, 4, 1}};
  for (const TileConfig& tile : extra) {
    for (auto [op, ta, tb] : {std::tuple{OpKind::dsd, false, false}, std::tuple{OpKind::dsd, true, false},
                              std::tuple{OpKind::sdd, false, true}, std::tuple{OpKind::dds, true, true}}) {
      if (op != OpKind::dsd && tile.tile_n > 128) continue;
      KernelSpec s = test::moe_spec(op, ta, tb, DType::bf16, 128);
      s.family = KernelFamily::wgmma;
      s.tile = tile;
      if (std::find(specs.begin(), specs.end(), s) == specs.end()) specs.push_back(s);
    }
  }
  return specs;
}

std::vector<KernelSpec> wgmma_schedule_specs() {
  const std::vector<KernelSpec> specs = test::wgmma_schedule_grid();
  // 15: dsd's three cluster tiles along N, 15 its three along M; 5: its 128x256 tile; 10:
  // sdd's third tile for two block sizes
  REQUIRE(specs.size() == 52 + 13 + 15 + 15 + 5 + 10);
  for (const KernelSpec& s : specs) {
    CAPTURE(s);
    REQUIRE_NOTHROW(validate(s));
  }
  return specs;
}

TEST_CASE("every op x transpose x dtype x block compiles for sm_90a without spills") {
  const KernelCompiler compiler(nvrtc(), templates());
  std::vector<KernelSpec> specs;
  for (const KernelSpec& s : test::moe_spec_grid(test::sm_90a())) specs.push_back(with_heuristic_tile(s));
  REQUIRE(specs.size() == 48);
  compile_and_check_all(compiler, specs, "kernels");
}

TEST_CASE("every wgmma op x transpose x dtype x block compiles for sm_90a without spills, first half") {
  compile_and_check_all(KernelCompiler(nvrtc(), templates()), half(wgmma_tile_specs(), 0), "wgmma kernels");
}

TEST_CASE("every wgmma op x transpose x dtype x block compiles for sm_90a without spills, second half") {
  compile_and_check_all(KernelCompiler(nvrtc(), templates()), half(wgmma_tile_specs(), 1), "wgmma kernels");
}

TEST_CASE("every wgmma schedule (pingpong, sdd block pairs, 256-row tiles, dsd clusters) compiles without spills, "
          "first half") {
  compile_and_check_all(KernelCompiler(nvrtc(), templates()), half(wgmma_schedule_specs(), 0),
                        "wgmma schedule kernels");
}

TEST_CASE("every wgmma schedule (pingpong, sdd block pairs, 256-row tiles, dsd clusters) compiles without spills, "
          "second half") {
  compile_and_check_all(KernelCompiler(nvrtc(), templates()), half(wgmma_schedule_specs(), 1),
                        "wgmma schedule kernels");
}

TEST_CASE("compiles for sm_80, with line info") {
  const KernelCompiler compiler(nvrtc(), templates());
  const KernelSpec spec = with_heuristic_tile(test::moe_spec(OpKind::dsd, true, false, DType::fp16, 64, test::sm_80()));
  CompileOptions options;
  options.line_info = true;
  const CompiledKernel k = compiler.compile(spec, options);
  check_kernel(Outcome{spec, k, ""});
  CHECK(contains(k.ptx, ".target sm_80"));
  CHECK(contains(k.ptx, ".loc"));   // -lineinfo
  CHECK(k.options == compiler.options(spec, options));
  CHECK(contains(k.log, "for 'sm_80'"));
}

TEST_CASE("an invalid spec is rejected before NVRTC runs") {
  const KernelCompiler compiler(nvrtc(), templates());
  KernelSpec spec = test::moe_spec(OpKind::sdd, false, true, DType::bf16, 128);
  spec.tile.stages = 1;
  CHECK_THROWS_AS(compiler.compile(spec), SpecError);
}

TEST_CASE("an option NVRTC rejects is a CompileError") {
  const KernelCompiler compiler(nvrtc(), templates());
  const KernelSpec spec = test::moe_spec(OpKind::sdd, false, true, DType::bf16, 64);
  CompileOptions options;
  options.extra_options = {"--no-such-nvrtc-option"};
  CHECK_THROWS_AS(compiler.compile(spec, options), CompileError);
}

TEST_CASE("a template that does not compile is a CompileError quoting the template line") {
  const TemplateCopy copy;
  const std::string marker = "#error \"moejit test: this template is broken on purpose\"";
  copy.append("moejit/ptx.cuh", "\n" + marker + "\n");
  const TemplateLibrary broken(copy.dir());
  const KernelCompiler compiler(nvrtc(), broken);
  const KernelSpec spec = test::moe_spec(OpKind::sdd, false, true, DType::bf16, 128);
  try {
    compiler.compile(spec);
    FAIL("the broken template compiled");
  } catch (const CompileError& e) {
    const std::string what = e.what();
    CAPTURE(what);
    CHECK(contains(e.log(), "moejit test: this template is broken on purpose"));
    CHECK(contains(e.log(), "ptx.cuh("));
    CHECK(e.source() == generate_source(spec).source);
    CHECK(contains(what, "NVRTC could not compile sdd_nt_bf16_b128_n114688_k4096.cu"));
    CHECK(contains(what, "spec: " + spec.text()));
    CHECK(contains(what, " | " + marker));   // the offending template line, quoted
  }
}

}  // TEST_SUITE

TEST_SUITE("templates") {

TEST_CASE("TemplateLibrary finds the headers and hashes their content") {
  const TemplateLibrary& library = templates();
  CHECK(library.include_dir() == kTemplatesDir);
  CHECK(library.content_hash() != 0);
  CHECK(library.content_hash_hex().size() == 16);
  CHECK(contains(library.read("moejit/bsr_gemm_sm80.cuh"), "bsr_gemm_sm80"));
  CHECK(library.read("moejit/op_kind.h") == slurp(fs::path(kTemplatesDir) / "moejit/op_kind.h"));
  CHECK_THROWS_AS(library.read("moejit/no_such_header.cuh"), std::runtime_error);
  // A second library over the same directory has the same hash.
  CHECK(TemplateLibrary(kTemplatesDir).content_hash() == library.content_hash());
}

TEST_CASE("the content hash follows the template files and nothing else") {
  const TemplateCopy copy;
  const std::uint64_t original = templates().content_hash();
  // The location does not matter, only the files.
  CHECK(TemplateLibrary(copy.dir()).content_hash() == original);

  SUBCASE("editing a template changes the hash, restoring it restores the hash") {
    const std::string text = slurp(copy.file("moejit/warp_mma.cuh"));
    copy.append("moejit/warp_mma.cuh", "// an edit\n");
    const std::uint64_t edited = TemplateLibrary(copy.dir()).content_hash();
    CHECK(edited != original);
    copy.write("moejit/warp_mma.cuh", text + "// another edit\n");
    CHECK(TemplateLibrary(copy.dir()).content_hash() != edited);
    copy.write("moejit/warp_mma.cuh", text);
    CHECK(TemplateLibrary(copy.dir()).content_hash() == original);
  }
  SUBCASE("a one-byte change in a .h header changes the hash") {
    std::string text = slurp(copy.file("moejit/op_kind.h"));
    REQUIRE(!text.empty());
    text.back() = text.back() == ' ' ? '\t' : ' ';
    copy.write("moejit/op_kind.h", text);
    CHECK(TemplateLibrary(copy.dir()).content_hash() != original);
  }
  SUBCASE("adding, removing or renaming a header changes the hash") {
    copy.write("moejit/extra.cuh", "#pragma once\n");
    CHECK(TemplateLibrary(copy.dir()).content_hash() != original);
    fs::remove(copy.file("moejit/extra.cuh"));
    CHECK(TemplateLibrary(copy.dir()).content_hash() == original);
    fs::rename(copy.file("moejit/epilogue.cuh"), copy.file("moejit/epilogue2.cuh"));
    CHECK(TemplateLibrary(copy.dir()).content_hash() != original);
  }
  SUBCASE("a header in a subfolder counts: adding, editing, moving it changes the hash") {
    fs::create_directories(copy.file("moejit/sub"));
    copy.write("moejit/sub/part.cuh", "#pragma once\n");
    const std::uint64_t added = TemplateLibrary(copy.dir()).content_hash();
    CHECK(added != original);
    copy.append("moejit/sub/part.cuh", "// an edit\n");
    const std::uint64_t edited = TemplateLibrary(copy.dir()).content_hash();
    CHECK(edited != added);
    fs::rename(copy.file("moejit/sub/part.cuh"), copy.file("moejit/part.cuh"));
    CHECK(TemplateLibrary(copy.dir()).content_hash() != edited);
    fs::remove(copy.file("moejit/part.cuh"));
    CHECK(TemplateLibrary(copy.dir()).content_hash() == original);
  }
  SUBCASE("files that are not headers do not count") {
    copy.write("moejit/README.txt", "notes\n");
    copy.write("moejit/scratch.cu~", "backup\n");
    CHECK(TemplateLibrary(copy.dir()).content_hash() == original);
  }
}

TEST_CASE("a missing or incomplete template directory throws") {
  CHECK_THROWS_AS(TemplateLibrary("/nonexistent/moejit/templates"), std::runtime_error);
  try {
    TemplateLibrary library("/nonexistent/moejit/templates");
  } catch (const std::runtime_error& e) {
    CHECK(contains(e.what(), "/nonexistent/moejit/templates"));
    CHECK(contains(e.what(), "bsr_gemm_sm80.cuh"));
  }
  const TemplateCopy copy;
  fs::remove(copy.file("moejit/bsr_gemm_sm80.cuh"));
  CHECK_THROWS_AS(TemplateLibrary(copy.dir()), std::runtime_error);
  // The include directory is the parent of moejit/, not moejit/ itself.
  CHECK_THROWS_AS(TemplateLibrary(kTemplatesDir + "/moejit"), std::runtime_error);
}

TEST_CASE("annotate_compile_log quotes the generated or template line under each diagnostic") {
  const std::string source = "// line 1\n#include \"moejit/bsr_gemm_sm80.cuh\"\nint broken = ;\n// line 4\n";
  SUBCASE("a line of the generated source") {
    const std::string out = annotate_compile_log("x.cu(3): error: boom", "x.cu", source, templates());
    CHECK(out == "x.cu(3): error: boom\n        3 | int broken = ;\n");
  }
  SUBCASE("a line of a template, by include name and by absolute path") {
    const std::string header = templates().read("moejit/op_kind.h");
    std::istringstream lines(header);
    std::string line;
    int number = 0;
    while (std::getline(lines, line)) {
      ++number;
      if (contains(line, "enum class OpKind")) break;
    }
    REQUIRE(contains(line, "enum class OpKind"));
    const std::string diag = "moejit/op_kind.h(" + std::to_string(number) + "): warning: odd";
    CHECK(contains(annotate_compile_log(diag, "x.cu", source, templates()), "| " + line + "\n"));
    const std::string abs_diag =
        kTemplatesDir + "/moejit/op_kind.h(" + std::to_string(number) + "): error: odd";
    CHECK(contains(annotate_compile_log(abs_diag, "x.cu", source, templates()), "| " + line + "\n"));
  }
  SUBCASE("lines that are not diagnostics, or point nowhere, pass through unchanged") {
    const std::string log =
        "x.cu(99): error: past the end\n"
        "/nonexistent/include/foo.h(3): error: not ours\n"
        "note (see above): nothing\n"
        "x.cu(abc): error: no line number\n"
        "(3): error: no file\n"
        "1 error detected in the compilation of \"x.cu\".";
    CHECK(annotate_compile_log(log, "x.cu", source, templates()) == log + "\n");
  }
  SUBCASE("several diagnostics, each annotated") {
    const std::string out =
        annotate_compile_log("x.cu(1): warning: a\nx.cu(3): error: b\n", "x.cu", source, templates());
    CHECK(out == "x.cu(1): warning: a\n        1 | // line 1\nx.cu(3): error: b\n        3 | int broken = ;\n");
  }
  SUBCASE("a log of another file name is not matched against the generated source") {
    CHECK(annotate_compile_log("y.cu(3): error: boom", "x.cu", source, templates()) == "y.cu(3): error: boom\n");
  }
}

}  // TEST_SUITE
