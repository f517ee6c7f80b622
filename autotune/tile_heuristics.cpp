#include "autotune/tile_heuristics.hpp"

#include <algorithm>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "compiler/spec_error.hpp"
#include "compiler/validate.hpp"

namespace moejit {
namespace {

// The first of `candidates` (in order of preference) that `spec` validates with; where
// none does, validate's error for the last one (the smallest), which says what does not fit.
TileConfig first_valid_tile(KernelSpec spec, const std::vector<TileConfig>& candidates) {
  for (const TileConfig& tile : candidates) {
    spec.tile = tile;
    try {
      validate(spec);
      return tile;
    } catch (const SpecError&) {
      // The next candidate is smaller.
    }
  }
  validate(spec);   // throws the reason nothing fits
  return spec.tile;
}

// The largest power of two <= cap that divides `extent` (at least 16), or 0.
int largest_dividing_tile(std::int64_t extent, int cap) {
  for (int t = cap; t >= 16; t /= 2) {
    if (extent % t == 0) return t;
  }
  return 0;
}

// wgmma family (H200): 128-row tiles give both consumer warpgroups 64 rows; N as wide as
// the op allows (256 where the dense N divides: each m64n256k16 reads 10 KB of shared
// memory for 0.5 MFLOP, m64n128k16 6 KB for 0.26), a 64 block shrinks the tile along the
// sparse dimensions. Then the deepest ring of at most 5 stages that fits 227 KB next to
// the C buffer (two 64-column chunks of C): 128x128 gets 5 stages (32 KB each), 128x256 4
// (48 KB each; on the H200 1-2% faster than the 3 that fit next to a whole C tile).
// sdd with blocks of 128 takes two blocks of one block row (128x256, a row pair): on the
// H200 (2026-11-29, interleaved against dense) 1.01 and 1.05 of dense at the mixtral-8x7b
// and qwen3-30b-a3b shapes, where one block's 128x128 tile reached 0.90 and 0.98 (0.96
// and 0.98 with the pingpong schedule). Blocks of 64 keep one block per tile (their row
// pairs, 64x128 with one consumer warpgroup, were not measured).
TileConfig heuristic_wgmma_tile(const KernelSpec& spec) {
  const int b = spec.block_size;
  int tile_m = 128, tile_n = 128;
  switch (spec.op) {
    case OpKind::sdd:
      tile_m = std::min(128, b);
      tile_n = b == 128 ? 256 : b;
      break;
    case OpKind::dsd:
      tile_m = std::min(128, b);
      tile_n = spec.n % 256 == 0 ? 256 : spec.n % 128 == 0 ? 128 : 64;
      break;
    case OpKind::dds:
      tile_m = spec.m % 128 == 0 ? 128 : 64;
      tile_n = std::min(128, b);
      break;
    default:
      throw SpecError("op", std::string(op_name(spec.op)), "a block-sparse product: routing kernels have no tile");
  }
  std::vector<TileConfig> candidates;
  for (int stages = 5; stages >= 2; --stages) candidates.push_back({tile_m, tile_n, 64, stages, 4 * (tile_m / 64), 1});
  return first_valid_tile(spec, candidates);
}

TileConfig heuristic_mma_tile(const KernelSpec& spec) {
  const int b = spec.block_size;
  // 128x128 C tiles with 2x2 warps (64x64 per warp) keep the tensor cores busy on every
  // sm_80+ part; a 64 block shrinks the tile along the sparse dimensions. K = 32 per stage
  // with 4 stages hides global-memory latency in 64 KB of shared memory.
  int tile_m = 128, tile_n = 128;
  switch (spec.op) {
    case OpKind::sdd:
      tile_m = std::min(128, b);
      tile_n = std::min(128, b);
      break;
    case OpKind::dsd:
      tile_m = std::min(128, b);
      tile_n = largest_dividing_tile(spec.n, 128);
      break;
    case OpKind::dds:
      tile_m = largest_dividing_tile(spec.m, 128);
      tile_n = std::min(128, b);
      break;
    default:
      throw SpecError("op", std::string(op_name(spec.op)), "a block-sparse product: routing kernels have no tile");
  }
  if (tile_m == 0 || tile_n == 0) {
    throw SpecError(tile_m == 0 ? "m" : "n", std::to_string(tile_m == 0 ? spec.m : spec.n),
                    "an extent divisible by 16");
  }
  // (tile_k, stages) in order of preference. Measured on an H200 (2026-11-28, bf16, block
  // 128, 2x2 warps): sdd ran 20% faster with 64 x 3 than with 32 x 4 at the mixtral-8x7b
  // and qwen3-30b-a3b shapes (311 -> 376 and 358 -> 414 TFLOP/s); dsd was within noise
  // of 32 x 4 or slower with 64, so it keeps 32 x 4.
  std::vector<std::pair<int, int>> depths = {{32, 4}, {32, 3}, {32, 2}, {16, 4}, {16, 2}};
  if (spec.op == OpKind::sdd) depths.insert(depths.begin(), {64, 3});
  std::vector<TileConfig> candidates;
  for (auto [tile_k, stages] : depths) {
    candidates.push_back({tile_m, tile_n, tile_k, stages, tile_m >= 64 ? 2 : 1, tile_n >= 64 ? 2 : 1});
  }
  return first_valid_tile(spec, candidates);
}

}  // namespace

TileConfig heuristic_tile_config(const KernelSpec& spec) {
  return spec.family == KernelFamily::wgmma ? heuristic_wgmma_tile(spec) : heuristic_mma_tile(spec);
}

KernelSpec with_heuristic_tile(KernelSpec spec) {
  spec.tile = heuristic_tile_config(spec);
  return spec;
}

KernelFamily heuristic_family(const KernelSpec& spec) {
  const Target& t = spec.target;
  if (t.major == 9 && t.minor == 0 && t.arch_specific) {
    KernelSpec candidate = spec;
    candidate.family = KernelFamily::wgmma;
    try {
      heuristic_wgmma_tile(candidate);
      return KernelFamily::wgmma;
    } catch (const SpecError&) {
      // No wgmma tile fits these extents (say, n not a multiple of 64): mma does.
    }
  }
  return KernelFamily::mma;
}

KernelSpec with_heuristic_implementation(KernelSpec spec) {
  spec.family = heuristic_family(spec);
  spec.tile = heuristic_tile_config(spec);
  return spec;
}

}  // namespace moejit
