// The CUDA driver API, opened with dlopen: a typed table with one entry per function
// moejit calls. Nothing links against libcuda, so the package imports, generates and
// compiles code on machines without a GPU; only running kernels needs this table.
#pragma once

#include <string>

#include <cuda.h>

#include "compiler/shared_library.hpp"

namespace moejit {

class DriverApi {
 public:
  // Opens libcuda.so.1 (or $MOEJIT_LIBCUDA) and calls cuInit. Throws std::runtime_error
  // naming what to install when there is no driver.
  DriverApi();

  const std::string& path() const { return library_.path(); }
  int version() const { return version_; }   // e.g. 13000

  // Throws std::runtime_error "<call> failed: <CUDA_ERROR_NAME>: <description>".
  void check(CUresult result, const char* call) const;

  // The exported symbol names below carry the ABI version suffixes that cuda.h's macros
  // would otherwise add (cuCtxPushCurrent -> cuCtxPushCurrent_v2, ...).
  decltype(&::cuInit) Init;
  decltype(&::cuDriverGetVersion) DriverGetVersion;
  decltype(&::cuGetErrorName) GetErrorName;
  decltype(&::cuGetErrorString) GetErrorString;
  decltype(&::cuDeviceGetCount) DeviceGetCount;
  decltype(&::cuDeviceGet) DeviceGet;
  decltype(&::cuDeviceGetName) DeviceGetName;
  decltype(&::cuDeviceGetAttribute) DeviceGetAttribute;
  decltype(&::cuDevicePrimaryCtxRetain) DevicePrimaryCtxRetain;
  decltype(&::cuDevicePrimaryCtxRelease) DevicePrimaryCtxRelease;
  decltype(&::cuCtxPushCurrent) CtxPushCurrent;
  decltype(&::cuCtxPopCurrent) CtxPopCurrent;
  decltype(&::cuCtxSynchronize) CtxSynchronize;
  decltype(&::cuModuleLoadData) ModuleLoadData;
  decltype(&::cuModuleUnload) ModuleUnload;
  decltype(&::cuModuleGetFunction) ModuleGetFunction;
  decltype(&::cuFuncGetAttribute) FuncGetAttribute;
  decltype(&::cuFuncSetAttribute) FuncSetAttribute;
  decltype(&::cuLaunchKernel) LaunchKernel;
  decltype(&::cuMemAlloc) MemAlloc;
  decltype(&::cuMemFree) MemFree;
  decltype(&::cuMemcpyHtoD) MemcpyHtoD;
  decltype(&::cuMemcpyDtoH) MemcpyDtoH;
  // TMA tensor maps for the wgmma family; nullptr on drivers older than CUDA 12.0, which
  // still run the mma family.
  decltype(&::cuTensorMapEncodeTiled) TensorMapEncodeTiled = nullptr;
  // Thread-block cluster launches (the wgmma family's dsd tiles with TileConfig::cluster >
  // 1); nullptr on drivers older than CUDA 12.0: LoadedKernel says what to install when a
  // cluster launch needs them.
  decltype(&::cuLaunchKernelEx) LaunchKernelEx = nullptr;
  decltype(&::cuOccupancyMaxActiveClusters) OccupancyMaxActiveClusters = nullptr;

 private:
  SharedLibrary library_;
  int version_ = 0;
};

}  // namespace moejit
