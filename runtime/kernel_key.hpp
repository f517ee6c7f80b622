// The cache key of a compiled kernel. Its binary parts decide whether a stored CUBIN is the
// one a request needs: the spec (tile and target included), the templates' content, the
// compile options, and the moejit version, which stands for the host code the templates'
// hash does not cover (the code generator, the launch parameters). The NVRTC version is
// provenance: another NVRTC translates the same source with the same options into a
// kernel that computes the same thing, so a database baked with one serves a machine with
// another (and one without NVRTC at all).
#pragma once

#include <string>

namespace moejit {

struct KernelKey {
  std::string spec_text;         // the canonical spec, tile and target included
  std::string target;            // "sm_90a" (also in spec_text; kept apart for queries)
  std::string template_hash;     // content hash of templates/moejit/*
  std::string nvrtc_version;     // "13.0": provenance, not part of the hash
  std::string compile_options;   // NVRTC options, one per line, install paths left out
  std::string moejit_version;

  std::string hash_hex() const;  // the primary key in the database: the binary parts only
  std::string legacy_hash_hex() const;   // the primary key of schemas 1 to 3: every part
  // Whether a stored kernel of key `other` is the binary this key asks for.
  bool same_binary(const KernelKey& other) const;
  friend bool operator==(const KernelKey&, const KernelKey&) = default;
};

}  // namespace moejit
