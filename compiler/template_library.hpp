// The directory of kernel templates (templates/moejit/*.cuh) and a hash of its content.
// The hash is part of every kernel's cache key: editing any template makes every kernel
// compiled from the old text unusable.
#pragma once

#include <cstdint>
#include <string>

namespace moejit {

class TemplateLibrary {
 public:
  // `include_dir` is the directory NVRTC gets with -I: it holds moejit/<header>.
  // Throws std::runtime_error if it has no moejit/bsr_gemm_sm80.cuh.
  explicit TemplateLibrary(std::string include_dir);

  const std::string& include_dir() const { return include_dir_; }
  std::uint64_t content_hash() const { return content_hash_; }
  std::string content_hash_hex() const;
  // The text of one header, by its include name ("moejit/bsr_gemm_sm80.cuh").
  std::string read(const std::string& include_name) const;

 private:
  std::string include_dir_;
  std::uint64_t content_hash_ = 0;
};

}  // namespace moejit
