// Element types of the block-sparse products. Accumulation is always fp32.
#pragma once

#include <string>
#include <string_view>

namespace moejit {

enum class DType { bf16, fp16 };

std::string_view dtype_name(DType dtype);               // "bf16", "fp16"
DType parse_dtype(std::string_view text);               // throws SpecError on unknown names
int dtype_bytes(DType dtype);                           // storage size of one element
std::string_view dtype_template_type(DType dtype);      // the templates' element type

}  // namespace moejit
