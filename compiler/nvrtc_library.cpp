#include "compiler/nvrtc_library.hpp"

#include <cstdlib>
#include <stdexcept>

#include <fmt/format.h>

namespace moejit {
namespace {

std::vector<std::string> nvrtc_candidates(const std::vector<std::string>& extra) {
  std::vector<std::string> out = extra;
  if (const char* env = std::getenv("MOEJIT_NVRTC")) out.emplace_back(env);
  for (const char* name : {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"}) out.emplace_back(name);
  for (const char* var : {"CUDA_HOME", "CUDA_PATH"}) {
    if (const char* root = std::getenv(var)) {
      out.push_back(fmt::format("{}/lib64/libnvrtc.so", root));
      out.push_back(fmt::format("{}/lib/libnvrtc.so", root));
    }
  }
  out.emplace_back("/usr/local/cuda/lib64/libnvrtc.so");
  return out;
}

}  // namespace

NvrtcLibrary::NvrtcLibrary(const std::vector<std::string>& extra_candidates)
    : library_(nvrtc_candidates(extra_candidates), "NVRTC (libnvrtc)",
               "Install the CUDA toolkit, or `pip install nvidia-cuda-nvrtc`, or set MOEJIT_NVRTC to the library's "
               "path.") {
#define MOEJIT_NVRTC_ENTRY(name) name = reinterpret_cast<decltype(name)>(library_.symbol("nvrtc" #name))
  MOEJIT_NVRTC_ENTRY(Version);
  MOEJIT_NVRTC_ENTRY(GetErrorString);
  MOEJIT_NVRTC_ENTRY(CreateProgram);
  MOEJIT_NVRTC_ENTRY(DestroyProgram);
  MOEJIT_NVRTC_ENTRY(CompileProgram);
  MOEJIT_NVRTC_ENTRY(AddNameExpression);
  MOEJIT_NVRTC_ENTRY(GetLoweredName);
  MOEJIT_NVRTC_ENTRY(GetProgramLogSize);
  MOEJIT_NVRTC_ENTRY(GetProgramLog);
  MOEJIT_NVRTC_ENTRY(GetPTXSize);
  MOEJIT_NVRTC_ENTRY(GetPTX);
  MOEJIT_NVRTC_ENTRY(GetCUBINSize);
  MOEJIT_NVRTC_ENTRY(GetCUBIN);
#undef MOEJIT_NVRTC_ENTRY
  check(Version(&major_, &minor_), "nvrtcVersion");
}

std::string NvrtcLibrary::version() const { return fmt::format("{}.{}", major_, minor_); }

void NvrtcLibrary::check(nvrtcResult result, const char* call) const {
  if (result != NVRTC_SUCCESS) {
    throw std::runtime_error(fmt::format("{} failed: {}", call, GetErrorString(result)));
  }
}

}  // namespace moejit
