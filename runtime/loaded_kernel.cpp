#include "runtime/loaded_kernel.hpp"

#include <stdexcept>

#include <fmt/format.h>

#include "runtime/primary_context.hpp"

namespace moejit {

LoadedKernel::LoadedKernel(const DriverApi& driver, CUcontext context, std::shared_ptr<const CompiledKernel> compiled)
    : driver_(driver), context_(context), compiled_(std::move(compiled)) {
  ScopedContext scope(driver_, context_);
  driver_.check(driver_.ModuleLoadData(&module_, compiled_->cubin.data()), "cuModuleLoadData");
  try {
    driver_.check(driver_.ModuleGetFunction(&function_, module_, compiled_->lowered_name.c_str()),
                  "cuModuleGetFunction");
    driver_.check(driver_.FuncSetAttribute(function_, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                           compiled_->dynamic_shared_bytes),
                  "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)");
  } catch (...) {
    driver_.ModuleUnload(module_);
    throw;
  }
}

LoadedKernel::~LoadedKernel() {
  ScopedContext scope(driver_, context_);
  driver_.ModuleUnload(module_);
}

namespace {

// What a cluster launch needs from the driver, or an error saying what to install.
void require_cluster_entries(const DriverApi& driver, int cluster) {
  if (driver.LaunchKernelEx == nullptr || driver.OccupancyMaxActiveClusters == nullptr) {
    throw std::runtime_error(fmt::format(
        "a tile with cluster={} (thread-block clusters) needs cuLaunchKernelEx and cuOccupancyMaxActiveClusters, "
        "which this CUDA driver lacks: install a driver for CUDA 12.0 or newer, or use a tile without .c{}",
        cluster, cluster));
  }
}

CUlaunchAttribute cluster_dimension(int cluster) {
  CUlaunchAttribute attribute{};
  attribute.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
  attribute.value.clusterDim.x = static_cast<unsigned>(cluster);
  attribute.value.clusterDim.y = 1;
  attribute.value.clusterDim.z = 1;
  return attribute;
}

// A 1-D grid of the kernel's blocks with one attribute, `cluster` (which must outlive
// the returned configuration).
CUlaunchConfig cluster_launch_config(std::int64_t grid_x, const CompiledKernel& kernel, CUstream stream,
                                     CUlaunchAttribute* cluster) {
  CUlaunchConfig config{};
  config.gridDimX = static_cast<unsigned>(grid_x);
  config.gridDimY = 1;
  config.gridDimZ = 1;
  config.blockDimX = static_cast<unsigned>(kernel.threads);
  config.blockDimY = 1;
  config.blockDimZ = 1;
  config.sharedMemBytes = static_cast<unsigned>(kernel.dynamic_shared_bytes);
  config.hStream = stream;
  config.attrs = cluster;
  config.numAttrs = 1;
  return config;
}

}  // namespace

void LoadedKernel::launch(std::int64_t grid_x, int cluster, const void* params, CUstream stream) const {
  if (grid_x <= 0) return;
  // A kernel compiled for clusters synchronises with its cluster's other blocks, and one
  // compiled without expects none: a mismatch would hang or fault on the GPU.
  if (cluster != compiled_->spec.tile.cluster_ctas() || grid_x % cluster != 0) {
    throw std::invalid_argument(
        fmt::format("cluster={} grid={}: expected the kernel's cluster ({}) and a grid of whole clusters\nkernel: "
                    "{}\nspec: {}",
                    cluster, grid_x, compiled_->spec.tile.cluster_ctas(), compiled_->lowered_name, compiled_->spec.text()));
  }
  void* args[] = {const_cast<void*>(params)};
  const char* call = "cuLaunchKernel";
  CUresult result = CUDA_SUCCESS;
  if (cluster == 1) {
    result = driver_.LaunchKernel(function_, static_cast<unsigned>(grid_x), 1, 1,
                                  static_cast<unsigned>(compiled_->threads), 1, 1,
                                  static_cast<unsigned>(compiled_->dynamic_shared_bytes), stream, args, nullptr);
  } else {
    require_cluster_entries(driver_, cluster);
    call = "cuLaunchKernelEx";
    CUlaunchAttribute attribute = cluster_dimension(cluster);
    const CUlaunchConfig config = cluster_launch_config(grid_x, *compiled_, stream, &attribute);
    result = driver_.LaunchKernelEx(&config, function_, args, nullptr);
  }
  if (result != CUDA_SUCCESS) {
    try {
      driver_.check(result, call);
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(
          fmt::format("{}\nkernel: {}\nspec: {}\nlaunch: grid={} block={} shared={} bytes cluster={}", e.what(),
                      compiled_->lowered_name, compiled_->spec.text(), grid_x, compiled_->threads,
                      compiled_->dynamic_shared_bytes, cluster));
    }
  }
}

int LoadedKernel::max_active_clusters(int cluster) const {
  {
    std::lock_guard lock(max_active_clusters_mutex_);
    if (auto it = max_active_clusters_.find(cluster); it != max_active_clusters_.end()) return it->second;
  }
  require_cluster_entries(driver_, cluster);
  CUlaunchAttribute attribute = cluster_dimension(cluster);
  // A grid of one cluster: the answer depends on the block and cluster shape only. No
  // stream: the driver asks the current context's device.
  const CUlaunchConfig config = cluster_launch_config(cluster, *compiled_, nullptr, &attribute);
  int count = 0;
  CUresult result = CUDA_SUCCESS;
  {
    ScopedContext scope(driver_, context_);
    result = driver_.OccupancyMaxActiveClusters(&count, function_, &config);
  }
  if (result != CUDA_SUCCESS) {
    try {
      driver_.check(result, "cuOccupancyMaxActiveClusters");
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(fmt::format("{}\nkernel: {}\nspec: {}\nlaunch: block={} shared={} bytes cluster={}",
                                           e.what(), compiled_->lowered_name, compiled_->spec.text(),
                                           compiled_->threads, compiled_->dynamic_shared_bytes, cluster));
    }
  }
  std::lock_guard lock(max_active_clusters_mutex_);
  max_active_clusters_[cluster] = count;
  return count;
}

}  // namespace moejit
