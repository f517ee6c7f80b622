#include "autotune/search_space.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "autotune/tile_heuristics.hpp"
#include "compiler/spec_error.hpp"
#include "compiler/validate.hpp"

namespace moejit {

std::vector<TileConfig> search_space(const KernelSpec& problem) {
  std::vector<TileConfig> out;
  KernelSpec candidate = problem;
  try {
    out.push_back(heuristic_tile_config(problem));
  } catch (const SpecError&) {
    // No heuristic fits: the loop below finds whatever does, possibly nothing.
  }
  if (problem.family == KernelFamily::wgmma) {
    // wgmma: C tiles of one or two 64-row consumer warpgroups by 64 to 256 columns, and
    // every ring depth from 2 to 6 that fits shared memory next to the C buffer (K depth
    // is fixed at 64 by the 128-byte swizzle): about 25 candidates. Then pingpong tiles
    // (each consumer warpgroup a whole tile, at most 128 accumulators; docs/kernels/wgmma.md)
    // with 3 to 6 stages, about 10 more. For sdd the 2 x block wide tiles are pairs of blocks
    // of one block row. Not the sdd tiles that pair two blocks of a block column (tile_m =
    // 2 x block): slower than the default, and they count a block as live by its position in
    // the column-major order, which only a routing plan's topology guarantees to agree with
    // the stored index (Topology's live_nnz); they stay an explicit tile.
    // Last, for dsd, the two best cluster tiles along N (.c2: the CTAs share A's tile by TMA
    // multicast, halving A's L2 traffic) and one along M (.c2x1: two tile rows share each B
    // tile): slower where L2 bandwidth does not bind, candidates for where it does.
    // validate() prunes them for every other op and for n / tile_n not a multiple of the
    // cluster. docs/performance-log.md has the measurements behind these choices.
    const auto add = [&](TileConfig tile) {
      candidate.tile = tile;
      if (std::find(out.begin(), out.end(), candidate.tile) != out.end()) return;
      try {
        validate(candidate);
        if (!sdd_block_pairs(candidate)) out.push_back(candidate.tile);
      } catch (const SpecError&) {
        // Statically impossible for this problem: pruned.
      }
    };
    const std::pair<int, int> wgmma_tiles[] = {{128, 128}, {128, 256}, {128, 64}, {64, 256}, {64, 128}, {64, 64}};
    for (auto [tile_m, tile_n] : wgmma_tiles) {
      for (int stages = 2; stages <= 6; ++stages) add(TileConfig{tile_m, tile_n, 64, stages, 4 * (tile_m / 64), 1});
    }
    const std::pair<int, int> pingpong_tiles[] = {{128, 128}, {64, 256}, {64, 128}, {64, 64}};
    for (auto [tile_m, tile_n] : pingpong_tiles) {
      for (int stages = 3; stages <= 6; ++stages) add(TileConfig{tile_m, tile_n, 64, stages, 8, 1, true});
    }
    const TileConfig cluster_tiles[] = {{128, 256, 64, 4, 8, 1, false, 2}, {128, 256, 64, 3, 8, 1, false, 2},
                                        {128, 256, 64, 4, 8, 1, false, 1, 2}};
    for (const TileConfig& tile : cluster_tiles) add(tile);
    return out;
  }
  // mma: C tiles of 4K to 32K elements (64x64 for block-64 sdd) with 4 or 8 warps; K depth
  // 32 or 64 with the stage counts that fit shared memory. The sweep behind the heuristic
  // found the good mma.sync configurations inside this set; keeping it to ~50 candidates
  // holds a model's tuning near a minute.
  const std::pair<int, int> tiles[] = {{128, 128}, {64, 128}, {128, 64}, {128, 256}, {256, 128}, {64, 64}};
  const std::pair<int, int> warp_grids[] = {{2, 2}, {4, 2}, {2, 4}};
  const std::pair<int, int> depths[] = {{32, 3}, {32, 4}, {64, 2}, {64, 3}};
  for (auto [tile_m, tile_n] : tiles) {
    for (auto [warps_m, warps_n] : warp_grids) {
      for (auto [tile_k, stages] : depths) {
        candidate.tile = TileConfig{tile_m, tile_n, tile_k, stages, warps_m, warps_n};
        if (std::find(out.begin(), out.end(), candidate.tile) != out.end()) continue;
        try {
          validate(candidate);
          out.push_back(candidate.tile);
        } catch (const SpecError&) {
          // Statically impossible for this problem: pruned.
        }
      }
    }
  }
  return out;
}

std::int64_t token_bucket(std::int64_t routed_tokens, std::int64_t experts) {
  if (experts <= 0) throw SpecError("experts", std::to_string(experts), "a positive expert count");
  if (routed_tokens <= 0) return 1;
  const double per_expert = static_cast<double>(routed_tokens) / static_cast<double>(experts);
  const double exponent = std::round(std::log2(std::max(per_expert, 1.0)));
  return std::int64_t{1} << static_cast<int>(exponent);
}

std::int64_t nearest_bucket(const std::vector<std::int64_t>& tuned, std::int64_t bucket) {
  std::int64_t best = -1;
  double best_distance = 0;
  for (std::int64_t t : tuned) {
    if (t <= 0) continue;
    const double distance = std::abs(std::log2(static_cast<double>(t)) - std::log2(static_cast<double>(bucket)));
    if (best < 0 || distance < best_distance || (distance == best_distance && t > best)) {
      best = t;
      best_distance = distance;
    }
  }
  return best;
}

}  // namespace moejit
