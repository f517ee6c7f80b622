#include "compiler/template_library.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

#include "compiler/hash.hpp"

namespace moejit {
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("cannot read kernel template {}", path.string()));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TemplateLibrary::TemplateLibrary(std::string include_dir) : include_dir_(std::move(include_dir)) {
  const fs::path root = fs::path(include_dir_) / "moejit";
  if (!fs::exists(root / "bsr_gemm_sm80.cuh")) {
    throw std::runtime_error(fmt::format(
        "kernel templates not found: {} has no moejit/bsr_gemm_sm80.cuh (is moejit installed completely?)",
        include_dir_));
  }
  // Sorted names and contents, so the hash depends on nothing but the files; headers in
  // subfolders (moejit/sm90/) count, named by their path below moejit/.
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    const std::string ext = entry.path().extension().string();
    if (entry.is_regular_file() && (ext == ".cuh" || ext == ".h")) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  std::uint64_t h = fnv1a64("moejit-templates");
  for (const fs::path& file : files) {
    h = fnv1a64(file.lexically_relative(root).generic_string(), h);
    h = fnv1a64(slurp(file), h);
  }
  content_hash_ = h;
}

std::string TemplateLibrary::content_hash_hex() const { return hex64(content_hash_); }

std::string TemplateLibrary::read(const std::string& include_name) const {
  return slurp(fs::path(include_dir_) / include_name);
}

}  // namespace moejit
