// What the autotuner may choose from for one problem, and how results are keyed.
#pragma once

#include <cstdint>
#include <vector>

#include "compiler/kernel_spec.hpp"

namespace moejit {

// Every tile configuration of the spec's family (mma or wgmma) that passes validate() for
// the spec's problem (its own tile is ignored): the static pruning by shared memory,
// accumulator registers and the block structure. The family is the spec's, chosen by
// heuristic_family where no one named it: a tuning result records a tile, not a family,
// so one tuning compares tiles of one family. The heuristic configuration comes first, so a tuner that can
// time only a few candidates still compares against the default.
std::vector<TileConfig> search_space(const KernelSpec& problem);

// Tokens per expert decide the shape of the work (how many row blocks each expert has),
// so tuning results are keyed by a bucket of it: the power of two nearest to
// routed tokens / experts, at least 1.
std::int64_t token_bucket(std::int64_t routed_tokens, std::int64_t experts);

// Of the tuned buckets, the one nearest to `bucket` on a log scale (ties: the larger);
// -1 if there are none.
std::int64_t nearest_bucket(const std::vector<std::int64_t>& tuned, std::int64_t bucket);

}  // namespace moejit
