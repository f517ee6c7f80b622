// The result of compiling one kernel spec: everything needed to load and launch it, to
// cache it, and to explain it (source, PTX, log, resources).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "compiler/kernel_spec.hpp"

namespace moejit {

// Per-kernel resource usage as ptxas reports it.
struct ResourceUsage {
  int registers = 0;
  int static_shared_bytes = 0;
  int stack_bytes = 0;
  int spill_store_bytes = 0;
  int spill_load_bytes = 0;
};

// Parses `ptxas info` lines of an NVRTC log compiled with --ptxas-options=-v.
ResourceUsage parse_ptxas_resources(const std::string& log);

// Registers and stack frame of the (one) kernel in a CUBIN, read from its ELF .nv.info
// section -- what `cuobjdump -res-usage` reads. Nothing if the CUBIN has no such records.
struct CubinResources {
  int registers = 0;
  int frame_bytes = 0;
};
std::optional<CubinResources> read_cubin_resources(const std::string& cubin);

// The resources of a compiled kernel: registers and stack from the CUBIN (always there),
// spill traffic from the ptxas log. On the GPU host NVRTC sometimes returns a cached
// CUBIN without running ptxas, so the log has no figures (seen 2026-11-28); then the
// spill fields are set to the stack frame size, which bounds them: these templates have
// no local arrays, so local memory means spills.
ResourceUsage kernel_resources(const std::string& log, const std::string& cubin);

struct CompiledKernel {
  KernelSpec spec;
  std::string source;                 // the generated translation unit
  std::string lowered_name;           // the mangled kernel name, from NVRTC's name expression
  std::string cubin;                  // bytes
  std::string ptx;
  std::string log;                    // NVRTC and ptxas output
  std::vector<std::string> options;   // exactly what NVRTC was given
  ResourceUsage resources;
  int threads = 0;                    // threads per block
  int dynamic_shared_bytes = 0;       // dynamic shared memory per block
  double compile_ms = 0;
};

}  // namespace moejit
