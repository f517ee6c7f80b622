#include "compiler/kernel_compiler.hpp"

#include <chrono>
#include <sstream>

#include <fmt/format.h>

#include "compiler/codegen.hpp"
#include "compiler/routing_spec.hpp"

namespace moejit {
namespace {

std::string line_of(const std::string& text, int line_number) {
  std::istringstream in(text);
  std::string line;
  for (int i = 1; std::getline(in, line); ++i) {
    if (i == line_number) return line;
  }
  return {};
}

}  // namespace

std::vector<std::string> KernelCompiler::options(const KernelSpec& spec, const TemplateLibrary& templates,
                                                 const CompileOptions& options) {
  std::vector<std::string> out = {
      fmt::format("--gpu-architecture={}", spec.target.text()),
      "-std=c++17",
      fmt::format("-I{}", templates.include_dir()),
      // Resource usage (registers, spills) lands in the log for parse_ptxas_resources.
      "--ptxas-options=-v",
  };
  if (options.line_info) out.emplace_back("-lineinfo");
  out.insert(out.end(), options.extra_options.begin(), options.extra_options.end());
  return out;
}

CompiledKernel KernelCompiler::compile(const KernelSpec& spec, const CompileOptions& compile_options) const {
  const GeneratedSource generated = generate_source(spec);
  const auto start = std::chrono::steady_clock::now();

  nvrtcProgram program = nullptr;
  nvrtc_.check(nvrtc_.CreateProgram(&program, generated.source.c_str(), generated.file_name.c_str(), 0, nullptr,
                                    nullptr),
               "nvrtcCreateProgram");
  // Destroys the program on every path out of this function, exceptions included.
  struct Destroy {
    const NvrtcLibrary& nvrtc;
    nvrtcProgram& program;
    ~Destroy() { nvrtc.DestroyProgram(&program); }
  } destroy{nvrtc_, program};

  nvrtc_.check(nvrtc_.AddNameExpression(program, generated.name_expression.c_str()), "nvrtcAddNameExpression");

  CompiledKernel out;
  out.spec = spec;
  out.source = generated.source;
  out.options = options(spec, compile_options);
  std::vector<const char*> argv;
  for (const std::string& o : out.options) argv.push_back(o.c_str());
  const nvrtcResult result = nvrtc_.CompileProgram(program, static_cast<int>(argv.size()), argv.data());

  std::size_t log_size = 0;
  nvrtc_.check(nvrtc_.GetProgramLogSize(program, &log_size), "nvrtcGetProgramLogSize");
  out.log.resize(log_size);
  if (log_size > 0) nvrtc_.check(nvrtc_.GetProgramLog(program, out.log.data()), "nvrtcGetProgramLog");
  while (!out.log.empty() && (out.log.back() == '\0' || out.log.back() == '\n')) out.log.pop_back();

  if (result != NVRTC_SUCCESS) {
    throw CompileError(
        fmt::format("NVRTC could not compile {} ({}) for {}:\n{}\nspec: {}", generated.file_name,
                    nvrtc_.GetErrorString(result), spec.target.text(),
                    annotate_compile_log(out.log, generated.file_name, generated.source, templates_), spec.text()),
        out.log, generated.source);
  }

  const char* lowered = nullptr;
  nvrtc_.check(nvrtc_.GetLoweredName(program, generated.name_expression.c_str(), &lowered), "nvrtcGetLoweredName");
  out.lowered_name = lowered;

  std::size_t size = 0;
  nvrtc_.check(nvrtc_.GetCUBINSize(program, &size), "nvrtcGetCUBINSize");
  out.cubin.resize(size);
  nvrtc_.check(nvrtc_.GetCUBIN(program, out.cubin.data()), "nvrtcGetCUBIN");
  nvrtc_.check(nvrtc_.GetPTXSize(program, &size), "nvrtcGetPTXSize");
  out.ptx.resize(size);
  nvrtc_.check(nvrtc_.GetPTX(program, out.ptx.data()), "nvrtcGetPTX");
  if (!out.ptx.empty() && out.ptx.back() == '\0') out.ptx.pop_back();

  out.resources = kernel_resources(out.log, out.cubin);
  out.threads = spec.threads();
  out.dynamic_shared_bytes = spec.shared_bytes();
  out.compile_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return out;
}

std::string annotate_compile_log(const std::string& log, const std::string& file_name, const std::string& source,
                                 const TemplateLibrary& templates) {
  std::istringstream in(log);
  std::string line;
  std::string out;
  while (std::getline(in, line)) {
    out += line + "\n";
    // NVRTC's diagnostics read "<file>(<line>): error: ..." (or warning).
    const std::size_t open = line.find('(');
    const std::size_t close = line.find("): ", open == std::string::npos ? 0 : open);
    if (open == std::string::npos || close == std::string::npos || open == 0) continue;
    const std::string digits = line.substr(open + 1, close - open - 1);
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string file = line.substr(0, open);
    const int number = std::stoi(digits);
    std::string quoted;
    if (file == file_name) {
      quoted = line_of(source, number);
    } else if (file.starts_with(templates.include_dir()) || file.starts_with("moejit/")) {
      // Only templates are quoted; for a file outside the library the log line says enough.
      try {
        quoted = line_of(templates.read(file), number);
      } catch (const std::exception&) {
        // Unreadable now: the log line still names it.
      }
    }
    if (!quoted.empty()) out += fmt::format("    {:>5} | {}\n", number, quoted);
  }
  return out;
}

}  // namespace moejit
