// Where one thread block of the wgmma family reads and writes, as TMA coordinates: the
// counterpart of bsr_traversal.cuh for kernels that copy tiles with tensor maps instead
// of pointers. Each operand is a matrix {x = column (contiguous), y = row} (see
// bsr_gemm_sm90_params.h); a coordinate names the stored element at the tile's logical
// (0, 0) corner. (The copies of MN-major tiles turn x into 64-column chunks of a 3-D
// tensor map: sm90/operand_copies.cuh, load_operand.)
//
// Every traversal provides:
//   kAKMajor / kBKMajor   whether K is the contiguous dimension of the stored A / B tiles
//   num_k_tiles           reduction steps of this thread block (0 for an empty sparse row,
//                         for an sdd block past the live count: BsrGemmParams::live_nnz,
//                         and for a dsd A^T column whose only block has no live rows:
//                         BsrGemmParams::live_rows; either way the C tile is written, with
//                         zeros); dsd also gives last_step_k16, the K slices of 16 of the
//                         last step that hold live rows
//   a(p, kt), b(p, kt)    coordinates of the A and B tiles of step kt (p: the kernel's
//                         parameters, which hold the topology that dsd and dds look up)
//   c                     coordinates of the C tile
//   num_tiles(p)          C tiles of the product (the persistent grid strides over them)
// The host counts the tiles with the same arithmetic: compiler/launch_geometry.cpp. The
// order in which a kernel walks them is sm90/tile_walks.cuh's (which also has the pairs of
// sdd blocks, counted on the device).
#pragma once

#include "moejit/bsr_gemm_params.h"
#include "moejit/debug_checks.cuh"
#include "moejit/op_kind.h"
#include "moejit/ptx.cuh"

namespace moejit {

struct TileCoord {
  int x;
  int y;
};

// Coordinates of an operand tile whose logical corner is (mn0, k0) in its M x K (A) or
// K x N (B) view: a K-major tile is stored with rows along M/N, an MN-major one with rows
// along K.
template <bool kKMajor>
__device__ __forceinline__ TileCoord operand_coord(long long mn0, long long k0) {
  return kKMajor ? TileCoord{static_cast<int>(k0), static_cast<int>(mn0)}
                 : TileCoord{static_cast<int>(mn0), static_cast<int>(k0)};
}

template <OpKind kOp, bool kTransA, bool kTransB, int kBlock, long long kM, long long kN, long long kK, int kTileM,
          int kTileN, int kTileK>
struct BsrTileCoords;

// sdd: C (sparse) = A x B, one thread block per (nonzero block, sub-tile). Tiles go in
// the topology's column-major order when it can: consecutive thread blocks then share
// B's columns (for the MoE topology, one expert's weight slice, which stays in L2 while
// all of that expert's token blocks use it) and walk down the expert's token rows. With a
// device-side live count (live_nnz), a block is live when its stored (row-major) index is
// below the count, in either order: every stored block appears once in the column-major
// order, whose unused entries the routing kernels point at themselves.
template <bool kTransA, bool kTransB, int kBlock, long long kM, long long kN, long long kK, int kTileM, int kTileN,
          int kTileK>
struct BsrTileCoords<OpKind::sdd, kTransA, kTransB, kBlock, kM, kN, kK, kTileM, kTileN, kTileK> {
  static constexpr bool kAKMajor = !kTransA;
  static constexpr bool kBKMajor = kTransB;
  static constexpr int kSubM = kBlock / kTileM;
  static constexpr int kSubN = kBlock / kTileN;
  long long m0, n0;
  TileCoord c;
  int num_k_tiles;

  __device__ static bool column_order(const BsrGemmParams& p) { return p.block_offsets_t != nullptr; }
  __device__ static int stored_block(const BsrGemmParams& p, int tile) {
    const int j = tile / (kSubM * kSubN);
    return column_order(p) ? p.block_offsets_t[j] : j;
  }
  __device__ static bool live(const BsrGemmParams& p, int tile) {
    return p.live_nnz == nullptr || stored_block(p, tile) < *p.live_nnz;
  }
  // Unset: the persistent kernels' placeholder for a next tile that does not exist.
  BsrTileCoords() = default;
  __device__ static int num_tiles(const BsrGemmParams& p) { return p.nnz * kSubM * kSubN; }
  __device__ BsrTileCoords(const BsrGemmParams& p, int tile) {
    const int sub = tile % (kSubM * kSubN);
    // In column order the sub-tiles of a block go down its rows first (sub_m fastest), so
    // neighbours share the B sub-tile too.
    const int sub_m = column_order(p) ? sub % kSubM : sub / kSubN;
    const int sub_n = column_order(p) ? sub / kSubM : sub % kSubN;
    const int block = stored_block(p, tile);
    MOEJIT_CHECK(block >= 0 && block < p.nnz);
    MOEJIT_CHECK(p.row_indices[block] >= 0 && p.row_indices[block] < p.block_rows);
    MOEJIT_CHECK(p.column_indices[block] >= 0 && p.column_indices[block] < p.block_cols);
    m0 = static_cast<long long>(p.row_indices[block]) * kBlock + sub_m * kTileM;
    n0 = static_cast<long long>(p.column_indices[block]) * kBlock + sub_n * kTileN;
    c = TileCoord{sub_n * kTileN, block * kBlock + sub_m * kTileM};
    num_k_tiles = live(p, tile) ? static_cast<int>(kK / kTileK) : 0;
  }
  __device__ TileCoord a(const BsrGemmParams&, int kt) const {
    return operand_coord<kAKMajor>(m0, static_cast<long long>(kt) * kTileK);
  }
  __device__ TileCoord b(const BsrGemmParams&, int kt) const {
    return operand_coord<kBKMajor>(n0, static_cast<long long>(kt) * kTileK);
  }
};

// dsd: C (dense) = A (sparse) x B. A thread block owns a tile_m slice of one block row of
// op(A) and a tile_n slice of C's columns, and reduces over that row's nonzero blocks:
// the row-major metadata for A, the column-major (transposed) metadata for A^T.
// Tile t is tile row t / tiles_n, column t % tiles_n; the kernel walks them in that
// order for A^T and in windows of rows for A (RowWindowTiles). For A^T the reduction runs
// over A's rows: with BsrGemmParams::live_rows it ends at the last block's last step that
// holds rows in use, and that step needs only the wgmma K slices (16 rows each) up to the
// last row in use (last_step_k16): an MoE weight gradient reduces over one expert's
// tokens, whose last block is padded.
template <bool kTransA, bool kTransB, int kBlock, long long kM, long long kN, long long kK, int kTileM, int kTileN,
          int kTileK>
struct BsrTileCoords<OpKind::dsd, kTransA, kTransB, kBlock, kM, kN, kK, kTileM, kTileN, kTileK> {
  // A block of A^T is a stored block read column-wise: M is its contiguous dimension.
  static constexpr bool kAKMajor = !kTransA;
  static constexpr bool kBKMajor = kTransB;
  static constexpr int kKTilesPerBlock = kBlock / kTileK;
  int first, sub_m, num_k_tiles;
  int last_step_k16;   // K slices of 16 of the last step that hold rows in use (A^T only)
  long long n0;
  TileCoord c;

  // Unset: the persistent kernels' placeholder for a next tile that does not exist.
  BsrTileCoords() = default;
  __device__ static int num_tiles(const BsrGemmParams& p) {
    const long long rows = kTransA ? kM : static_cast<long long>(p.block_rows) * kBlock;
    return static_cast<int>(rows / kTileM * (kN / kTileN));
  }
  __device__ BsrTileCoords(const BsrGemmParams& p, int tile) {
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
    last_step_k16 = kTileK / 16;
    if constexpr (kTransA) {
      if (p.live_rows != nullptr && num_k_tiles > 0) {
        const int rows = p.live_rows[p.column_indices_t[offsets[block_row + 1] - 1]];
        MOEJIT_CHECK(rows >= 0 && rows <= kBlock);
        const int steps = (rows + kTileK - 1) / kTileK;
        num_k_tiles -= kKTilesPerBlock - steps;
        // Without rows in use, the last step is the previous block's, all of it.
        if (steps > 0) last_step_k16 = (rows - (steps - 1) * kTileK + 15) / 16;
      }
    }
    n0 = static_cast<long long>(tile_col) * kTileN;
    c = TileCoord{static_cast<int>(n0), block_row * kBlock + sub_m * kTileM};
  }
  // The steps' lookups take the kernel's parameters (`p`, in the parameter space) rather
  // than a pointer to them kept in the tile: through such a pointer, each lookup first
  // fetched the index array's address with a generic load, before the index itself.
  __device__ TileCoord a(const BsrGemmParams& p, int kt) const {
    const int j = first + kt / kKTilesPerBlock;
    const int k_in_block = (kt % kKTilesPerBlock) * kTileK;
    const int stored = kTransA ? ptx::load_readonly(p.block_offsets_t + j) : j;
    MOEJIT_CHECK(stored >= 0 && stored < p.nnz);
    // Stored block rows are A's rows (K-major), or A^T's K (M-major).
    return kTransA ? TileCoord{sub_m * kTileM, stored * kBlock + k_in_block}
                   : TileCoord{k_in_block, stored * kBlock + sub_m * kTileM};
  }
  // The sparse block column (a block row, for A^T) that step kt of a reduction starting
  // at stored block `from` multiplies: which of B's block rows the step reads.
  __device__ int k_block(const BsrGemmParams& p, int kt, int from) const {
    const int j = from + kt / kKTilesPerBlock;
    return ptx::load_readonly((kTransA ? p.column_indices_t : p.column_indices) + j);
  }
  __device__ TileCoord b(const BsrGemmParams& p, int kt) const {
    const long long k0 = static_cast<long long>(k_block(p, kt, first)) * kBlock + (kt % kKTilesPerBlock) * kTileK;
    return operand_coord<kBKMajor>(n0, k0);
  }
};

// dds: C (dense) = A x B (sparse). A thread block owns a tile_n slice of one block column
// of op(B) and reduces over that column's nonzero blocks: the column-major metadata for
// B, the row-major metadata for B^T. Consecutive thread blocks walk down M for one column
// slice, so they share B's sparse column while it is hot in L2.
template <bool kTransA, bool kTransB, int kBlock, long long kM, long long kN, long long kK, int kTileM, int kTileN,
          int kTileK>
struct BsrTileCoords<OpKind::dds, kTransA, kTransB, kBlock, kM, kN, kK, kTileM, kTileN, kTileK> {
  static constexpr bool kAKMajor = !kTransA;
  // A block of B^T is a stored block read row-wise: K is its contiguous dimension.
  static constexpr bool kBKMajor = kTransB;
  static constexpr int kKTilesPerBlock = kBlock / kTileK;
  int first, sub_n, num_k_tiles;
  long long m0;
  TileCoord c;

  // Unset: the persistent kernels' placeholder for a next tile that does not exist.
  BsrTileCoords() = default;
  __device__ static int num_tiles(const BsrGemmParams& p) {
    const long long cols = kTransB ? static_cast<long long>(p.block_rows) * kBlock : kN;
    return static_cast<int>(kM / kTileM * (cols / kTileN));
  }
  __device__ BsrTileCoords(const BsrGemmParams& p, int tile) {
    constexpr int kTilesM = static_cast<int>(kM / kTileM);
    constexpr int kSubN = kBlock / kTileN;
    const int tile_col = tile / kTilesM;
    const int tile_row = tile % kTilesM;
    const int block_col = tile_col / kSubN;
    sub_n = tile_col % kSubN;
    const int* offsets = kTransB ? p.offsets : p.offsets_t;
    MOEJIT_CHECK(block_col < (kTransB ? p.block_rows : p.block_cols));
    first = offsets[block_col];
    MOEJIT_CHECK(first >= 0 && first <= offsets[block_col + 1] && offsets[block_col + 1] <= p.nnz);
    num_k_tiles = (offsets[block_col + 1] - first) * kKTilesPerBlock;
    m0 = static_cast<long long>(tile_row) * kTileM;
    c = TileCoord{block_col * kBlock + sub_n * kTileN, static_cast<int>(m0)};
  }
  __device__ TileCoord a(const BsrGemmParams& p, int kt) const {
    const int j = first + kt / kKTilesPerBlock;
    const long long k0 =
        static_cast<long long>(ptx::load_readonly((kTransB ? p.column_indices : p.column_indices_t) + j)) * kBlock +
        (kt % kKTilesPerBlock) * kTileK;
    return operand_coord<kAKMajor>(m0, k0);
  }
  __device__ TileCoord b(const BsrGemmParams& p, int kt) const {
    const int j = first + kt / kKTilesPerBlock;
    const int k_in_block = (kt % kKTilesPerBlock) * kTileK;
    const int stored = kTransB ? j : ptx::load_readonly(p.block_offsets_t + j);
    MOEJIT_CHECK(stored >= 0 && stored < p.nnz);
    // Stored block rows are B's K (N-major), or B^T's N (K-major).
    return kTransB ? TileCoord{k_in_block, stored * kBlock + sub_n * kTileN}
                   : TileCoord{sub_n * kTileN, stored * kBlock + k_in_block};
  }
};

}  // namespace moejit
