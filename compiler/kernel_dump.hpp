// Writing a kernel's artifacts to files: every compile when MOEJIT_DUMP_DIR is set, and
// the inputs of a failed compile always, so either can be inspected or reproduced.
#pragma once

#include <string>
#include <vector>

#include "compiler/compiled_kernel.hpp"

namespace moejit {

// Writes <dir>/<short name>-<spec hash>.{cu,ptx,cubin,log,spec}; returns the path without
// the extension. Creates `dir`. Throws std::runtime_error if a file cannot be written.
std::string dump_kernel(const std::string& dir, const CompiledKernel& kernel);

// Writes the source, NVRTC log and options of a compile that failed to
// <dir>/<file stem>.{cu,log,options}, with a command line to reproduce it under nvcc;
// returns the path without the extension.
std::string dump_failed_compile(const std::string& dir, const KernelSpec& spec, const std::string& source,
                                const std::string& log, const std::vector<std::string>& options);

}  // namespace moejit
