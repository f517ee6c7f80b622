// Tile configurations for specs that were never tuned: a rule of thumb that is valid for
// every op, transpose, block size and target, and fast enough to start with. The
// autotuner replaces it with measured winners.
#pragma once

#include "compiler/kernel_spec.hpp"

namespace moejit {

// A tile configuration that passes validate() for `spec` (its own tile field is ignored).
// Throws SpecError when no configuration fits the spec's extents.
TileConfig heuristic_tile_config(const KernelSpec& spec);

// The spec with its tile replaced by heuristic_tile_config(spec).
KernelSpec with_heuristic_tile(KernelSpec spec);

}  // namespace moejit
