// The launch configuration of a block-sparse product kernel for one call: the grid
// depends on the topology (a run-time value), the block and shared memory on the spec.
#pragma once

#include <cstdint>

#include "compiler/kernel_spec.hpp"

namespace moejit {

// The run-time shape of the sparse operand, read off its topology.
struct SparseShape {
  std::int64_t nnz = 0;
  std::int64_t block_rows = 0;
  std::int64_t block_cols = 0;
};

struct LaunchGeometry {
  std::int64_t grid_x = 0;     // C tiles, one thread block each (an upper bound for paired sdd
                               // blocks; the wgmma family launches at most one per SM); 0: nothing to do
  int threads = 0;
  int shared_bytes = 0;        // dynamic shared memory per thread block
};

// Mirrors the tile decomposition of templates/moejit/bsr_traversal.cuh. Throws SpecError
// when the sparse shape contradicts the spec's compile-time extents.
LaunchGeometry launch_geometry(const KernelSpec& spec, const SparseShape& sparse);

}  // namespace moejit
