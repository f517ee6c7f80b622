// Tile configurations for specs that were never tuned: a rule of thumb that is valid for
// every op, transpose, block size and target, and fast enough to start with. The
// autotuner replaces it with measured winners.
#pragma once

#include "compiler/kernel_spec.hpp"

namespace moejit {

// A tile configuration of the spec's family that passes validate() for `spec` (its own
// tile field is ignored). Throws SpecError when no configuration fits the spec's extents.
TileConfig heuristic_tile_config(const KernelSpec& spec);

// The spec with its tile replaced by heuristic_tile_config(spec); the family is kept.
KernelSpec with_heuristic_tile(KernelSpec spec);

// The family to use for a spec that names none: wgmma on sm_90a (Hopper, where mma.sync
// cannot reach the tensor cores' rate) whenever one of its tiles fits the spec, else mma.
KernelFamily heuristic_family(const KernelSpec& spec);

// The spec with heuristic_family and then heuristic_tile_config applied.
KernelSpec with_heuristic_implementation(KernelSpec spec);

}  // namespace moejit
