// Validation of kernel specs: every inconsistency is rejected before code is generated.
#pragma once

#include "compiler/kernel_spec.hpp"

namespace moejit {

// Throws SpecError naming the first offending field, its value and what is allowed.
void validate(const KernelSpec& spec);

// Whether an sdd spec's thread blocks each compute two blocks of one block column (a
// wgmma tile of 2 x block rows, templates/moejit/sm90/tile_walks.cuh): the two blocks
// share the B tile, which halves B's shared-memory and L2 traffic per block.
bool sdd_block_pairs(const KernelSpec& spec);

// Whether an sdd spec's thread blocks each compute two blocks of one block row (a wgmma
// tile of 2 x block columns, templates/moejit/sm90/tile_walks.cuh): the two blocks share
// the A tile, and the consumers multiply one tile twice the block wide.
bool sdd_row_pairs(const KernelSpec& spec);

}  // namespace moejit
