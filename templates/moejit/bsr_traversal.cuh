// Where one thread block of a block-sparse product reads and writes. A traversal maps the
// block's index to its C tile and, for each step of the reduction, to the A and B tiles
// to multiply: through the topology where an operand is sparse, by plain strides where
// it is dense. The mainloop (bsr_gemm_sm80.cuh) is the same for every op.
//
// Every traversal provides:
//   kAKMajor / kBKMajor   whether K is the contiguous dimension of the A / B tiles
//   lda, ldb, ldc         stored-row distances of the tiles it hands out
//   num_k_tiles           reduction steps of this thread block (0 for an empty sparse row)
//   a_tile(kt), b_tile(kt), c   pointers to logical element (0, 0) of each tile
// The host computes the grid with the same arithmetic: compiler/launch_geometry.cpp.
#pragma once

#include "moejit/bsr_gemm_params.h"
#include "moejit/debug_checks.cuh"
#include "moejit/op_kind.h"

namespace moejit {

using storage_t = unsigned short;

template <OpKind kOp, bool kTransA, bool kTransB, int kBlock, long long kM, long long kN, long long kK, int kTileM,
          int kTileN, int kTileK>
struct BsrTraversal;

// sdd: C (sparse, M x N) = A (M x K) x B (K x N). One thread block per (nonzero block,
// sub-tile of that block); K is fixed, so every block runs the same K loop.
template <bool kTransA, bool kTransB, int kBlock, long long kM, long long kN, long long kK, int kTileM, int kTileN,
          int kTileK>
struct BsrTraversal<OpKind::sdd, kTransA, kTransB, kBlock, kM, kN, kK, kTileM, kTileN, kTileK> {
  static constexpr bool kAKMajor = !kTransA;
  static constexpr bool kBKMajor = kTransB;
  const storage_t* a;
  const storage_t* b;
  storage_t* c;
  long long lda, ldb;
  static constexpr long long ldc = kBlock;
  int num_k_tiles;

  __device__ BsrTraversal(const BsrGemmParams& p, int tile) {
    constexpr int kSubM = kBlock / kTileM;
    constexpr int kSubN = kBlock / kTileN;
    const int block = tile / (kSubM * kSubN);
    const int sub = tile % (kSubM * kSubN);
    const int sub_m = sub / kSubN;
    const int sub_n = sub % kSubN;
    MOEJIT_CHECK(block < p.nnz);
    MOEJIT_CHECK(p.row_indices[block] >= 0 && p.row_indices[block] < p.block_rows);
    MOEJIT_CHECK(p.column_indices[block] >= 0 && p.column_indices[block] < p.block_cols);
    const long long row0 = static_cast<long long>(p.row_indices[block]) * kBlock + sub_m * kTileM;
    const long long col0 = static_cast<long long>(p.column_indices[block]) * kBlock + sub_n * kTileN;
    lda = p.lda;
    ldb = p.ldb;
    a = static_cast<const storage_t*>(p.a) + (kTransA ? row0 : row0 * lda);
    b = static_cast<const storage_t*>(p.b) + (kTransB ? col0 * ldb : col0);
    c = static_cast<storage_t*>(p.c) + static_cast<long long>(block) * kBlock * kBlock +
        sub_m * kTileM * kBlock + sub_n * kTileN;
    num_k_tiles = static_cast<int>(kK / kTileK);
  }
  // Whether thread block `tile` has a live sparse block to compute (see BsrGemmParams).
  // The kernel writes zeros to a block past the live count (so every output element is
  // defined) on a path of its own: a run-time reduction length here would cost the
  // mainloop registers (255 and spills for sdd nn, measured).
  __device__ static bool live(const BsrGemmParams& p, int tile) {
    constexpr int kSubTiles = (kBlock / kTileM) * (kBlock / kTileN);
    return p.live_nnz == nullptr || tile / kSubTiles < *p.live_nnz;
  }
  __device__ const storage_t* a_tile(int kt) const {
    const long long k0 = static_cast<long long>(kt) * kTileK;
    return a + (kTransA ? k0 * lda : k0);
  }
  __device__ const storage_t* b_tile(int kt) const {
    const long long k0 = static_cast<long long>(kt) * kTileK;
    return b + (kTransB ? k0 : k0 * ldb);
  }
};

// dsd: C (dense, M x N) = A (sparse) x B (dense K x N). A thread block owns a tile_m slice
// of one block row of op(A) and reduces over that row's nonzero blocks: the row-major
// metadata for A, the column-major (transposed) metadata for A^T.
template <bool kTransA, bool kTransB, int kBlock, long long kM, long long kN, long long kK, int kTileM, int kTileN,
          int kTileK>
struct BsrTraversal<OpKind::dsd, kTransA, kTransB, kBlock, kM, kN, kK, kTileM, kTileN, kTileK> {
  static constexpr bool kAKMajor = !kTransA;   // a block of A^T is a stored block read column-wise
  static constexpr bool kBKMajor = kTransB;
  static constexpr int kKTilesPerBlock = kBlock / kTileK;
  const BsrGemmParams* params;
  const storage_t* blocks;
  const storage_t* b;
  storage_t* c;
  static constexpr long long lda = kBlock;
  long long ldb, ldc;
  int first, sub_m, num_k_tiles;

  __device__ BsrTraversal(const BsrGemmParams& p, int tile) : params(&p) {
    constexpr int kTilesN = static_cast<int>(kN / kTileN);
    constexpr int kSubM = kBlock / kTileM;
    const int tile_row = tile / kTilesN;
    const int tile_col = tile % kTilesN;
    const int block_row = tile_row / kSubM;
    sub_m = tile_row % kSubM;
    const int* offsets = kTransA ? p.offsets_t : p.offsets;
    MOEJIT_CHECK(block_row < (kTransA ? p.block_cols : p.block_rows));
    first = offsets[block_row];
    MOEJIT_CHECK(first >= 0 && first <= offsets[block_row + 1] && offsets[block_row + 1] <= p.nnz);
    num_k_tiles = (offsets[block_row + 1] - first) * kKTilesPerBlock;
    blocks = static_cast<const storage_t*>(p.a);
    ldb = p.ldb;
    ldc = p.ldc;
    const long long col0 = static_cast<long long>(tile_col) * kTileN;
    b = static_cast<const storage_t*>(p.b) + (kTransB ? col0 * ldb : col0);
    c = static_cast<storage_t*>(p.c) + (static_cast<long long>(block_row) * kBlock + sub_m * kTileM) * ldc + col0;
  }
  __device__ int entry(int kt) const { return first + kt / kKTilesPerBlock; }
  __device__ int k_in_block(int kt) const { return (kt % kKTilesPerBlock) * kTileK; }
  __device__ const storage_t* a_tile(int kt) const {
    const int j = entry(kt);
    const long long stored = kTransA ? params->block_offsets_t[j] : j;
    MOEJIT_CHECK(stored >= 0 && stored < params->nnz);
    const storage_t* block = blocks + stored * kBlock * kBlock;
    return kTransA ? block + k_in_block(kt) * kBlock + sub_m * kTileM : block + sub_m * kTileM * kBlock + k_in_block(kt);
  }
  __device__ const storage_t* b_tile(int kt) const {
    const int j = entry(kt);
    const long long k0 =
        static_cast<long long>(kTransA ? params->column_indices_t[j] : params->column_indices[j]) * kBlock +
        k_in_block(kt);
    return b + (kTransB ? k0 : k0 * ldb);
  }
};

// dds: C (dense, M x N) = A (dense M x K) x B (sparse). A thread block owns a tile_n slice
// of one block column of op(B) and reduces over that column's nonzero blocks: the
// column-major metadata for B, the row-major metadata for B^T.
template <bool kTransA, bool kTransB, int kBlock, long long kM, long long kN, long long kK, int kTileM, int kTileN,
          int kTileK>
struct BsrTraversal<OpKind::dds, kTransA, kTransB, kBlock, kM, kN, kK, kTileM, kTileN, kTileK> {
  static constexpr bool kAKMajor = !kTransA;
  static constexpr bool kBKMajor = kTransB;   // a block of B^T is a stored block read row-wise
  static constexpr int kKTilesPerBlock = kBlock / kTileK;
  const BsrGemmParams* params;
  const storage_t* a;
  const storage_t* blocks;
  storage_t* c;
  long long lda, ldc;
  static constexpr long long ldb = kBlock;
  int first, sub_n, num_k_tiles;

  __device__ BsrTraversal(const BsrGemmParams& p, int tile) : params(&p) {
    constexpr int kTilesM = static_cast<int>(kM / kTileM);
    constexpr int kSubN = kBlock / kTileN;
    // Consecutive thread blocks walk down M for one column slice, so they share B's
    // sparse column (and its metadata) while it is hot in L2.
    const int tile_col = tile / kTilesM;
    const int tile_row = tile % kTilesM;
    const int block_col = tile_col / kSubN;
    sub_n = tile_col % kSubN;
    const int* offsets = kTransB ? p.offsets : p.offsets_t;
    MOEJIT_CHECK(block_col < (kTransB ? p.block_rows : p.block_cols));
    first = offsets[block_col];
    MOEJIT_CHECK(first >= 0 && first <= offsets[block_col + 1] && offsets[block_col + 1] <= p.nnz);
    num_k_tiles = (offsets[block_col + 1] - first) * kKTilesPerBlock;
    blocks = static_cast<const storage_t*>(p.b);
    lda = p.lda;
    ldc = p.ldc;
    const long long row0 = static_cast<long long>(tile_row) * kTileM;
    a = static_cast<const storage_t*>(p.a) + (kTransA ? row0 : row0 * lda);
    c = static_cast<storage_t*>(p.c) + row0 * ldc + static_cast<long long>(block_col) * kBlock + sub_n * kTileN;
  }
  __device__ int entry(int kt) const { return first + kt / kKTilesPerBlock; }
  __device__ int k_in_block(int kt) const { return (kt % kKTilesPerBlock) * kTileK; }
  __device__ const storage_t* a_tile(int kt) const {
    const int j = entry(kt);
    const long long k0 =
        static_cast<long long>(kTransB ? params->column_indices[j] : params->column_indices_t[j]) * kBlock +
        k_in_block(kt);
    return a + (kTransA ? k0 * lda : k0);
  }
  __device__ const storage_t* b_tile(int kt) const {
    const int j = entry(kt);
    const long long stored = kTransB ? j : params->block_offsets_t[j];
    MOEJIT_CHECK(stored >= 0 && stored < params->nnz);
    const storage_t* block = blocks + stored * kBlock * kBlock;
    return kTransB ? block + sub_n * kTileN * kBlock + k_in_block(kt) : block + k_in_block(kt) * kBlock + sub_n * kTileN;
  }
};

}  // namespace moejit
