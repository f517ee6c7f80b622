// Opening a shared library at run time (dlopen) from a list of candidates, so that
// moejit never links against libcuda or libnvrtc and imports on machines without them.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace moejit {

class SharedLibrary {
 public:
  // Tries each candidate (a file name for the loader's search, or a path) in order.
  // Throws std::runtime_error listing every attempt and `install_hint` if none opens.
  SharedLibrary(const std::vector<std::string>& candidates, const std::string& what, const std::string& install_hint);
  ~SharedLibrary();
  SharedLibrary(const SharedLibrary&) = delete;
  SharedLibrary& operator=(const SharedLibrary&) = delete;

  // The address of `symbol`; throws naming the library and the symbol if it is missing.
  void* symbol(const char* name) const;
  const std::string& path() const { return path_; }
  std::size_t index() const { return index_; }   // which candidate opened

 private:
  void* handle_ = nullptr;
  std::size_t index_ = 0;
  std::string path_;
  std::string what_;
};

}  // namespace moejit
