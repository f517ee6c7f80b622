#include "compiler/spec_error.hpp"

#include <fmt/format.h>

namespace moejit {

SpecError::SpecError(const std::string& field, const std::string& value, const std::string& expected)
    : std::invalid_argument(fmt::format("{}={}: expected {}", field, value, expected)), field_(field), value_(value), expected_(expected) {}

}  // namespace moejit
