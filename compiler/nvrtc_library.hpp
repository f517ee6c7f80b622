// NVRTC, opened with dlopen: a typed table with one entry per function moejit calls.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nvrtc.h>

#include "compiler/shared_library.hpp"

namespace moejit {

class NvrtcLibrary {
 public:
  // `extra_candidates` are tried first (for example the libnvrtc of a pip-installed
  // nvidia-cuda-nvrtc wheel, which the Python package finds); then $MOEJIT_NVRTC,
  // the loader's search path and the usual CUDA toolkit locations.
  explicit NvrtcLibrary(const std::vector<std::string>& extra_candidates = {});

  const std::string& path() const { return library_.path(); }
  int major() const { return major_; }
  int minor() const { return minor_; }
  std::string version() const;   // "13.0"

  // Throws std::runtime_error with NVRTC's message when `result` is an error.
  void check(nvrtcResult result, const char* call) const;

  decltype(&::nvrtcVersion) Version;
  decltype(&::nvrtcGetErrorString) GetErrorString;
  decltype(&::nvrtcCreateProgram) CreateProgram;
  decltype(&::nvrtcDestroyProgram) DestroyProgram;
  decltype(&::nvrtcCompileProgram) CompileProgram;
  decltype(&::nvrtcAddNameExpression) AddNameExpression;
  decltype(&::nvrtcGetLoweredName) GetLoweredName;
  decltype(&::nvrtcGetProgramLogSize) GetProgramLogSize;
  decltype(&::nvrtcGetProgramLog) GetProgramLog;
  decltype(&::nvrtcGetPTXSize) GetPTXSize;
  decltype(&::nvrtcGetPTX) GetPTX;
  decltype(&::nvrtcGetCUBINSize) GetCUBINSize;
  decltype(&::nvrtcGetCUBIN) GetCUBIN;

 private:
  SharedLibrary library_;
  int major_ = 0;
  int minor_ = 0;
};

}  // namespace moejit
