// The GPU architecture a kernel is compiled for (sm_80, sm_90, sm_90a, ...).
#pragma once

#include <string>
#include <string_view>

namespace moejit {

struct Target {
  int major = 9;
  int minor = 0;
  // The "a" suffix: architecture-specific features (wgmma, setmaxnreg) that are not
  // forward compatible, so a cubin built for sm_90a runs on compute capability 9.0 only.
  bool arch_specific = false;

  std::string text() const;            // "sm_90a"
  int compute_capability() const { return major * 10 + minor; }
  // Shared memory one thread block may opt into (bytes), from the CUDA programming guide.
  int max_shared_bytes_per_block() const;
  int max_registers_per_thread() const { return 255; }
  // Whether a cubin built for this target loads on a device of compute capability
  // major.minor: the same major architecture at the same or a newer minor one, and for an
  // arch-specific ("a") target exactly that one.
  bool runs_on(int device_major, int device_minor) const;

  friend bool operator==(const Target&, const Target&) = default;
};

Target parse_target(std::string_view text);   // "sm_90a", "90a", "sm_80"; throws SpecError
// The most specific target for a device of this compute capability: Hopper gets sm_90a so
// its kernels may use wgmma, every other device its plain sm_XY.
Target target_for_device(int major, int minor);

}  // namespace moejit
