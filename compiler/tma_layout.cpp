#include "compiler/tma_layout.hpp"

#include <algorithm>
#include <limits>
#include <string>

#include <fmt/format.h>

#include "compiler/spec_error.hpp"
#include "compiler/validate.hpp"

namespace moejit {
namespace {

constexpr std::uint32_t kSwizzleElements = 64;   // 128 bytes of a 16-bit type

// The stored matrix of an operand whose tile is `tile_rows` x 64 (`k_major`: tile rows
// along M or N, 64 along K contiguous) or 64 x `tile_rows` (MN-major: tile rows contiguous),
// copied by `share` CTAs in equal parts (1: by one). The device's load_operand and
// load_operand_slice (templates/moejit/sm90/operand_copies.cuh) issue exactly these boxes.
TmaTensor operand(const char* name, std::int64_t rows, std::int64_t cols, std::int64_t ld, int element_bytes,
                  bool k_major, int tile_rows, int share = 1) {
  if (ld < cols) {
    throw SpecError(fmt::format("{}.ld", name), std::to_string(ld), fmt::format("at least {} (its columns)", cols));
  }
  if (ld * element_bytes % 16 != 0) {
    throw SpecError(fmt::format("{}.ld", name), std::to_string(ld),
                    fmt::format("a multiple of {} elements: TMA needs 16-byte row strides", 16 / element_bytes));
  }
  if (rows > std::numeric_limits<int>::max() || cols > std::numeric_limits<int>::max()) {
    throw SpecError(name, fmt::format("{} x {}", rows, cols), "at most 2^31-1 rows and columns (TMA coordinates are 32-bit)");
  }
  TmaTensor t;
  t.box_cols = kSwizzleElements;
  if (k_major) {
    t.box_rows = static_cast<std::uint32_t>(tile_rows / share);
  } else {
    // Whole chunks per CTA where they divide, else every chunk's share of the K rows.
    const int chunks = tile_rows / static_cast<int>(kSwizzleElements);
    const bool whole_chunks = chunks % share == 0;
    t.box_rows = whole_chunks ? kSwizzleElements : kSwizzleElements / static_cast<std::uint32_t>(share);
    t.box_chunks = static_cast<std::uint32_t>(whole_chunks ? chunks / share : 1);
  }
  t.rows = static_cast<std::uint64_t>(std::max<std::int64_t>(rows, t.box_rows));
  t.cols = static_cast<std::uint64_t>(std::max<std::int64_t>(cols, t.box_cols));
  t.row_bytes = static_cast<std::uint64_t>(std::max<std::int64_t>(ld, t.cols)) * element_bytes;
  // The chunked view reads whole chunks: a partial last chunk would read past the row
  // instead of zeros. Every MN-major extent of the family is a multiple of its tile's
  // (validate), and tiles are multiples of 64 there.
  if (t.box_chunks != 0 && t.cols % kSwizzleElements != 0) {
    throw SpecError(fmt::format("{}.columns", name), std::to_string(cols),
                    fmt::format("a multiple of {} for an MN-major operand (its tiles' 64-column chunks)",
                                kSwizzleElements));
  }
  return t;
}

// C, stored by each consumer warpgroup as {64, 64} boxes.
TmaTensor output(std::int64_t rows, std::int64_t cols, std::int64_t ld, int element_bytes) {
  return operand("c", rows, cols, ld, element_bytes, true, kSwizzleElements);
}

}  // namespace

TmaLayout tma_layout(const KernelSpec& s, const SparseShape& sparse, std::int64_t lda, std::int64_t ldb,
                     std::int64_t ldc) {
  const int b = s.block_size;
  const int e = dtype_bytes(s.dtype);
  const TileConfig& t = s.tile;
  const std::int64_t sparse_rows = sparse.nnz * b;
  const std::int64_t dyn_rows = sparse.block_rows * b;   // the sparse operand's rows
  TmaLayout out;
  switch (s.op) {
    default:
      throw SpecError("op", std::string(op_name(s.op)), "a block-sparse product (routing kernels use no TMA)");
    case OpKind::sdd: {
      const std::int64_t m = dyn_rows, n = s.n, k = s.k;
      // A pair of blocks of one block column loads each block's A rows with a box of its
      // own; a pair of one block row each block's B columns.
      const int a_rows = sdd_block_pairs(s) ? b : t.tile_m;
      const int b_cols = sdd_row_pairs(s) ? b : t.tile_n;
      out.a = s.trans_a ? operand("a", k, m, lda, e, false, a_rows) : operand("a", m, k, lda, e, true, a_rows);
      out.b = s.trans_b ? operand("b", n, k, ldb, e, true, b_cols) : operand("b", k, n, ldb, e, false, b_cols);
      out.c = output(sparse_rows, b, b, e);
      break;
    }
    case OpKind::dsd: {
      const std::int64_t m = s.trans_a ? s.m : dyn_rows;
      const std::int64_t k = s.trans_a ? dyn_rows : s.k;
      const std::int64_t n = s.n;
      // A cluster's CTAs share the A tile, each copying 1/cluster of it (validate: whole
      // 8-row swizzle atoms) into all of them by multicast: a box of that share. Along M,
      // they share the B tile the same way.
      out.a = operand("a", sparse_rows, b, b, e, !s.trans_a, t.tile_m, t.cluster);
      out.b = s.trans_b ? operand("b", n, k, ldb, e, true, t.tile_n, t.cluster_m)
                        : operand("b", k, n, ldb, e, false, t.tile_n, t.cluster_m);
      out.c = output(m, n, ldc, e);
      break;
    }
    case OpKind::dds: {
      const std::int64_t m = s.m;
      const std::int64_t k = s.trans_b ? s.k : dyn_rows;
      const std::int64_t n = s.trans_b ? dyn_rows : s.n;
      out.a = s.trans_a ? operand("a", k, m, lda, e, false, t.tile_m) : operand("a", m, k, lda, e, true, t.tile_m);
      out.b = operand("b", sparse_rows, b, b, e, s.trans_b, t.tile_n);
      out.c = output(m, n, ldc, e);
      break;
    }
  }
  return out;
}

}  // namespace moejit
