#include "compiler/hash.hpp"

#include <fmt/format.h>

namespace moejit {

std::string hex64(std::uint64_t value) { return fmt::format("{:016x}", value); }

}  // namespace moejit
