// moejitc --spec "<canonical spec text>" [--emit source|ptx|resources|log] [--templates DIR]
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include <fmt/format.h>

#include "compiler/codegen.hpp"
#include "compiler/kernel_compiler.hpp"
#include "compiler/kernel_spec.hpp"
#include "compiler/nvrtc_library.hpp"
#include "compiler/template_library.hpp"

namespace {

int usage() {
  std::fputs("usage: moejitc --spec \"op=sdd trans=nt ...\" [--emit source|ptx|resources|log] [--templates DIR]\n",
             stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string spec_text;
  std::string emit = "source";
  std::string templates = MOEJIT_TEMPLATES_DIR;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return usage();
    if (arg == "--spec") spec_text = argv[++i];
    else if (arg == "--emit") emit = argv[++i];
    else if (arg == "--templates") templates = argv[++i];
    else return usage();
  }
  if (spec_text.empty()) return usage();
  try {
    const moejit::KernelSpec spec = moejit::parse_kernel_spec(spec_text);
    if (emit == "source") {
      fmt::print("{}", moejit::generate_source(spec).source);
      return 0;
    }
    const moejit::TemplateLibrary library(templates);
    const moejit::NvrtcLibrary nvrtc;
    const moejit::KernelCompiler compiler(nvrtc, library);
    const moejit::CompiledKernel kernel = compiler.compile(spec);
    if (emit == "ptx") {
      fmt::print("{}", kernel.ptx);
    } else if (emit == "log") {
      fmt::print("{}\n", kernel.log);
    } else if (emit == "resources") {
      const auto& r = kernel.resources;
      fmt::print("kernel {}\nregisters {}\nstatic_shared_bytes {}\ndynamic_shared_bytes {}\nstack_bytes {}\n"
                 "spill_store_bytes {}\nspill_load_bytes {}\nthreads {}\ncubin_bytes {}\n",
                 kernel.lowered_name, r.registers, r.static_shared_bytes, kernel.dynamic_shared_bytes, r.stack_bytes,
                 r.spill_store_bytes, r.spill_load_bytes, kernel.threads, kernel.cubin.size());
    } else {
      return usage();
    }
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "moejitc: {}\n", e.what());
    return 1;
  }
}
