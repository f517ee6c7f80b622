// ptx_hashes: compiles the kernel specs the tuner may pick to PTX and prints one
// "<spec text>  <hash>" line per spec, or compares them with a committed list, so that a
// refactoring of templates/ can prove it left the release PTX of every variant alone.
//
//   ptx_hashes [--full] [--list] [--match REGEX] [--jobs N] [--templates DIR] [--dump DIR] [--write FILE | --check FILE]
//
// The default list is the CI subset (every schedule, op, transpose, cluster kind, pair kind,
// dtype and block size at one model shape); --full adds every tile of the search space at
// four model shapes, the explicit-only tiles and the mma search space. --match keeps the
// specs whose text the regular expression finds; --list prints them without compiling;
// --dump writes each spec's hashed PTX to DIR/<FNV-1a 64 of the spec text>.ptx.
//
// What is hashed: the PTX NVRTC emits for the release options (KernelCompiler::options),
// compiled to PTX only (compute_XX instead of sm_XX, no ptxas: the PTX text is the same,
// ptxas only runs after it), with one kind of line removed: module-scope `.global` data
// that no instruction references. NVRTC emits every static constexpr member of every class
// template the kernel instantiates (Sm90Layout<...>::kThreads, ...) as such a line, so
// renaming a helper type would change the text without changing a single instruction.
// Release PTX carries no .file/.loc lines (no -lineinfo), so moving code between headers
// does not show.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "autotune/search_space.hpp"
#include "autotune/tile_heuristics.hpp"
#include "compiler/codegen.hpp"
#include "compiler/hash.hpp"
#include "compiler/kernel_compiler.hpp"
#include "compiler/nvrtc_library.hpp"
#include "compiler/routing_spec.hpp"
#include "compiler/spec_error.hpp"
#include "compiler/template_library.hpp"
#include "compiler/validate.hpp"
#include "spec_lists.hpp"

using namespace moejit;

namespace {

// The PTX of `spec` under the release options, without running ptxas.
std::string release_ptx(const KernelCompiler& compiler, const KernelSpec& spec, const std::string& extra_option) {
  const NvrtcLibrary& nvrtc = compiler.nvrtc();
  const GeneratedSource generated = generate_source(spec);
  std::vector<std::string> options;
  CompileOptions compile_options;
  if (!extra_option.empty()) compile_options.extra_options.push_back(extra_option);
  for (const std::string& o : compiler.options(spec, compile_options)) {
    if (o.starts_with("--ptxas-options")) continue;   // ptxas does not run for compute_XX
    if (o == "--gpu-architecture=" + spec.target.text()) {
      options.push_back("--gpu-architecture=compute_" + spec.target.text().substr(3));
    } else {
      options.push_back(o);
    }
  }
  nvrtcProgram program = nullptr;
  nvrtc.check(nvrtc.CreateProgram(&program, generated.source.c_str(), generated.file_name.c_str(), 0, nullptr, nullptr),
              "nvrtcCreateProgram");
  struct Destroy {
    const NvrtcLibrary& nvrtc;
    nvrtcProgram& program;
    ~Destroy() { nvrtc.DestroyProgram(&program); }
  } destroy{nvrtc, program};
  nvrtc.check(nvrtc.AddNameExpression(program, generated.name_expression.c_str()), "nvrtcAddNameExpression");
  std::vector<const char*> argv;
  for (const std::string& o : options) argv.push_back(o.c_str());
  const nvrtcResult result = nvrtc.CompileProgram(program, static_cast<int>(argv.size()), argv.data());
  if (result != NVRTC_SUCCESS) {
    std::size_t size = 0;
    nvrtc.GetProgramLogSize(program, &size);
    std::string log(size, '\0');
    nvrtc.GetProgramLog(program, log.data());
    throw std::runtime_error(fmt::format("{} {} does not compile:\n{}", spec.text(), extra_option, log));
  }
  std::size_t size = 0;
  nvrtc.check(nvrtc.GetPTXSize(program, &size), "nvrtcGetPTXSize");
  std::string ptx(size, '\0');
  nvrtc.check(nvrtc.GetPTX(program, ptx.data()), "nvrtcGetPTX");
  if (!ptx.empty() && ptx.back() == '\0') ptx.pop_back();
  return ptx;
}

std::size_t occurrences(const std::string& text, const std::string& word) {
  std::size_t n = 0;
  for (std::size_t at = text.find(word); at != std::string::npos; at = text.find(word, at + word.size())) ++n;
  return n;
}

// The PTX without the `.global` data lines whose symbol nothing else names (see the top).
std::string without_unreferenced_globals(const std::string& ptx) {
  std::istringstream in(ptx);
  std::string line;
  std::string out;
  while (std::getline(in, line)) {
    if (line.starts_with(".global ") && line.ends_with(";")) {
      std::istringstream words(line.substr(0, line.find_first_of("=[")));
      std::string word, symbol;
      while (words >> word) symbol = word;
      if (!symbol.empty() && occurrences(ptx, symbol) == 1) continue;
    }
    out += line;
    out += '\n';
  }
  return out;
}

std::map<std::string, std::string> read_list(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(fmt::format("--check {}: cannot read the list", path));
  std::map<std::string, std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const std::size_t gap = line.rfind("  ");
    if (gap == std::string::npos) throw std::runtime_error(fmt::format("{}: not \"spec  hash\": {}", path, line));
    out[line.substr(0, gap)] = line.substr(gap + 2);
  }
  return out;
}

int usage() {
  std::fputs("usage: ptx_hashes [--full] [--list] [--match REGEX] [--jobs N] [--templates DIR] [--dump DIR] [--write FILE | --check FILE]\n",
             stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  bool full = false;
  bool list_only = false;
  int jobs = 1;
  std::string templates = MOEJIT_TEMPLATES_DIR;
  std::string dump, write, check, match;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--full") {
      full = true;
      continue;
    }
    if (arg == "--list") {
      list_only = true;
      continue;
    }
    if (i + 1 >= argc) return usage();
    if (arg == "--jobs") jobs = std::max(1, std::stoi(argv[++i]));
    else if (arg == "--templates") templates = argv[++i];
    else if (arg == "--dump") dump = argv[++i];
    else if (arg == "--match") match = argv[++i];
    else if (arg == "--write") write = argv[++i];
    else if (arg == "--check") check = argv[++i];
    else return usage();
  }
  try {
    std::vector<ptx_identity::Variant> specs = full ? ptx_identity::full_list() : ptx_identity::ci_list();
    if (!match.empty()) {
      const std::regex pattern(match);
      std::erase_if(specs, [&](const ptx_identity::Variant& v) { return !std::regex_search(v.name(), pattern); });
    }
    if (list_only) {
      for (const ptx_identity::Variant& v : specs) fmt::print("{}\n", v.name());
      return 0;
    }
    const TemplateLibrary library(templates);
    const NvrtcLibrary nvrtc;
    const KernelCompiler compiler(nvrtc, library);
    std::vector<std::string> hashes(specs.size());
    std::vector<std::string> errors;
    std::mutex errors_mutex;
    std::atomic<std::size_t> next{0};
    const auto start = std::chrono::steady_clock::now();
    const auto work = [&] {
      for (std::size_t i = next++; i < specs.size(); i = next++) {
        try {
          const std::string ptx = without_unreferenced_globals(release_ptx(compiler, specs[i].spec, specs[i].option));
          hashes[i] = hex64(fnv1a64(ptx));
          if (!dump.empty()) std::ofstream(fmt::format("{}/{}.ptx", dump, hex64(fnv1a64(specs[i].name())))) << ptx;
        } catch (const std::exception& e) {
          const std::lock_guard lock(errors_mutex);
          errors.push_back(e.what());
        }
      }
    };
    std::vector<std::thread> threads;
    for (int j = 1; j < jobs; ++j) threads.emplace_back(work);
    work();
    for (std::thread& t : threads) t.join();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (const std::string& e : errors) fmt::print(stderr, "ptx_hashes: {}\n", e);
    if (!errors.empty()) return 1;

    std::string listing;
    for (std::size_t i = 0; i < specs.size(); ++i) listing += fmt::format("{}  {}\n", specs[i].name(), hashes[i]);
    if (!write.empty()) {
      std::ofstream out(write);
      out << "# ptx_hashes" << (full ? " --full" : "") << ": spec text, FNV-1a 64 of its release PTX (see ptx_hashes.cpp)\n"
          << listing;
    } else if (check.empty()) {
      fmt::print("{}", listing);
    }
    fmt::print(stderr, "ptx_hashes: {} specs in {:.1f} s with {} jobs\n", specs.size(), seconds, jobs);
    if (check.empty()) return 0;

    const std::map<std::string, std::string> expected = read_list(check);
    int changed = 0, unlisted = 0;
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const auto it = expected.find(specs[i].name());
      if (it == expected.end()) {
        fmt::print("NOT IN {}: {}\n", check, specs[i].name());
        ++unlisted;
      } else if (it->second != hashes[i]) {
        fmt::print("PTX CHANGED: {}\n", specs[i].name());
        ++changed;
      }
    }
    fmt::print("{} of {} specs compiled to other PTX than {} lists; {} not in it\n", changed, specs.size(), check,
               unlisted);
    return changed == 0 && unlisted == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "ptx_hashes: {}\n", e.what());
    return 1;
  }
}
