// ptx_hashes: compiles the kernel specs the tuner may pick to PTX and prints one
// "<spec text>  <hash>" line per spec, or compares them with a committed list, so that a
// refactoring of templates/ can prove it left the release PTX of every variant alone.
//
//   ptx_hashes [--full] [--list] [--match REGEX] [--jobs N] [--templates DIR] [--dump DIR] [--write FILE | --check FILE]
//
// The default list is the CI subset (every schedule, op, transpose, cluster kind, pair kind,
// dtype and block size at one model shape); --full adds every tile of the wgmma search
// space and the explicit-only tiles at the mixtral-8x7b shape, --all-shapes three more
// shapes and the mma search space (spec_lists.hpp). --against DIR alone compares each
// variant with the same variant compiled from the templates in DIR (an old checkout)
// instead of with a list. --match keeps the
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
#include <cstring>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
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

template <class T>
bool read_at(const std::string& bytes, std::uint64_t at, T& value) {
  if (at + sizeof(T) > bytes.size()) return false;
  std::memcpy(&value, bytes.data() + at, sizeof(T));
  return true;
}

// The bytes of ELF section `wanted` of a CUBIN (ELF64 little endian); throws if absent.
std::string elf_section(const std::string& elf, const std::string& wanted) {
  std::uint64_t shoff = 0;
  std::uint16_t shentsize = 0, shnum = 0, shstrndx = 0;
  if (elf.compare(0, 4, "\x7f" "ELF") != 0 || !read_at(elf, 0x28, shoff) || !read_at(elf, 0x3a, shentsize) ||
      !read_at(elf, 0x3c, shnum) || !read_at(elf, 0x3e, shstrndx) || shentsize < 64 || shstrndx >= shnum) {
    throw std::runtime_error("not an ELF64 CUBIN");
  }
  const auto header = [&](std::uint16_t i, std::uint32_t& name, std::uint64_t& offset, std::uint64_t& size) {
    const std::uint64_t h = shoff + std::uint64_t{i} * shentsize;
    return read_at(elf, h, name) && read_at(elf, h + 0x18, offset) && read_at(elf, h + 0x20, size);
  };
  std::uint32_t name = 0;
  std::uint64_t names = 0, names_size = 0;
  if (!header(shstrndx, name, names, names_size)) throw std::runtime_error("CUBIN without section names");
  for (std::uint16_t i = 0; i < shnum; ++i) {
    std::uint64_t offset = 0, size = 0;
    if (!header(i, name, offset, size) || name >= names_size || offset + size > elf.size()) continue;
    if (elf.compare(names + name, wanted.size() + 1, wanted.c_str(), wanted.size() + 1) == 0) {
      return elf.substr(offset, size);
    }
  }
  throw std::runtime_error("CUBIN without section " + wanted);
}

// What the GPU runs: the kernel's machine code (its .text section, which names no global
// symbol) and the registers and stack frame ptxas gave it, from the release compile.
std::string machine_code_hash(const KernelCompiler& compiler, const KernelSpec& spec, const std::string& option) {
  CompileOptions options;
  if (!option.empty()) options.extra_options.push_back(option);
  const CompiledKernel kernel = compiler.compile(spec, options);
  const std::string text = elf_section(kernel.cubin, ".text." + kernel.lowered_name);
  return hex64(fnv1a64(fmt::format("{} {} ", kernel.resources.registers, kernel.resources.stack_bytes), fnv1a64(text)));
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

// A listed variant's hashes: its PTX and, where listed, its machine code.
struct Listed {
  std::string ptx;
  std::string code;
};

// Lines "<name>  <PTX hash>" or "<name>  <PTX hash>  <machine code hash>". The hashes hold
// for one NVRTC version only, which the list names ("# nvrtc 13.0").
std::map<std::string, Listed> read_list(const std::string& path, const std::string& nvrtc_version) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(fmt::format("--check {}: cannot read the list", path));
  std::map<std::string, Listed> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("# nvrtc ") && line.substr(8) != nvrtc_version) {
      throw std::runtime_error(fmt::format(
          "{} holds the PTX of NVRTC {}, this is NVRTC {}: write the list again (--write) from the "
          "templates before the change, with this NVRTC",
          path, line.substr(8), nvrtc_version));
    }
    if (line.empty() || line[0] == '#') continue;
    std::size_t gap = line.rfind("  ");
    if (gap == std::string::npos) throw std::runtime_error(fmt::format("{}: not \"spec  hash\": {}", path, line));
    Listed listed;
    std::string last = line.substr(gap + 2);
    const std::size_t before = gap == 0 ? std::string::npos : line.rfind("  ", gap - 1);
    if (before != std::string::npos && line.find('=', before) == std::string::npos) {
      listed.ptx = line.substr(before + 2, gap - before - 2);
      listed.code = last;
      gap = before;
    } else {
      listed.ptx = last;
    }
    out[line.substr(0, gap)] = listed;
  }
  return out;
}

int usage() {
  std::fputs("usage: ptx_hashes [--full [--all-shapes]] [--list] [--match REGEX] [--jobs N] [--templates DIR] [--dump DIR]\n"
             "                  [--write FILE [--machine-code] | --check FILE [--against DIR] | --against DIR]\n",
             stderr);
  return 2;
}

// Runs work(i) for i in [0, n) on `jobs` threads; returns the messages of what threw.
template <class Work>
std::vector<std::string> parallel_for(std::size_t n, int jobs, const Work& work) {
  std::vector<std::string> errors;
  std::mutex mutex;
  std::atomic<std::size_t> next{0};
  const auto run = [&] {
    for (std::size_t i = next++; i < n; i = next++) {
      try {
        work(i);
      } catch (const std::exception& e) {
        const std::lock_guard lock(mutex);
        errors.push_back(e.what());
      }
    }
  };
  std::vector<std::thread> threads;
  for (int j = 1; j < jobs; ++j) threads.emplace_back(run);
  run();
  for (std::thread& t : threads) t.join();
  return errors;
}

}  // namespace

int main(int argc, char** argv) {
  bool full = false, all_shapes = false, list_only = false, with_code = false;
  int jobs = 1;
  std::string templates = MOEJIT_TEMPLATES_DIR;
  std::string dump, write, check, match, against;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--full" || arg == "--all-shapes" || arg == "--list" || arg == "--machine-code") {
      (arg == "--full" ? full : arg == "--all-shapes" ? all_shapes : arg == "--list" ? list_only : with_code) = true;
      continue;
    }
    if (i + 1 >= argc) return usage();
    if (arg == "--jobs") jobs = std::max(1, std::stoi(argv[++i]));
    else if (arg == "--templates") templates = argv[++i];
    else if (arg == "--dump") dump = argv[++i];
    else if (arg == "--match") match = argv[++i];
    else if (arg == "--write") write = argv[++i];
    else if (arg == "--check") check = argv[++i];
    else if (arg == "--against") against = argv[++i];
    else return usage();
  }
  try {
    std::vector<ptx_identity::Variant> specs = full ? ptx_identity::full_list(all_shapes) : ptx_identity::ci_list();
    if (!match.empty()) {
      const std::regex pattern(match);
      std::erase_if(specs, [&](const ptx_identity::Variant& v) { return !std::regex_search(v.name(), pattern); });
    }
    if (list_only) {
      for (const ptx_identity::Variant& v : specs) fmt::print("{}\n", v.name());
      return 0;
    }
    const NvrtcLibrary nvrtc;
    const TemplateLibrary library(templates);
    const KernelCompiler compiler(nvrtc, library);
    const auto start = std::chrono::steady_clock::now();
    const auto seconds = [&] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };

    std::vector<std::string> ptx_hashes(specs.size()), code_hashes(specs.size());
    std::vector<std::string> errors = parallel_for(specs.size(), jobs, [&](std::size_t i) {
      const std::string ptx = without_unreferenced_globals(release_ptx(compiler, specs[i].spec, specs[i].option));
      ptx_hashes[i] = hex64(fnv1a64(ptx));
      if (with_code) code_hashes[i] = machine_code_hash(compiler, specs[i].spec, specs[i].option);
      if (!dump.empty()) std::ofstream(fmt::format("{}/{}.ptx", dump, hex64(fnv1a64(specs[i].name())))) << ptx;
    });
    for (const std::string& e : errors) fmt::print(stderr, "ptx_hashes: {}\n", e);
    if (!errors.empty()) return 1;

    if (check.empty() && against.empty()) {
      std::string listing;
      for (std::size_t i = 0; i < specs.size(); ++i) {
        listing += fmt::format("{}  {}{}\n", specs[i].name(), ptx_hashes[i], with_code ? "  " + code_hashes[i] : "");
      }
      if (write.empty()) {
        fmt::print("{}", listing);
      } else {
        std::ofstream(write) << "# ptx_hashes" << (full ? " --full" : "") << (with_code ? " --machine-code" : "")
                             << ": variant, FNV-1a 64 of its release PTX"
                             << (with_code ? " and of its machine code" : "") << " (see ptx_hashes.cpp)\n"
                             << "# nvrtc " << nvrtc.version() << "\n"
                             << listing;
      }
      fmt::print(stderr, "ptx_hashes: {} variants in {:.1f} s with {} jobs\n", specs.size(), seconds(), jobs);
      return 0;
    }

    // Where the PTX differs, the machine code decides: the list's hash of it, or that of
    // the same variant compiled from the templates in --against.
    std::map<std::string, Listed> expected;
    if (!check.empty()) {
      expected = read_list(check, nvrtc.version());
    } else {
      // No list: the variants' PTX from the templates in --against is what to match.
      const TemplateLibrary old_templates(against);
      const KernelCompiler old(nvrtc, old_templates);
      std::vector<std::string> old_hashes(specs.size());
      errors = parallel_for(specs.size(), jobs, [&](std::size_t i) {
        old_hashes[i] = hex64(fnv1a64(without_unreferenced_globals(release_ptx(old, specs[i].spec, specs[i].option))));
      });
      for (const std::string& e : errors) fmt::print(stderr, "ptx_hashes: {}\n", e);
      if (!errors.empty()) return 1;
      for (std::size_t i = 0; i < specs.size(); ++i) expected[specs[i].name()].ptx = old_hashes[i];
      check = against;
    }
    std::vector<std::size_t> differ;
    int unlisted = 0;
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const auto it = expected.find(specs[i].name());
      if (it == expected.end()) {
        fmt::print("NOT IN {}: {}\n", check, specs[i].name());
        ++unlisted;
      } else if (it->second.ptx != ptx_hashes[i]) {
        differ.push_back(i);
      }
    }
    std::unique_ptr<TemplateLibrary> old_library;
    std::unique_ptr<KernelCompiler> old_compiler;
    if (!against.empty()) {
      old_library = std::make_unique<TemplateLibrary>(against);
      old_compiler = std::make_unique<KernelCompiler>(nvrtc, *old_library);
    }
    std::vector<int> verdict(differ.size(), 0);   // 1: same machine code, 2: changed, 3: nothing to compare with
    errors = parallel_for(differ.size(), jobs, [&](std::size_t d) {
      const ptx_identity::Variant& v = specs[differ[d]];
      std::string old_code = expected.at(v.name()).code;
      if (old_code.empty() && old_compiler) old_code = machine_code_hash(*old_compiler, v.spec, v.option);
      if (old_code.empty()) {
        verdict[d] = 3;
        return;
      }
      verdict[d] = machine_code_hash(compiler, v.spec, v.option) == old_code ? 1 : 2;
    });
    for (const std::string& e : errors) fmt::print(stderr, "ptx_hashes: {}\n", e);
    int same_code = 0, changed = 0;
    for (std::size_t d = 0; d < differ.size(); ++d) {
      const std::string& name = specs[differ[d]].name();
      if (verdict[d] == 1) {
        fmt::print("PTX DIFFERS, SAME MACHINE CODE: {}\n", name);
        ++same_code;
      } else {
        fmt::print("{}: {}\n", verdict[d] == 2 ? "MACHINE CODE CHANGED" : "PTX CHANGED (no machine code to compare)", name);
        ++changed;
      }
    }
    fmt::print("{} variants in {:.1f} s: {} with the listed PTX, {} with other PTX but the same machine code, {} changed, "
               "{} not in {}\n",
               specs.size(), seconds(), specs.size() - differ.size() - unlisted, same_code, changed, unlisted, check);
    return changed == 0 && unlisted == 0 && errors.empty() ? 0 : 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "ptx_hashes: {}\n", e.what());
    return 1;
  }
}
