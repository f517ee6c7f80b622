#include "compiler/target.hpp"

#include <algorithm>
#include <charconv>
#include <iterator>

#include <fmt/format.h>

#include "compiler/spec_error.hpp"

namespace moejit {

std::string Target::text() const { return fmt::format("sm_{}{}{}", major, minor, arch_specific ? "a" : ""); }

int Target::max_shared_bytes_per_block() const {
  // Opt-in maxima from the CUDA programming guide's table of technical specifications.
  switch (compute_capability()) {
    case 80:
    case 87: return 163 * 1024;
    case 86:
    case 89:
    case 120:
    case 121: return 99 * 1024;
    default: return 227 * 1024;   // 90, 100, 101, 103, 110
  }
}

bool Target::runs_on(int device_major, int device_minor) const {
  if (major != device_major || minor > device_minor) return false;
  return !arch_specific || minor == device_minor;
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
  constexpr int kKnown[] = {80, 86, 87, 89, 90, 100, 101, 103, 110, 120, 121};
  const bool parsed = ec == std::errc() && end == text.data() + text.size() && text.size() >= 2;
  if (!parsed || std::find(std::begin(kKnown), std::end(kKnown), cc) == std::end(kKnown)) {
    throw SpecError("target", original,
                    "an architecture sm_80 or newer: sm_80, sm_86, sm_87, sm_89, sm_90, sm_100, sm_101, sm_103, "
                    "sm_110, sm_120 or sm_121, with an 'a' suffix from sm_90 on");
  }
  // Architecture-specific variants ("a") exist from Hopper on.
  if (t.arch_specific && cc < 90) {
    throw SpecError("target", original, fmt::format("sm_{} without the 'a' suffix (it exists from sm_90a on)", cc));
  }
  t.major = cc / 10;
  t.minor = cc % 10;
  return t;
}

Target target_for_device(int major, int minor) { return Target{major, minor, major == 9 && minor == 0}; }

}  // namespace moejit
