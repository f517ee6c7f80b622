#include "runtime/jit_runtime.hpp"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "autotune/search_space.hpp"
#include "compiler/kernel_dump.hpp"
#include "compiler/spec_error.hpp"
#include "compiler/tma_layout.hpp"
#include "moejit/bsr_gemm_sm90_params.h"
#include "runtime/tensor_map.hpp"

namespace moejit {

JitRuntime::JitRuntime(JitOptions options) : options_(std::move(options)), templates_(options_.templates_dir) {
  if (options_.database) database_ = std::make_unique<KernelDbStack>(*options_.database, options_.warn);
}

// Loaded modules must be unloaded while their contexts are still retained.
JitRuntime::~JitRuntime() {
  loaded_.clear();
  contexts_.clear();
}

const NvrtcLibrary& JitRuntime::nvrtc() {
  std::lock_guard lock(mutex_);
  if (!nvrtc_) nvrtc_ = std::make_unique<NvrtcLibrary>(options_.nvrtc_wheels);
  return *nvrtc_;
}

const KernelCompiler& JitRuntime::compiler() {
  const NvrtcLibrary& library = nvrtc();
  std::lock_guard lock(mutex_);
  if (!compiler_) compiler_ = std::make_unique<KernelCompiler>(library, templates_);
  return *compiler_;
}

const DriverApi& JitRuntime::driver() {
  std::lock_guard lock(mutex_);
  if (!driver_) driver_ = std::make_unique<DriverApi>();
  return *driver_;
}

KernelKey JitRuntime::kernel_key(const KernelSpec& spec) {
  // Built without NVRTC, so a process with none can still find its kernels; the NVRTC
  // version (provenance, not part of the hash) is filled in when one compiles the kernel.
  std::string options;
  for (const std::string& option : KernelCompiler::options(spec, templates_, options_.compile)) {
    // The include path differs between installs of the same templates, whose content
    // hash is a key part already: leaving it out lets a database travel between machines.
    if (option.starts_with("-I")) continue;
    options += (options.empty() ? "" : "\n") + option;
  }
  return KernelKey{spec.text(), spec.target.text(), templates_.content_hash_hex(), "", options, MOEJIT_VERSION};
}

std::shared_ptr<const CompiledKernel> JitRuntime::compile(const KernelSpec& spec) {
  const std::string text = spec.text();
  {
    std::lock_guard lock(mutex_);
    if (auto it = compiled_.find(text); it != compiled_.end()) {
      ++stats_.memory_hits;
      return it->second;
    }
  }
  // Compile outside the lock so different kernels compile in parallel. Two threads asking
  // for the same new kernel at once both compile it; the first result is kept.
  std::shared_ptr<const CompiledKernel> kernel;
  bool from_database = false;
  if (database_) {
    KernelKey key = kernel_key(spec);
    std::optional<CompiledKernel> hit = database_->find(key);
    if (!hit) {
      // Another process may be compiling it right now: wait for it, then look again.
      const CacheLock lock = database_->lock_compile(key);
      if (lock.held()) hit = database_->find(key);
      if (!hit) {
        kernel = std::make_shared<const CompiledKernel>(compile_with_nvrtc(spec));
        key.nvrtc_version = nvrtc().version();
        database_->insert(key, *kernel, options_.origin);
      }
    }
    if (hit) {
      kernel = std::make_shared<const CompiledKernel>(std::move(*hit));
      from_database = true;
      if (options_.log) options_.log(fmt::format("kernel database hit: {}", spec.short_name()));
    }
  } else {
    kernel = std::make_shared<const CompiledKernel>(compile_with_nvrtc(spec));
  }
  std::lock_guard lock(mutex_);
  ++(from_database ? stats_.database_hits : stats_.compiled);
  return compiled_.emplace(text, std::move(kernel)).first->second;
}

CompiledKernel JitRuntime::compile_with_nvrtc(const KernelSpec& spec) {
  try {
    nvrtc();
  } catch (const std::exception& e) {
    const std::vector<std::string> paths = database_ ? database_->open_paths() : std::vector<std::string>{};
    throw std::runtime_error(fmt::format(
        "kernel {} is not in any kernel database ({}) and NVRTC cannot compile it: {}\nEither install NVRTC (the "
        "CUDA toolkit, or `pip install nvidia-cuda-nvrtc`), or bake the kernel into a database this process reads "
        "(`moejit db bake FILE --model ... --target {}` on a machine with NVRTC, then MOEJIT_KERNEL_DB=FILE or a "
        "wheel built with -Dkernel_db=FILE). Spec: {}",
        spec.short_name(), paths.empty() ? "none open" : fmt::format("{}", fmt::join(paths, ", ")),
        e.what(), spec.target.text(), spec.text()));
  }
  try {
    CompiledKernel kernel = compiler().compile(spec, options_.compile);
    if (options_.log) {
      options_.log(fmt::format("compiled {} in {:.0f} ms: {} registers, {} bytes spilled, tile {}", spec.short_name(),
                               kernel.compile_ms, kernel.resources.registers, kernel.resources.spill_store_bytes,
                               spec.tile.text()));
    }
    if (!options_.dump_dir.empty()) {
      try {
        const std::string base = dump_kernel(options_.dump_dir, kernel);
        if (options_.log) options_.log(fmt::format("dumped {}.{{cu,ptx,cubin,log,spec}}", base));
      } catch (const std::exception& e) {
        if (options_.warn) options_.warn(fmt::format("MOEJIT_DUMP_DIR: {}", e.what()));
      }
    }
    return kernel;
  } catch (const CompileError& e) {
    // Keep what reproduces the failure, and say where it is.
    const std::string dir = options_.dump_dir.empty() ? options_.failure_dir : options_.dump_dir;
    if (dir.empty()) throw;
    std::string where;
    try {
      where = dump_failed_compile(dir, spec, e.source(), e.log(), compiler().options(spec, options_.compile));
    } catch (const std::exception& io) {
      throw CompileError(fmt::format("{}\n(keeping the failed source failed: {})", e.what(), io.what()), e.log(),
                         e.source());
    }
    throw CompileError(fmt::format("{}\nsource, log and options kept in {}.{{cu,log,options}}", e.what(), where),
                       e.log(), e.source());
  }
}

std::size_t JitRuntime::compiled_count() const {
  std::lock_guard lock(mutex_);
  return compiled_.size();
}

CacheStats JitRuntime::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

int JitRuntime::device_count() {
  const DriverApi& d = driver();
  int count = 0;
  d.check(d.DeviceGetCount(&count), "cuDeviceGetCount");
  return count;
}

DeviceInfo JitRuntime::device_info(int device) {
  const DriverApi& d = driver();
  std::lock_guard lock(mutex_);
  const CUdevice dev = context(device).device();
  DeviceInfo info;
  char name[256] = {0};
  d.check(d.DeviceGetName(name, sizeof(name), dev), "cuDeviceGetName");
  info.name = name;
  d.check(d.DeviceGetAttribute(&info.major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev), "cuDeviceGetAttribute");
  d.check(d.DeviceGetAttribute(&info.minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev), "cuDeviceGetAttribute");
  d.check(d.DeviceGetAttribute(&info.multiprocessors, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev),
          "cuDeviceGetAttribute");
  d.check(d.DeviceGetAttribute(&info.max_shared_bytes_per_block, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
                               dev),
          "cuDeviceGetAttribute");
  return info;
}

PrimaryContext& JitRuntime::context(int device) {
  auto it = contexts_.find(device);
  if (it == contexts_.end()) {
    it = contexts_.emplace(device, std::make_unique<PrimaryContext>(*driver_, device)).first;
  }
  return *it->second;
}

const LoadedKernel& JitRuntime::loaded(const KernelSpec& spec, int device) {
  const auto key = std::make_pair(spec.text(), device);
  {
    std::lock_guard lock(mutex_);
    if (auto it = loaded_.find(key); it != loaded_.end()) return *it->second;
  }
  const DeviceInfo info = device_info(device);
  const Target& t = spec.target;
  if (!t.runs_on(info.major, info.minor)) {
    throw SpecError("target", t.text(),
                    fmt::format("the architecture of device {} ({}, sm_{}{}), such as {}", device, info.name,
                                info.major, info.minor, target_for_device(info.major, info.minor).text()));
  }
  std::shared_ptr<const CompiledKernel> kernel = compile(spec);
  std::lock_guard lock(mutex_);
  if (auto it = loaded_.find(key); it != loaded_.end()) return *it->second;
  auto module = std::make_unique<LoadedKernel>(*driver_, context(device).get(), std::move(kernel));
  return *loaded_.emplace(key, std::move(module)).first->second;
}

std::vector<TuningEntry> JitRuntime::tunings(const KernelSpec& problem, const std::string& gpu_name) {
  if (!database_) return {};
  return database_->tunings_for(problem.problem_text(), gpu_name, templates_.content_hash_hex(), MOEJIT_VERSION);
}

std::optional<TileConfig> JitRuntime::tuned_tile(const KernelSpec& problem, const std::string& gpu_name,
                                                 std::int64_t bucket) {
  const std::vector<TuningEntry> results = tunings(problem, gpu_name);
  std::vector<std::int64_t> buckets;
  for (const TuningEntry& t : results) buckets.push_back(t.token_bucket);
  const std::int64_t chosen = nearest_bucket(buckets, bucket);
  for (const TuningEntry& t : results) {
    if (t.token_bucket == chosen) return parse_tile_config(t.best_tile);
  }
  return std::nullopt;
}

bool JitRuntime::record_tuning(TuningEntry entry) {
  if (!database_) return false;
  entry.template_hash = templates_.content_hash_hex();
  entry.nvrtc_version = compiler().nvrtc().version();
  entry.moejit_version = MOEJIT_VERSION;
  return database_->put_tuning(entry);
}

void JitRuntime::prepare(const KernelSpec& spec, int device) {
  driver();
  loaded(spec, device);
}

void JitRuntime::check_loads(const CompiledKernel& kernel, int device) {
  const DriverApi& d = driver();
  CUcontext ctx = nullptr;
  {
    std::lock_guard lock(mutex_);
    ctx = context(device).get();
  }
  LoadedKernel probe(d, ctx, std::make_shared<const CompiledKernel>(kernel));
}

void JitRuntime::launch_bsr_gemm(const KernelSpec& spec, const BsrGemmParams& params, const SparseShape& sparse,
                                 int device, CUstream stream) {
  const LaunchGeometry geometry = launch_geometry(spec, sparse);
  if (spec.family != KernelFamily::wgmma) {
    launch(spec, geometry.grid_x, 1, &params, device, stream);
    return;
  }
  if (geometry.grid_x == 0) return;   // no tile: nothing to encode either
  const DriverApi& d = driver();
  const int cluster = spec.tile.cluster_ctas();
  const std::int64_t grid = persistent_grid(spec, geometry.grid_x, device);
  const TmaLayout layout = tma_layout(spec, sparse, params.lda, params.ldb, params.ldc);
  // An empty sparse operand has no data to point at; its map is never read (see
  // tma_layout), so any valid address stands in.
  const auto address = [&](const void* p) { return p != nullptr ? p : params.c; };
  BsrGemmSm90Params sm90{};
  sm90.a = encode_tensor_map(d, "a", address(params.a), layout.a, spec.dtype);
  sm90.b = encode_tensor_map(d, "b", address(params.b), layout.b, spec.dtype);
  sm90.c = encode_tensor_map(d, "c", params.c, layout.c, spec.dtype);
  sm90.gemm = params;
  launch(spec, grid, cluster, &sm90, device, stream);
}

std::int64_t JitRuntime::persistent_grid(const KernelSpec& spec, std::int64_t tiles, int device) {
  if (spec.family != KernelFamily::wgmma || tiles == 0) return tiles;
  if (spec.tile.cluster_ctas() == 1) return std::min<std::int64_t>(tiles, multiprocessors(device));
  return cluster_grid(spec, tiles, device);
}

std::int64_t JitRuntime::cluster_grid(const KernelSpec& spec, std::int64_t tiles, int device) {
  const int cluster = spec.tile.cluster_ctas();
  // validate() makes a tile row hold whole clusters, so the tiles come in whole clusters.
  if (tiles % cluster != 0) {
    throw std::logic_error(fmt::format("{} tiles of {}: expected a multiple of the cluster ({}), as validate ensures",
                                       tiles, spec.text(), cluster));
  }
  const LoadedKernel& kernel = loaded(spec, device);
  const int clusters = kernel.max_active_clusters(cluster);
  if (clusters == 0) {
    throw std::runtime_error(fmt::format(
        "kernel {} cannot run: not one cluster of {} thread blocks with {} bytes of shared memory each fits on "
        "device {} at once (cuOccupancyMaxActiveClusters = 0); use a smaller cluster or fewer stages\nspec: {}",
        kernel.compiled().lowered_name, cluster, kernel.compiled().dynamic_shared_bytes, device, spec.text()));
  }
  return std::min<std::int64_t>(tiles, std::int64_t{clusters} * cluster);
}

void JitRuntime::launch_routing(const KernelSpec& spec, const RoutingParams& params, const RoutingShape& shape,
                                int device, CUstream stream) {
  launch(spec, routing_launch_geometry(spec, shape).grid_x, 1, &params, device, stream);
}

void JitRuntime::launch_activation(const KernelSpec& spec, const ActivationParams& params, int device,
                                   CUstream stream) {
  RoutingShape shape;
  shape.blocks = params.capacity_blocks;
  launch(spec, routing_launch_geometry(spec, shape).grid_x, 1, &params, device, stream);
}

void JitRuntime::launch(const KernelSpec& spec, std::int64_t grid_x, int cluster, const void* params, int device,
                        CUstream stream) {
  driver();
  const LoadedKernel& kernel = loaded(spec, device);
  CUcontext ctx = nullptr;
  {
    std::lock_guard lock(mutex_);
    ctx = context(device).get();
  }
  ScopedContext scope(*driver_, ctx);
  kernel.launch(grid_x, cluster, params, stream);
}

int JitRuntime::multiprocessors(int device) {
  {
    std::lock_guard lock(mutex_);
    if (auto it = multiprocessors_.find(device); it != multiprocessors_.end()) return it->second;
  }
  const int count = device_info(device).multiprocessors;
  std::lock_guard lock(mutex_);
  multiprocessors_[device] = count;
  return count;
}

}  // namespace moejit
