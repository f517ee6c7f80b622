// The JIT pipeline behind every op call: spec -> (in-memory cache) -> compile with NVRTC
// -> load into the device's primary context -> launch on the caller's stream.
//
// Each piece is opened only when first needed: generating source needs nothing, compiling
// needs NVRTC, launching needs the driver. All state lives in this object (no globals);
// it is safe to use from several threads.
#pragma once

#include <map>
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
#include "moejit/bsr_gemm_params.h"
#include "runtime/driver_api.hpp"
#include "runtime/loaded_kernel.hpp"
#include "runtime/primary_context.hpp"

namespace moejit {

struct JitOptions {
  std::string templates_dir;                   // holds moejit/*.cuh
  std::vector<std::string> nvrtc_candidates;   // tried before the default NVRTC locations
  CompileOptions compile;
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

  // Compiles the spec once per runtime; later calls return the same kernel.
  std::shared_ptr<const CompiledKernel> compile(const KernelSpec& spec);
  // How many distinct kernels this runtime has compiled (for tests and `moejit doctor`).
  std::size_t compiled_count() const;

  int device_count();
  DeviceInfo device_info(int device);

  // Launches the block-sparse product `spec` on `device` (its primary context) and
  // `stream` (the caller's, for example torch.cuda.current_stream().cuda_stream).
  void launch_bsr_gemm(const KernelSpec& spec, const BsrGemmParams& params, const SparseShape& sparse, int device,
                       CUstream stream);

 private:
  PrimaryContext& context(int device);   // caller holds mutex_
  const LoadedKernel& loaded(const KernelSpec& spec, int device);

  JitOptions options_;
  TemplateLibrary templates_;
  mutable std::mutex mutex_;
  std::unique_ptr<NvrtcLibrary> nvrtc_;
  std::unique_ptr<KernelCompiler> compiler_;
  std::unique_ptr<DriverApi> driver_;
  std::map<std::string, std::shared_ptr<const CompiledKernel>> compiled_;
  std::map<int, std::unique_ptr<PrimaryContext>> contexts_;
  std::map<std::pair<std::string, int>, std::unique_ptr<LoadedKernel>> loaded_;
};

}  // namespace moejit
