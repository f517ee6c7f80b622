// NVRTC, opened with dlopen: a typed table with one entry per function moejit calls.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nvrtc.h>

#include "compiler/shared_library.hpp"

namespace moejit {

// One place NVRTC may be loaded from, and why it is tried there.
struct NvrtcCandidate {
  std::string path;     // a file path, or a bare file name for the loader's search path
  std::string reason;   // for `moejit doctor`: "MOEJIT_NVRTC is set", ...
};

// The order NVRTC is looked for, so that the choice does not flip when a Python package
// brings its own copy (pip's nvidia-cuda-nvrtc, which torch installs), which would
// compile every cached kernel again under another NVRTC version:
//   1. $MOEJIT_NVRTC, the explicit override;
//   2. the CUDA toolkit of $CUDA_HOME (or $CUDA_PATH);
//   3. the CUDA toolkit moejit was built with (`build_toolkit`), then /usr/local/cuda;
//   4. the libraries of pip wheels (`wheel_libraries`, which the Python package finds);
//   5. the dynamic loader's search path (LD_LIBRARY_PATH, ldconfig).
// Toolkit directories that hold no libnvrtc are left out; the other entries are kept
// even when missing, so a failure lists what was tried.
std::vector<NvrtcCandidate> nvrtc_search_order(const std::vector<std::string>& wheel_libraries,
                                               const std::string& build_toolkit);

// The toolkit root moejit's build found cuda.h and nvrtc.h under ("" if unknown).
std::string build_toolkit_root();

class NvrtcLibrary {
 public:
  // Opens the first candidate of nvrtc_search_order(wheel_libraries, build_toolkit_root()).
  explicit NvrtcLibrary(const std::vector<std::string>& wheel_libraries = {});

  const std::string& path() const { return library_.path(); }
  const std::string& reason() const { return reason_; }   // why this one (NvrtcCandidate::reason)
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
  NvrtcLibrary(const std::vector<NvrtcCandidate>& candidates);
  static std::vector<std::string> paths(const std::vector<NvrtcCandidate>& candidates);

  std::vector<NvrtcCandidate> candidates_;
  SharedLibrary library_;
  std::string reason_;
  int major_ = 0;
  int minor_ = 0;
};

}  // namespace moejit
