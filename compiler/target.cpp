#include "compiler/target.hpp"

#include <charconv>

#include <fmt/format.h>

#include "compiler/spec_error.hpp"

namespace moejit {

std::string Target::text() const { return fmt::format("sm_{}{}{}", major, minor, arch_specific ? "a" : ""); }

int Target::max_shared_bytes_per_block() const {
  const int cc = compute_capability();
  if (cc == 80 || cc == 87) return 163 * 1024;
  if (cc == 86 || cc == 89) return 99 * 1024;
  if (cc >= 90 && cc < 100) return 227 * 1024;
  if (cc >= 100) return 227 * 1024;
  return 48 * 1024;
}

Target parse_target(std::string_view text) {
  const std::string original(text);
  if (text.starts_with("sm_")) text.remove_prefix(3);
  Target t;
  if (!text.empty() && text.back() == 'a') {
    t.arch_specific = true;
    text.remove_suffix(1);
  }
  int cc = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), cc);
  if (ec != std::errc() || end != text.data() + text.size() || text.size() < 2 || cc < 80) {
    throw SpecError("target", original, "an architecture sm_80 or newer, such as sm_80, sm_90 or sm_90a");
  }
  t.major = cc / 10;
  t.minor = cc % 10;
  return t;
}

Target target_for_device(int major, int minor) { return Target{major, minor, major == 9 && minor == 0}; }

}  // namespace moejit
