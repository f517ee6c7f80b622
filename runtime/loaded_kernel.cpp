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

void LoadedKernel::launch(std::int64_t grid_x, const void* params, CUstream stream) const {
  if (grid_x <= 0) return;
  void* args[] = {const_cast<void*>(params)};
  const CUresult result = driver_.LaunchKernel(function_, static_cast<unsigned>(grid_x), 1, 1,
                                               static_cast<unsigned>(compiled_->threads), 1, 1,
                                               static_cast<unsigned>(compiled_->dynamic_shared_bytes), stream, args,
                                               nullptr);
  if (result != CUDA_SUCCESS) {
    try {
      driver_.check(result, "cuLaunchKernel");
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(fmt::format("{}\nkernel: {}\nspec: {}\nlaunch: grid={} block={} shared={} bytes",
                                           e.what(), compiled_->lowered_name, compiled_->spec.text(), grid_x,
                                           compiled_->threads, compiled_->dynamic_shared_bytes));
    }
  }
}

}  // namespace moejit
