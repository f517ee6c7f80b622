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

// The stored matrix of an operand tile that is K-major (one box of {64, tile}) or
// MN-major (boxes of {64, 64}).
TmaTensor operand(const char* name, std::int64_t rows, std::int64_t cols, std::int64_t ld, int element_bytes,
                  bool k_major, int tile) {
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
  t.box_rows = k_major ? static_cast<std::uint32_t>(tile) : kSwizzleElements;
  t.rows = static_cast<std::uint64_t>(std::max<std::int64_t>(rows, t.box_rows));
  t.cols = static_cast<std::uint64_t>(std::max<std::int64_t>(cols, t.box_cols));
  t.row_bytes = static_cast<std::uint64_t>(std::max<std::int64_t>(ld, t.cols)) * element_bytes;
  return t;
}

// C, stored by each consumer warpgroup as {64, 64} boxes.
TmaTensor output(std::int64_t rows, std::int64_t cols, std::int64_t ld, int element_bytes) {
  return operand("c", rows, cols, ld, element_bytes, false, 0);
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
      // A pair of blocks loads each block's A rows with a box of its own.
      const int a_rows = sdd_block_pairs(s) ? b : t.tile_m;
      out.a = s.trans_a ? operand("a", k, m, lda, e, false, a_rows) : operand("a", m, k, lda, e, true, a_rows);
      out.b = s.trans_b ? operand("b", n, k, ldb, e, true, t.tile_n) : operand("b", k, n, ldb, e, false, t.tile_n);
      out.c = output(sparse_rows, b, b, e);
      break;
    }
    case OpKind::dsd: {
      const std::int64_t m = s.trans_a ? s.m : dyn_rows;
      const std::int64_t k = s.trans_a ? dyn_rows : s.k;
      const std::int64_t n = s.n;
      out.a = operand("a", sparse_rows, b, b, e, !s.trans_a, t.tile_m);
      out.b = s.trans_b ? operand("b", n, k, ldb, e, true, t.tile_n) : operand("b", k, n, ldb, e, false, t.tile_n);
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
