// A compiled kernel loaded into one device's context, ready to launch.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

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
  // kernel takes one parameter, `params`, by value. With cluster > 1 the grid runs as
  // thread-block clusters of `cluster` blocks along x (cuLaunchKernelEx; grid_x must be a
  // multiple of it), as a kernel whose tile has TileConfig::cluster > 1 requires. Launch
  // errors name the kernel and its configuration. The caller makes `context` current.
  void launch(std::int64_t grid_x, int cluster, const void* params, CUstream stream) const;

  // How many clusters of `cluster` blocks of this kernel (its block size and dynamic
  // shared memory) the device runs at once (cuOccupancyMaxActiveClusters): the persistent
  // grid of a cluster kernel. 0 if not even one fits. Asked once per cluster size, then
  // cached; makes `context` current itself.
  int max_active_clusters(int cluster) const;

  const CompiledKernel& compiled() const { return *compiled_; }
  CUfunction function() const { return function_; }

 private:
  const DriverApi& driver_;
  CUcontext context_;
  std::shared_ptr<const CompiledKernel> compiled_;
  CUmodule module_ = nullptr;
  CUfunction function_ = nullptr;
  // max_active_clusters' answers by cluster size; the runtime launches from several threads.
  mutable std::mutex max_active_clusters_mutex_;
  mutable std::map<int, int> max_active_clusters_;
};

}  // namespace moejit
