#include "compiler/dtype.hpp"

#include "compiler/spec_error.hpp"

namespace moejit {

std::string_view dtype_name(DType dtype) { return dtype == DType::bf16 ? "bf16" : "fp16"; }

DType parse_dtype(std::string_view text) {
  if (text == "bf16" || text == "bfloat16") return DType::bf16;
  if (text == "fp16" || text == "float16" || text == "half") return DType::fp16;
  throw SpecError("dtype", std::string(text), "bf16 or fp16");
}

int dtype_bytes(DType) { return 2; }

std::string_view dtype_template_type(DType dtype) {
  return dtype == DType::bf16 ? "moejit::bf16_t" : "moejit::fp16_t";
}

}  // namespace moejit
