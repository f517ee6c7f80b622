#include "compiler/shared_library.hpp"

#include <dlfcn.h>

#include <stdexcept>

#include <fmt/format.h>

namespace moejit {

SharedLibrary::SharedLibrary(const std::vector<std::string>& candidates, const std::string& what,
                             const std::string& install_hint)
    : what_(what) {
  std::string tried;
  for (const std::string& candidate : candidates) {
    handle_ = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle_ != nullptr) {
      index_ = static_cast<std::size_t>(&candidate - candidates.data());
      char resolved[4096] = {0};
      // The path actually opened, for `moejit doctor` and error messages.
      if (dlinfo(handle_, RTLD_DI_ORIGIN, resolved) == 0 && candidate.find('/') == std::string::npos) {
        path_ = fmt::format("{}/{}", resolved, candidate);
      } else {
        path_ = candidate;
      }
      return;
    }
    const char* err = dlerror();
    tried += fmt::format("\n  {}: {}", candidate, err ? err : "not found");
  }
  throw std::runtime_error(fmt::format("{} could not be loaded. {}\nTried:{}", what, install_hint, tried));
}

SharedLibrary::~SharedLibrary() {
  if (handle_ != nullptr) dlclose(handle_);
}

void* SharedLibrary::symbol(const char* name) const {
  dlerror();
  void* address = dlsym(handle_, name);
  if (address == nullptr) {
    throw std::runtime_error(fmt::format("{} ({}) has no symbol {}: it is too old for moejit", what_, path_, name));
  }
  return address;
}

}  // namespace moejit
