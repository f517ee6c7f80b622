#include "compiler/validate.hpp"

#include <string>

#include <fmt/format.h>

#include "compiler/routing_spec.hpp"
#include "compiler/spec_error.hpp"

namespace moejit {
namespace {

bool power_of_two(int v) { return v > 0 && (v & (v - 1)) == 0; }

void require(bool ok, const char* field, auto value, const std::string& expected) {
  if (!ok) throw SpecError(field, fmt::format("{}", value), expected);
}

void require_multiple(const char* field, std::int64_t value, std::int64_t of, const char* of_name) {
  require(value % of == 0, field, value, fmt::format("a multiple of {} ({})", of_name, of));
}

void validate_extents(const KernelSpec& s) {
  const char dyn = dynamic_extent(s.op, s.trans_a, s.trans_b);
  const std::pair<char, std::int64_t> extents[] = {{'m', s.m}, {'n', s.n}, {'k', s.k}};
  for (auto [name, value] : extents) {
    const char field[2] = {name, 0};
    if (name == dyn) {
      require(value == kDynamic, field, value,
              fmt::format("dyn: for {} with trans={}{} the sparse operand's rows ({}) vary with the token count",
                          op_name(s.op), s.trans_a ? 't' : 'n', s.trans_b ? 't' : 'n', dyn));
    } else {
      require(value > 0, field, value == kDynamic ? std::string("dyn") : std::to_string(value),
              "a positive compile-time extent");
    }
  }
}

void validate_common_tile(const KernelSpec& s) {
  const TileConfig& t = s.tile;
  require(power_of_two(t.tile_m) && t.tile_m >= 16 && t.tile_m <= 256, "tile_m", t.tile_m,
          "a power of two from 16 to 256");
  require(power_of_two(t.tile_n) && t.tile_n >= 16 && t.tile_n <= 256, "tile_n", t.tile_n,
          "a power of two from 16 to 256");
  require(power_of_two(t.tile_k) && t.tile_k >= 16 && t.tile_k <= 128, "tile_k", t.tile_k,
          "a power of two from 16 to 128");
  require(t.stages >= 2 && t.stages <= 8, "stages", t.stages, "2 to 8");
  require(power_of_two(t.warps_m) && t.warps_m <= 8, "warps_m", t.warps_m, "1, 2, 4 or 8");
  require(power_of_two(t.warps_n) && t.warps_n <= 8, "warps_n", t.warps_n, "1, 2, 4 or 8");
  require(t.cluster == 1 || t.cluster == 2 || t.cluster == 4, "cluster", t.cluster,
          "1, 2 or 4 (CTAs per thread-block cluster, text suffix .c2 or .c4)");
  require(t.cluster_m == 1 || t.cluster_m == 2, "cluster_m", t.cluster_m,
          "1 or 2 (CTAs per thread-block cluster along M, text suffix .c2x1)");
}

void validate_mma_tile(const KernelSpec& s) {
  const TileConfig& t = s.tile;
  require(s.target.compute_capability() >= 80, "target", s.target.text(),
          "sm_80 or newer (the mma family needs bf16 tensor cores and cp.async)");
  require(t.warps_m * t.warps_n <= 16, "warps", t.warps_m * t.warps_n, "at most 16 warps (512 threads)");
  // ldmatrix.x4 loads 16x16 operand blocks, so each warp's share of C is whole 16x16 tiles.
  require(t.tile_m % (16 * t.warps_m) == 0, "warps_m", t.warps_m,
          fmt::format("a divisor of tile_m/16 ({}): each warp owns whole 16-row slices", t.tile_m / 16));
  require(t.tile_n % (16 * t.warps_n) == 0, "warps_n", t.warps_n,
          fmt::format("a divisor of tile_n/16 ({}): each warp owns whole 16-column slices", t.tile_n / 16));
  // More than 128 fp32 accumulators per thread leaves too few of the 255 registers for
  // operand fragments and addresses: the kernel would spill.
  require(t.accumulators_per_thread() <= 128, "tile", t.text(),
          fmt::format("at most 128 accumulators per thread (tile_m*tile_n/threads), got {}",
                      t.accumulators_per_thread()));
  require(!t.pingpong, "tile", t.text(), "no .pingpong for family=mma (a wgmma schedule)");
  require(t.cluster == 1, "cluster", t.cluster, "1 for family=mma (thread-block clusters are a wgmma schedule)");
  require(t.cluster_m == 1, "cluster_m", t.cluster_m,
          "1 for family=mma (thread-block clusters are a wgmma schedule)");
}

// The wgmma family (templates/moejit/bsr_gemm_sm90.cuh): Hopper's warpgroup instructions
// exist on sm_90a only, and the kernel's shared-memory layout fixes most of the tile. Two
// consumer warpgroups cooperate on one tile (64 rows each, or 128 each for a 256-row tile)
// or, with .pingpong, take turns on whole tiles of 64 or 128 rows; either way a
// warpgroup's accumulators (its rows x tile_n / 128 threads) must leave registers to spare.
void validate_wgmma_tile(const KernelSpec& s) {
  const TileConfig& t = s.tile;
  require(s.target.major == 9 && s.target.minor == 0 && s.target.arch_specific, "target", s.target.text(),
          "sm_90a for family=wgmma (wgmma and setmaxnreg exist on sm_90a only; use family=mma elsewhere)");
  require(t.tile_k == 64, "tile_k", t.tile_k,
          "64 for family=wgmma (one 128-byte swizzled row of 16-bit elements per stage)");
  if (t.pingpong) {
    require(t.tile_m == 64 || t.tile_m == 128, "tile_m", t.tile_m,
            "64 or 128 for family=wgmma with .pingpong (each consumer warpgroup owns a whole tile)");
  } else {
    require(t.tile_m == 64 || t.tile_m == 128 || t.tile_m == 256, "tile_m", t.tile_m,
            "64 or 128 for family=wgmma (one or two consumer warpgroups of 64 rows), or 256 (two of 128 rows)");
  }
  require(t.tile_n % 64 == 0 && t.tile_n <= 256, "tile_n", t.tile_n,
          "64, 128 or 256 for family=wgmma (wgmma n <= 256, in 64-element swizzle chunks)");
  const int warps = t.pingpong || t.tile_m >= 128 ? 8 : 4;
  require(t.warps_m == warps && t.warps_n == 1, "warps", fmt::format("{}x{}", t.warps_m, t.warps_n),
          t.pingpong ? std::string("8x1 for family=wgmma with .pingpong (two consumer warpgroups taking turns)")
                     : fmt::format("{}x1 for family=wgmma with tile_m={} (4 warps per consumer warpgroup of {} rows)",
                                   warps, t.tile_m, t.tile_m == 256 ? 128 : 64));
  const int accumulators = wgmma_warpgroup_rows(t) * t.tile_n / 128;
  require(accumulators <= 128, "tile", t.text(),
          fmt::format("at most 128 fp32 accumulators per consumer thread (its warpgroup's {} rows x tile_n / 128), "
                      "got {}",
                      wgmma_warpgroup_rows(t), accumulators));
}

void validate_tile(const KernelSpec& s) {
  validate_common_tile(s);
  if (s.family == KernelFamily::wgmma) {
    validate_wgmma_tile(s);
  } else {
    validate_mma_tile(s);
  }
  const int smem = s.shared_bytes();
  require(smem <= s.target.max_shared_bytes_per_block(), "tile", s.tile.text(),
          fmt::format("at most {} bytes of shared memory on {}, needs {}", s.target.max_shared_bytes_per_block(),
                      s.target.text(), smem));
}

// Only dsd's kernel shares a tile across a cluster: its A tile (a sparse block's rows),
// common to every tile of a tile row. sdd and dds would have to share a dense operand's
// tile by other coordinates, which their templates do not do.
void require_no_cluster(const KernelSpec& s) {
  require(s.tile.cluster == 1, "cluster", s.tile.cluster,
          fmt::format("1 for op={} (clusters share the sparse A tile of op=dsd only)", op_name(s.op)));
  require(s.tile.cluster_m == 1, "cluster_m", s.tile.cluster_m,
          fmt::format("1 for op={} (clusters along M share the dense B tile of op=dsd only)", op_name(s.op)));
}

// The CTAs of a cluster compute `cluster` N-adjacent tiles of one tile row, so a tile row
// must hold whole clusters; each copies tile_m / cluster rows of a K-major A tile (or its
// share of an MN-major one: see compiler/tma_layout.hpp) with TMA multicast, in whole
// 8-row atoms of the 128-byte swizzle.
//
// Along M (cluster_m = 2), the two CTAs compute tile rows 2i and 2i + 1 of one tile
// column and copy half of each B tile they share into both: the cooperative schedule (a
// pingpong warpgroup's turns would put different tiles of the pair side by side), and not
// together with a cluster along N. B's halves (K-major: tile_n / 2 rows; MN-major: half
// the 64-column chunks, or 32 K rows of a single one) are whole 8-row swizzle atoms for
// every wgmma tile_n.
void validate_dsd_cluster(const KernelSpec& s) {
  const TileConfig& t = s.tile;
  if (t.cluster_m != 1) {
    require(!t.pingpong, "cluster_m", t.cluster_m,
            "1 with .pingpong (the CTAs along M share B tile by tile, which takes the cooperative schedule)");
    require(t.cluster == 1, "cluster_m", t.cluster_m,
            fmt::format("1 with cluster={} (a cluster shares A along N or B along M, not both)", t.cluster));
  }
  if (t.cluster == 1) return;
  const std::int64_t tiles_n = s.n / t.tile_n;
  require(tiles_n % t.cluster == 0, "n", s.n,
          fmt::format("n / tile_n (= {}) a multiple of the cluster ({}): the tiles of a cluster lie in one tile row",
                      tiles_n, t.cluster));
  if (!s.trans_a) {
    require(t.tile_m % (8 * t.cluster) == 0, "tile_m", t.tile_m,
            fmt::format("a multiple of 8 x cluster ({}): each CTA of the cluster copies tile_m / cluster rows of "
                        "the K-major A tile, whole 8-row swizzle atoms",
                        8 * t.cluster));
  }
}

// An sdd tile of two blocks: `doubled` (tile_m or tile_n) is twice the block, which takes
// the cooperative schedule, and `other` is the block, so the pair is two whole blocks of
// one block `line` (column or row).
void validate_sdd_pair(const KernelSpec& s, const char* doubled, int doubled_value, const char* other,
                       int other_value, const char* line) {
  const int b = s.block_size;
  require(!s.tile.pingpong, doubled, doubled_value,
          fmt::format("a divisor of block ({}); twice the block pairs two blocks of a block {}, which takes the "
                      "cooperative schedule (no .pingpong)",
                      b, line));
  require(other_value == b, other, other_value,
          fmt::format("the block ({}) when {} = 2 x block pairs two blocks of a block {}", b, doubled, line));
}

// The tile must fit the block structure: a thread block never straddles two sparse blocks
// along a sparse dimension, so its tile there must divide the block size.
void validate_op_fit(const KernelSpec& s) {
  const TileConfig& t = s.tile;
  const int b = s.block_size;
  switch (s.op) {
    case OpKind::sdd:
      if (sdd_block_pairs(s)) {
        // Two blocks of one block column share the B tile (sm90/tile_walks.cuh).
        validate_sdd_pair(s, "tile_m", t.tile_m, "tile_n", t.tile_n, "column");
      } else if (sdd_row_pairs(s)) {
        // Two blocks of one block row share the A tile (sm90/tile_walks.cuh).
        validate_sdd_pair(s, "tile_n", t.tile_n, "tile_m", t.tile_m, "row");
      } else {
        require(b % t.tile_m == 0, "tile_m", t.tile_m,
                fmt::format("a divisor of block ({}), or twice it with family=wgmma (a pair of blocks)", b));
        require(b % t.tile_n == 0, "tile_n", t.tile_n,
                fmt::format("a divisor of block ({}), or twice it with family=wgmma (a pair of blocks)", b));
      }
      require_multiple("k", s.k, t.tile_k, "tile_k");
      require_multiple("n", s.n, b, "block");
      require_no_cluster(s);
      break;
    case OpKind::dsd:
      require(b % t.tile_m == 0, "tile_m", t.tile_m, fmt::format("a divisor of block ({})", b));
      require(b % t.tile_k == 0, "tile_k", t.tile_k, fmt::format("a divisor of block ({})", b));
      require_multiple("n", s.n, t.tile_n, "tile_n");
      if (s.trans_a) require_multiple("m", s.m, b, "block");
      else require_multiple("k", s.k, b, "block");
      validate_dsd_cluster(s);
      break;
    default:   // routing ops are validated by validate_routing
      break;
    case OpKind::dds:
      require(b % t.tile_n == 0, "tile_n", t.tile_n, fmt::format("a divisor of block ({})", b));
      require(b % t.tile_k == 0, "tile_k", t.tile_k, fmt::format("a divisor of block ({})", b));
      require_multiple("m", s.m, t.tile_m, "tile_m");
      if (s.trans_b) require_multiple("k", s.k, b, "block");
      else require_multiple("n", s.n, b, "block");
      require_no_cluster(s);
      break;
  }
}

}  // namespace

bool sdd_block_pairs(const KernelSpec& s) {
  return s.op == OpKind::sdd && s.family == KernelFamily::wgmma && s.tile.tile_m == 2 * s.block_size;
}

bool sdd_row_pairs(const KernelSpec& s) {
  return s.op == OpKind::sdd && s.family == KernelFamily::wgmma && s.tile.tile_n == 2 * s.block_size;
}

void validate(const KernelSpec& s) {
  if (is_routing(s.op)) return validate_routing(s);
  require(s.block_size == 64 || s.block_size == 128, "block", s.block_size, "64 or 128");
  validate_extents(s);
  validate_tile(s);
  validate_op_fit(s);
}

}  // namespace moejit
