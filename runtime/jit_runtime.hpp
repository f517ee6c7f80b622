// The JIT pipeline behind every op call: spec -> (in-memory cache) -> compile with NVRTC
// -> load into the device's primary context -> launch on the caller's stream.
//
// Each piece is opened only when first needed: generating source needs nothing, compiling
// needs NVRTC, launching needs the driver. All state lives in this object (no globals);
// it is safe to use from several threads.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <cuda.h>

#include "compiler/compiled_kernel.hpp"
#include "compiler/kernel_compiler.hpp"
#include "compiler/launch_geometry.hpp"
#include "compiler/nvrtc_library.hpp"
#include "compiler/template_library.hpp"
#include "compiler/routing_spec.hpp"
#include "moejit/bsr_gemm_params.h"
#include "moejit/activation_params.h"
#include "moejit/routing_params.h"
#include "runtime/driver_api.hpp"
#include "runtime/kernel_db_stack.hpp"
#include "runtime/kernel_key.hpp"
#include "runtime/loaded_kernel.hpp"
#include "runtime/primary_context.hpp"

namespace moejit {

struct JitOptions {
  std::string templates_dir;                   // holds moejit/*.cuh
  std::vector<std::string> nvrtc_wheels;   // pip wheels' libnvrtc files (see nvrtc_search_order)
  CompileOptions compile;
  std::optional<KernelDbConfig> database;      // none: compile every process anew
  WarningHandler warn;                         // database faults and other non-fatal news
  std::string dump_dir;                        // write every compiled kernel's artifacts here
  std::string failure_dir;                     // where a failed compile's inputs are kept
  std::function<void(const std::string&)> log; // compile and cache events, with timings
  std::string origin = "compile";              // what made the kernels it stores: compile, tune or bake
};

// Where the kernels a runtime handed out came from.
struct CacheStats {
  std::size_t memory_hits = 0;   // already in this runtime
  std::size_t database_hits = 0;
  std::size_t compiled = 0;      // compiled with NVRTC
};

struct DeviceInfo {
  std::string name;
  int major = 0;
  int minor = 0;
  int multiprocessors = 0;
  int max_shared_bytes_per_block = 0;   // with opt-in
};

class JitRuntime {
 public:
  explicit JitRuntime(JitOptions options);
  ~JitRuntime();

  const TemplateLibrary& templates() const { return templates_; }
  const NvrtcLibrary& nvrtc();    // opened on first use; throws if NVRTC is missing
  const DriverApi& driver();      // opened on first use; throws if there is no driver
  const KernelCompiler& compiler();
  const JitOptions& options() const { return options_; }

  // The kernel for a spec: from memory, else from the kernel database, else compiled
  // with NVRTC and stored in the database. Once per spec and runtime.
  std::shared_ptr<const CompiledKernel> compile(const KernelSpec& spec);
  // How many distinct kernels this runtime holds (for tests and `moejit doctor`).
  std::size_t compiled_count() const;
  CacheStats stats() const;
  // The complete cache key of a spec (opens NVRTC: its version is a key part).
  KernelKey kernel_key(const KernelSpec& spec);
  KernelDbStack* database() { return database_.get(); }

  // The tuned tile for a problem on a GPU kind at a token bucket: the nearest tuned bucket's
  // winner (autotune/search_space.hpp), from results made with this moejit, these
  // templates and this NVRTC. Nothing if the problem was never tuned there.
  std::optional<TileConfig> tuned_tile(const KernelSpec& problem, const std::string& gpu_name, std::int64_t bucket);
  // Every tuning result for the spec's problem on a GPU kind, made with these versions.
  std::vector<TuningEntry> tunings(const KernelSpec& problem, const std::string& gpu_name);
  // Records a tuning result (in the user cache).
  bool record_tuning(TuningEntry entry);

  int device_count();
  DeviceInfo device_info(int device);

  // Compiles (or fetches) the spec and loads it into `device`: afterwards a launch does no
  // compilation or module loading.
  void prepare(const KernelSpec& spec, int device);
  // Loads `kernel` into `device` and unloads it again: throws if the driver rejects it.
  void check_loads(const CompiledKernel& kernel, int device);

  // Launches the block-sparse product `spec` on `device` (its primary context) and
  // `stream` (the caller's, for example torch.cuda.current_stream().cuda_stream). For the
  // wgmma family it also encodes the operands' TMA tensor maps and launches a persistent
  // grid of at most one thread block per SM; with a cluster tile (TileConfig::cluster > 1)
  // a grid of as many clusters as the device runs at once.
  void launch_bsr_gemm(const KernelSpec& spec, const BsrGemmParams& params, const SparseShape& sparse, int device,
                       CUstream stream);
  // Launches a routing kernel (compiler/routing_spec.hpp) the same way.
  void launch_routing(const KernelSpec& spec, const RoutingParams& params, const RoutingShape& shape, int device,
                      CUstream stream);
  // Launches an expert activation kernel over `params.capacity_blocks` blocks.
  void launch_activation(const KernelSpec& spec, const ActivationParams& params, int device, CUstream stream);

  // The thread blocks launch_bsr_gemm starts for `tiles` C tiles (launch_geometry's
  // grid_x) on `device`: every tile for the mma family; for the persistent wgmma family
  // one per SM at most, or with a cluster tile as many whole clusters as the device runs
  // at once (loads the kernel to ask the driver).
  std::int64_t persistent_grid(const KernelSpec& spec, std::int64_t tiles, int device);

 private:
  PrimaryContext& context(int device);   // caller holds mutex_
  // grid_x thread blocks, in clusters of `cluster` along x (the spec's, 1 for all but the
  // wgmma family's cluster tiles).
  void launch(const KernelSpec& spec, std::int64_t grid_x, int cluster, const void* params, int device,
              CUstream stream);
  // The persistent grid of a cluster tile: every tile, or as many whole clusters as the
  // device runs at once. Throws if not one cluster fits.
  std::int64_t cluster_grid(const KernelSpec& spec, std::int64_t tiles, int device);
  CompiledKernel compile_with_nvrtc(const KernelSpec& spec);
  const LoadedKernel& loaded(const KernelSpec& spec, int device);
  int multiprocessors(int device);   // cached: the persistent grid of the wgmma family

  JitOptions options_;
  TemplateLibrary templates_;
  mutable std::mutex mutex_;
  std::unique_ptr<NvrtcLibrary> nvrtc_;
  std::unique_ptr<KernelCompiler> compiler_;
  std::unique_ptr<DriverApi> driver_;
  std::unique_ptr<KernelDbStack> database_;
  CacheStats stats_;
  std::map<std::string, std::shared_ptr<const CompiledKernel>> compiled_;
  std::map<int, std::unique_ptr<PrimaryContext>> contexts_;
  std::map<int, int> multiprocessors_;
  std::map<std::pair<std::string, int>, std::unique_ptr<LoadedKernel>> loaded_;
};

}  // namespace moejit
