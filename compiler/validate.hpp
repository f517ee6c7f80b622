// Validation of kernel specs: every inconsistency is rejected before code is generated.
#pragma once

#include "compiler/kernel_spec.hpp"

namespace moejit {

// Throws SpecError naming the first offending field, its value and what is allowed.
void validate(const KernelSpec& spec);

}  // namespace moejit
