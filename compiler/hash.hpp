// A small, stable, dependency-free content hash for cache keys.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace moejit {

// 64-bit FNV-1a. Stable across processes, platforms and versions (unlike std::hash),
// which is what a persistent cache key needs; it is not meant to resist adversaries.
constexpr std::uint64_t fnv1a64(std::string_view data, std::uint64_t seed = 0xcbf29ce484222325ull) {
  std::uint64_t h = seed;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string hex64(std::uint64_t value);   // 16 lowercase hex digits

}  // namespace moejit
