#include "runtime/driver_api.hpp"

#include <cstdlib>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

namespace moejit {
namespace {

std::vector<std::string> driver_candidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("MOEJIT_LIBCUDA")) out.emplace_back(env);
  out.emplace_back("libcuda.so.1");
  out.emplace_back("libcuda.so");
  return out;
}

}  // namespace

DriverApi::DriverApi()
    : library_(driver_candidates(), "The CUDA driver (libcuda.so.1)",
               "Running kernels needs an NVIDIA GPU with its driver installed; code generation and compilation "
               "work without one.") {
#define MOEJIT_CU_ENTRY(field, exported) field = reinterpret_cast<decltype(field)>(library_.symbol(exported))
  MOEJIT_CU_ENTRY(Init, "cuInit");
  MOEJIT_CU_ENTRY(DriverGetVersion, "cuDriverGetVersion");
  MOEJIT_CU_ENTRY(GetErrorName, "cuGetErrorName");
  MOEJIT_CU_ENTRY(GetErrorString, "cuGetErrorString");
  MOEJIT_CU_ENTRY(DeviceGetCount, "cuDeviceGetCount");
  MOEJIT_CU_ENTRY(DeviceGet, "cuDeviceGet");
  MOEJIT_CU_ENTRY(DeviceGetName, "cuDeviceGetName");
  MOEJIT_CU_ENTRY(DeviceGetAttribute, "cuDeviceGetAttribute");
  MOEJIT_CU_ENTRY(DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  MOEJIT_CU_ENTRY(DevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2");
  MOEJIT_CU_ENTRY(CtxPushCurrent, "cuCtxPushCurrent_v2");
  MOEJIT_CU_ENTRY(CtxPopCurrent, "cuCtxPopCurrent_v2");
  MOEJIT_CU_ENTRY(CtxSynchronize, "cuCtxSynchronize");
  MOEJIT_CU_ENTRY(ModuleLoadData, "cuModuleLoadData");
  MOEJIT_CU_ENTRY(ModuleUnload, "cuModuleUnload");
  MOEJIT_CU_ENTRY(ModuleGetFunction, "cuModuleGetFunction");
  MOEJIT_CU_ENTRY(FuncGetAttribute, "cuFuncGetAttribute");
  MOEJIT_CU_ENTRY(FuncSetAttribute, "cuFuncSetAttribute");
  MOEJIT_CU_ENTRY(LaunchKernel, "cuLaunchKernel");
  MOEJIT_CU_ENTRY(MemAlloc, "cuMemAlloc_v2");
  MOEJIT_CU_ENTRY(MemFree, "cuMemFree_v2");
  MOEJIT_CU_ENTRY(MemcpyHtoD, "cuMemcpyHtoD_v2");
  MOEJIT_CU_ENTRY(MemcpyDtoH, "cuMemcpyDtoH_v2");
#undef MOEJIT_CU_ENTRY
  // Optional entries stay nullptr where the driver lacks them: their users say what to
  // install when a kernel needs them (encode_tensor_map, LoadedKernel's cluster launch).
  const auto optional_entry = [&](auto& field, const char* exported) {
    try {
      field = reinterpret_cast<std::remove_reference_t<decltype(field)>>(library_.symbol(exported));
    } catch (const std::exception&) {
      field = nullptr;
    }
  };
  optional_entry(TensorMapEncodeTiled, "cuTensorMapEncodeTiled");
  optional_entry(LaunchKernelEx, "cuLaunchKernelEx");
  optional_entry(OccupancyMaxActiveClusters, "cuOccupancyMaxActiveClusters");
  check(Init(0), "cuInit");
  check(DriverGetVersion(&version_), "cuDriverGetVersion");
}

void DriverApi::check(CUresult result, const char* call) const {
  if (result == CUDA_SUCCESS) return;
  const char* name = nullptr;
  const char* description = nullptr;
  GetErrorName(result, &name);
  GetErrorString(result, &description);
  throw std::runtime_error(fmt::format("{} failed: {}: {}", call, name ? name : "unknown error",
                                       description ? description : "no description"));
}

}  // namespace moejit
