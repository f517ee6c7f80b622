// Compiles kernel specs to CUBIN with NVRTC: generate -> compile -> collect artifacts.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "compiler/compiled_kernel.hpp"
#include "compiler/kernel_spec.hpp"
#include "compiler/nvrtc_library.hpp"
#include "compiler/template_library.hpp"

namespace moejit {

struct CompileOptions {
  bool line_info = false;                  // -lineinfo, for profilers
  std::vector<std::string> extra_options;  // passed to NVRTC verbatim, after ours
};

// A failed compile: the spec, NVRTC's log and the generated source lines it complains about.
class CompileError : public std::runtime_error {
 public:
  CompileError(const std::string& message, std::string log, std::string source)
      : std::runtime_error(message), log_(std::move(log)), source_(std::move(source)) {}
  const std::string& log() const { return log_; }
  const std::string& source() const { return source_; }

 private:
  std::string log_;
  std::string source_;
};

class KernelCompiler {
 public:
  // Both libraries must outlive the compiler. Thread-safe: one NVRTC program per call.
  KernelCompiler(const NvrtcLibrary& nvrtc, const TemplateLibrary& templates) : nvrtc_(nvrtc), templates_(templates) {}

  // The NVRTC options for a spec: part of the kernel's cache key. Needs no NVRTC.
  static std::vector<std::string> options(const KernelSpec& spec, const TemplateLibrary& templates,
                                          const CompileOptions& options = {});
  std::vector<std::string> options(const KernelSpec& spec, const CompileOptions& options = {}) const {
    return KernelCompiler::options(spec, templates_, options);
  }
  // Throws SpecError for an invalid spec and CompileError when NVRTC rejects the source.
  CompiledKernel compile(const KernelSpec& spec, const CompileOptions& options = {}) const;

  const NvrtcLibrary& nvrtc() const { return nvrtc_; }
  const TemplateLibrary& templates() const { return templates_; }

 private:
  const NvrtcLibrary& nvrtc_;
  const TemplateLibrary& templates_;
};

// The log with each error's file and line quoted underneath it: generated lines from
// `source` (named `file_name` in the log), template lines from the template library.
std::string annotate_compile_log(const std::string& log, const std::string& file_name, const std::string& source,
                                 const TemplateLibrary& templates);

}  // namespace moejit
