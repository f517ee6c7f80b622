// A compiled kernel loaded into one device's context, ready to launch.
#pragma once

#include <cstdint>
#include <memory>

#include <cuda.h>

#include "compiler/compiled_kernel.hpp"
#include "runtime/driver_api.hpp"

namespace moejit {

class LoadedKernel {
 public:
  // Loads the CUBIN into `context` and opts the function into its dynamic shared memory
  // (above 48 KB a kernel must ask for it explicitly).
  LoadedKernel(const DriverApi& driver, CUcontext context, std::shared_ptr<const CompiledKernel> compiled);
  ~LoadedKernel();
  LoadedKernel(const LoadedKernel&) = delete;
  LoadedKernel& operator=(const LoadedKernel&) = delete;

  // Launches a 1-D grid with the kernel's block size and shared memory on `stream`; the
  // kernel takes one parameter, `params`, by value. Launch errors name the kernel and its
  // configuration. The caller makes `context` current.
  void launch(std::int64_t grid_x, const void* params, CUstream stream) const;

  const CompiledKernel& compiled() const { return *compiled_; }
  CUfunction function() const { return function_; }

 private:
  const DriverApi& driver_;
  CUcontext context_;
  std::shared_ptr<const CompiledKernel> compiled_;
  CUmodule module_ = nullptr;
  CUfunction function_ = nullptr;
};

}  // namespace moejit
