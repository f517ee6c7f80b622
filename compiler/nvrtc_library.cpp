#include "compiler/nvrtc_library.hpp"

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>

#ifndef MOEJIT_CUDA_ROOT
#define MOEJIT_CUDA_ROOT ""
#endif

namespace moejit {
namespace {

// The libnvrtc files of a toolkit root, newest soname first; none if the root has none.
void add_toolkit(std::vector<NvrtcCandidate>& out, const std::string& root, const std::string& reason) {
  if (root.empty()) return;
  for (const char* lib : {"lib64", "lib"}) {
    for (const char* name : {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"}) {
      const std::string path = fmt::format("{}/{}/{}", root, lib, name);
      std::error_code ignored;
      if (!std::filesystem::exists(path, ignored)) continue;
      for (const NvrtcCandidate& c : out) {
        if (std::filesystem::equivalent(c.path, path, ignored)) return;   // the same toolkit, named twice
      }
      out.push_back({path, reason});
      return;
    }
  }
}

}  // namespace

std::string build_toolkit_root() { return MOEJIT_CUDA_ROOT; }

std::vector<NvrtcCandidate> nvrtc_search_order(const std::vector<std::string>& wheel_libraries,
                                               const std::string& build_toolkit) {
  std::vector<NvrtcCandidate> out;
  if (const char* env = std::getenv("MOEJIT_NVRTC"); env != nullptr && *env != '\0') {
    // "none": run from kernel databases alone, as a machine without NVRTC would.
    if (std::string_view(env) == "none") return out;
    out.push_back({env, "MOEJIT_NVRTC is set"});
  }
  for (const char* var : {"CUDA_HOME", "CUDA_PATH"}) {
    if (const char* root = std::getenv(var); root != nullptr && *root != '\0') {
      add_toolkit(out, root, fmt::format("the CUDA toolkit {} names", var));
    }
  }
  add_toolkit(out, build_toolkit, "the CUDA toolkit moejit was built with");
  add_toolkit(out, "/usr/local/cuda", "the CUDA toolkit at its default location");
  for (const std::string& path : wheel_libraries) {
    out.push_back({path, "a pip wheel's NVRTC (nvidia-cuda-nvrtc): no CUDA toolkit has one"});
  }
  for (const char* name : {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"}) {
    out.push_back({name, "the dynamic loader's search path (LD_LIBRARY_PATH, ldconfig)"});
  }
  return out;
}

NvrtcLibrary::NvrtcLibrary(const std::vector<std::string>& wheel_libraries)
    : NvrtcLibrary(nvrtc_search_order(wheel_libraries, build_toolkit_root())) {}

std::vector<std::string> NvrtcLibrary::paths(const std::vector<NvrtcCandidate>& candidates) {
  std::vector<std::string> out;
  for (const NvrtcCandidate& c : candidates) out.push_back(c.path);
  return out;
}

NvrtcLibrary::NvrtcLibrary(const std::vector<NvrtcCandidate>& candidates)
    : candidates_(candidates),
      library_(paths(candidates), "NVRTC (libnvrtc)",
               "Install the CUDA toolkit, or `pip install nvidia-cuda-nvrtc`, or set MOEJIT_NVRTC to the library's "
               "path."),
      reason_(candidates_.at(library_.index()).reason) {
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
