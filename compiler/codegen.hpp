// The code generator: a kernel spec becomes a small CUDA translation unit that includes
// the template implementing its family and instantiates one kernel with the spec's
// constants. Kernel logic never lives here; it lives in templates/moejit/*.cuh.
#pragma once

#include <string>

#include "compiler/kernel_spec.hpp"

namespace moejit {

struct GeneratedSource {
  std::string file_name;         // "sdd_nt_bf16_b128_n114688_k4096.cu", for logs and dumps
  std::string source;            // the translation unit
  std::string name_expression;   // the kernel as a C++ expression, for nvrtcAddNameExpression
  std::string template_header;   // the header it instantiates, relative to templates/
};

// Validates the spec (SpecError on any inconsistency), then renders it.
GeneratedSource generate_source(const KernelSpec& spec);

}  // namespace moejit
