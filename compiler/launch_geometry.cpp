#include "compiler/launch_geometry.hpp"

#include <algorithm>
#include <limits>
#include <string>

#include <fmt/format.h>

#include "compiler/spec_error.hpp"
#include "compiler/validate.hpp"

namespace moejit {
namespace {

void require_extent(const char* what, std::int64_t blocks, int block, std::int64_t expected, const char* extent) {
  if (blocks * block != expected) {
    throw SpecError(what, std::to_string(blocks),
                    fmt::format("{} blocks of {} ({} = {} of the compiled kernel)", expected / block, block, extent,
                                expected));
  }
}

}  // namespace

LaunchGeometry launch_geometry(const KernelSpec& s, const SparseShape& sparse) {
  const int b = s.block_size;
  const TileConfig& t = s.tile;
  if (sparse.nnz < 0 || sparse.block_rows < 0 || sparse.block_cols < 0) {
    throw SpecError("topology", fmt::format("nnz={} block_rows={} block_cols={}", sparse.nnz, sparse.block_rows,
                                            sparse.block_cols),
                    "non-negative sizes");
  }
  std::int64_t tiles = 0;
  switch (s.op) {
    default:
      throw SpecError("op", std::string(op_name(s.op)), "a block-sparse product (routing ops: routing_launch_geometry)");
    case OpKind::sdd:
      require_extent("topology.block_cols", sparse.block_cols, b, s.n, "n");
      if (sdd_block_pairs(s)) {
        // Pairs of blocks within each block column (the kernel counts them on the device,
        // from the column offsets and the live count): at most one odd block per nonempty
        // column, and the unused blocks past the live count in pairs of their own.
        tiles = sparse.nnz == 0 ? 0 : (sparse.nnz + std::min(sparse.block_cols, sparse.nnz) + 1) / 2;
      } else if (sdd_row_pairs(s)) {
        // Pairs of blocks within each block row: at most one odd block per nonempty row,
        // and the unused blocks past the live count in pairs of their own. The kernel
        // also walks empty slots (rows with fewer pairs than the most of any row), which
        // cost it no work: this counts the tiles that do, which sizes the persistent grid.
        tiles = sparse.nnz == 0 ? 0 : (sparse.nnz + std::min(sparse.block_rows, sparse.nnz) + 1) / 2;
        // The kernel numbers the slots it walks in an int: at most ceil(block_cols / 2)
        // pairs in each row, then the unused blocks in pairs.
        const std::int64_t walked = sparse.block_rows * ((sparse.block_cols + 1) / 2) + (sparse.nnz + 1) / 2;
        if (walked > std::numeric_limits<int>::max()) {
          throw SpecError("topology", fmt::format("block_rows={} block_cols={}", sparse.block_rows, sparse.block_cols),
                          fmt::format("block_rows x ceil(block_cols / 2) below 2^31 for tile {} (pairs of one "
                                      "block row): split the problem or use a tile of one block",
                                      t.text()));
        }
      } else {
        tiles = sparse.nnz * (b / t.tile_m) * (b / t.tile_n);
      }
      break;
    case OpKind::dsd: {
      require_extent("topology.block_cols", sparse.block_cols, b, s.trans_a ? s.m : s.k, s.trans_a ? "m" : "k");
      const std::int64_t rows = s.trans_a ? s.m : sparse.block_rows * b;
      // A cluster along M computes tile rows in pairs: an odd last row gets a partner that
      // computes nothing but keeps the pair's handshake (bsr_gemm_sm90.cuh).
      const std::int64_t tile_rows = rows / t.tile_m;
      tiles = (tile_rows + t.cluster_m - 1) / t.cluster_m * t.cluster_m * (s.n / t.tile_n);
      break;
    }
    case OpKind::dds: {
      require_extent("topology.block_cols", sparse.block_cols, b, s.trans_b ? s.k : s.n, s.trans_b ? "k" : "n");
      const std::int64_t cols = s.trans_b ? sparse.block_rows * b : s.n;
      tiles = s.m / t.tile_m * (cols / t.tile_n);
      break;
    }
  }
  if (tiles > std::numeric_limits<int>::max()) {
    throw SpecError("grid", std::to_string(tiles), "at most 2^31-1 thread blocks: split the problem");
  }
  return LaunchGeometry{tiles, s.threads(), s.shared_bytes()};
}

}  // namespace moejit
