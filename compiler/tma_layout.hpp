// How the wgmma family's kernel (templates/moejit/bsr_gemm_sm90.cuh) sees its operands
// through the tensor memory accelerator: each operand as a 2-D tensor of stored rows and
// the box one TMA copy moves. The runtime encodes these as tensor maps at launch
// (runtime/tensor_map.cpp); this half needs no GPU, so it is tested on its own.
#pragma once

#include <cstdint>

#include "compiler/kernel_spec.hpp"
#include "compiler/launch_geometry.hpp"

namespace moejit {

struct TmaTensor {
  std::uint64_t rows = 0;        // outer dimension, elements
  std::uint64_t cols = 0;        // contiguous dimension, elements
  std::uint64_t row_bytes = 0;   // distance between consecutive rows
  std::uint32_t box_cols = 0;    // one copy: box_cols x box_rows elements
  std::uint32_t box_rows = 0;
  // 0: a 2-D tensor {cols, rows}. Otherwise a 3-D one, {64, rows, cols / 64}: the third
  // dimension steps 64 columns (128 bytes) at a time, so one copy moves box_chunks
  // 64-column chunks of box_rows rows, each landing as its own block of rows (an MN-major
  // operand tile, which the swizzle cuts into 64-column chunks).
  std::uint32_t box_chunks = 0;
  friend bool operator==(const TmaTensor&, const TmaTensor&) = default;
};

// A, B and C of one call. A dense operand is the matrix it views (the underlying one for
// a transposed view, rows `ld` elements apart); a sparse operand is its blocks stacked into
// [nnz * block, block]. All tensors use the 128-byte swizzle, so no box is wider than 64
// 16-bit elements: a K-major operand tile is one box of {64, tile rows}, an MN-major one
// one box of tile/64 chunks of {64, 64} (a 3-D tensor, see box_chunks), and C is stored
// in {64, 64} boxes by each consumer warpgroup. A dsd tile with clusters copies its shared
// tile (A along N, TileConfig::cluster; B along M, cluster_m) in shares, one per CTA,
// multicast to all: a box of {64, tile rows / cluster} (K-major), of the chunks / cluster
// chunks (MN-major), or of {64, 64 / cluster} rows of one chunk (MN-major with fewer
// chunks than CTAs, copied chunk by chunk).
//
// An extent of 0 (an empty topology) becomes one box: TMA rejects empty tensors, and a
// product with an empty extent never copies from that operand (no reduction steps, or no
// tiles). Throws SpecError naming the operand when TMA cannot address it: a stride that is
// not a multiple of 16 bytes, or more rows than 32-bit coordinates reach.
struct TmaLayout {
  TmaTensor a;
  TmaTensor b;
  TmaTensor c;
};

TmaLayout tma_layout(const KernelSpec& spec, const SparseShape& sparse, std::int64_t lda, std::int64_t ldb,
                     std::int64_t ldc);

}  // namespace moejit
