#include "runtime/kernel_key.hpp"

#include "compiler/hash.hpp"

namespace moejit {

std::string KernelKey::hash_hex() const {
  std::uint64_t h = fnv1a64("moejit-kernel-key-v2");
  // A separator no part can contain, so ("ab", "c") and ("a", "bc") hash differently.
  for (const std::string* part : {&spec_text, &target, &template_hash, &compile_options, &moejit_version}) {
    h = fnv1a64(*part, h);
    h = fnv1a64(std::string_view("\x1f", 1), h);
  }
  return hex64(h);
}

std::string KernelKey::legacy_hash_hex() const {
  std::uint64_t h = fnv1a64("moejit-kernel-key-v1");
  for (const std::string* part :
       {&spec_text, &target, &template_hash, &nvrtc_version, &compile_options, &moejit_version}) {
    h = fnv1a64(*part, h);
    h = fnv1a64(std::string_view("\x1f", 1), h);
  }
  return hex64(h);
}

bool KernelKey::same_binary(const KernelKey& other) const {
  return spec_text == other.spec_text && target == other.target && template_hash == other.template_hash &&
         compile_options == other.compile_options && moejit_version == other.moejit_version;
}

}  // namespace moejit
