// The complete cache key of a compiled kernel. Every input that can change the machine
// code is a part: change any one and an old entry is never used for the new request.
#pragma once

#include <string>

namespace moejit {

struct KernelKey {
  std::string spec_text;         // the canonical spec, tile and target included
  std::string target;            // "sm_90a" (also in spec_text; kept apart for queries)
  std::string template_hash;     // content hash of templates/moejit/*
  std::string nvrtc_version;     // "13.0"
  std::string compile_options;   // NVRTC options, one per line, install paths left out
  std::string moejit_version;

  std::string hash_hex() const;  // the primary key in the database
  friend bool operator==(const KernelKey&, const KernelKey&) = default;
};

}  // namespace moejit
