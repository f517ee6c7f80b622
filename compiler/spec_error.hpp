// Errors raised while building, parsing or validating kernel specs.
#pragma once

#include <stdexcept>
#include <string>

namespace moejit {

// An inconsistent or malformed spec. The message always names the field, the value
// it had and what is allowed, so a user can fix the call without reading our code.
class SpecError : public std::invalid_argument {
 public:
  SpecError(const std::string& field, const std::string& value, const std::string& expected);

  const std::string& field() const { return field_; }
  const std::string& value() const { return value_; }
  const std::string& expected() const { return expected_; }

 private:
  std::string field_;
  std::string value_;
  std::string expected_;
};

}  // namespace moejit
