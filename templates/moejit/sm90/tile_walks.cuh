// The tile walks of the wgmma kernel (sm90/tile_scheduler.cuh picks one per op and
// schedule): each hands out tile t of its order, seek(p, t) saying whether it exists and
// at(p, t) giving its Tile, the coordinates its steps copy and store (bsr_tile_coords.cuh).
// docs/kernels/wgmma.md describes the orders and why each exists.
#pragma once

#include "moejit/bsr_gemm_params.h"
#include "moejit/bsr_tile_coords.cuh"
#include "moejit/debug_checks.cuh"

namespace moejit {

// Tiles numbered 0 .. num_tiles - 1, each of which the traversal computes on its own.
template <class Coords>
struct IndexedTiles {
  using Tile = Coords;
  int count;
  __device__ IndexedTiles(const BsrGemmParams& p, int) : count(Coords::num_tiles(p)) {}
  __device__ bool seek(const BsrGemmParams&, int t) const { return t < count; }
  __device__ Coords at(const BsrGemmParams& p, int t) const { return Coords(p, t); }
};

// sdd with thread blocks of two blocks (wgmma tile_m = 2 x block, tile_n = block): the
// two blocks share a block column, so one B tile serves both, and each has an A tile of
// its own block row (two copies into one stage). Pairs follow the column-major order:
// column c's live blocks, positions offsets_t[c] .. offsets_t[c + 1] of that order, form
// ceil(n / 2) pairs, the last one single when n is odd; then the unused blocks past the
// live count, whose C is written with zeros, in pairs of consecutive stored blocks.
//
// How many pairs precede a column depends on every earlier column's count, a device-side
// value: instead of a table, each thread walks the columns with a cursor (SddColumnPairTiles),
// which only moves forward because a persistent thread block visits its tiles in
// increasing order. The walk reads block_cols + 1 offsets over the kernel's lifetime.
// Without column-major metadata (block_offsets_t == nullptr) a pair is one block.
template <bool kTransA, bool kTransB, int kBlock, long long kK, int kTileK>
struct SddColumnPairTile {
  static constexpr bool kAKMajor = !kTransA;
  static constexpr bool kBKMajor = kTransB;
  int count;            // blocks of the pair: 1 or 2
  int stored[2];        // their stored (row-major) indices
  long long m0[2];      // their first rows of A
  long long n0;         // their common first column of B
  int num_k_tiles;      // 0 for blocks past the live count

  // (Selects rather than indexing: a run-time index would put the arrays in local memory.)
  __device__ TileCoord a(const BsrGemmParams&, int kt, int part) const {
    return operand_coord<kAKMajor>(part == 0 ? m0[0] : m0[1], static_cast<long long>(kt) * kTileK);
  }
  __device__ TileCoord b(const BsrGemmParams&, int kt) const {
    return operand_coord<kBKMajor>(n0, static_cast<long long>(kt) * kTileK);
  }
  __device__ TileCoord c(int part) const { return TileCoord{0, (part == 0 ? stored[0] : stored[1]) * kBlock}; }
};

template <bool kTransA, bool kTransB, int kBlock, long long kK, int kTileK>
struct SddColumnPairTiles {
  using Tile = SddColumnPairTile<kTransA, kTransB, kBlock, kK, kTileK>;
  int live;          // blocks in use: positions [0, live) of both orders
  int column;        // the column that holds pair `first` onwards
  int first;         // pairs in the columns before `column`
  int begin, end;    // the live blocks of `column`: positions [begin, end) of the column-major order

  __device__ SddColumnPairTiles(const BsrGemmParams& p, int)
      : live(p.live_nnz != nullptr ? min(*p.live_nnz, p.nnz) : p.nnz), column(0), first(0), begin(0), end(0) {
    if (p.block_offsets_t != nullptr && p.block_cols > 0) {
      begin = min(p.offsets_t[0], live);
      end = min(p.offsets_t[1], live);
    }
  }

  // Whether pair `t` exists; moves the cursor to it (t never decreases between calls).
  // One offset load per column passed.
  __device__ bool seek(const BsrGemmParams& p, int t) {
    if (p.block_offsets_t == nullptr) return t < p.nnz;
    while (column < p.block_cols) {
      const int pairs = (max(0, end - begin) + 1) / 2;
      if (t < first + pairs) return true;
      first += pairs;
      ++column;
      begin = end;
      if (column < p.block_cols) end = min(p.offsets_t[column + 1], live);
    }
    // Past the live pairs: unused blocks from `live` on, two at a time.
    return live + 2 * (t - first) < p.nnz;
  }

  // The pair `t` that seek(p, t) found.
  __device__ Tile at(const BsrGemmParams& p, int t) const {
    Tile pair;
    pair.num_k_tiles = static_cast<int>(kK / kTileK);
    if (p.block_offsets_t == nullptr) {
      pair.count = 1;
      pair.stored[0] = pair.stored[1] = t;
      if (t >= live) pair.num_k_tiles = 0;
    } else if (column < p.block_cols) {
      const int j = begin + 2 * (t - first);
      pair.count = min(2, end - j);
      pair.stored[0] = p.block_offsets_t[j];
      pair.stored[1] = pair.count == 2 ? p.block_offsets_t[j + 1] : pair.stored[0];
    } else {
      const int j = live + 2 * (t - first);
      pair.count = min(2, p.nnz - j);
      pair.stored[0] = j;
      pair.stored[1] = pair.count == 2 ? j + 1 : j;
      pair.num_k_tiles = 0;
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      MOEJIT_CHECK(pair.stored[i] >= 0 && pair.stored[i] < p.nnz);
      MOEJIT_CHECK(p.row_indices[pair.stored[i]] >= 0 && p.row_indices[pair.stored[i]] < p.block_rows);
      pair.m0[i] = static_cast<long long>(p.row_indices[pair.stored[i]]) * kBlock;
    }
    MOEJIT_CHECK(pair.count == 1 || p.column_indices[pair.stored[0]] == p.column_indices[pair.stored[1]]);
    pair.n0 = static_cast<long long>(p.column_indices[pair.stored[0]]) * kBlock;
    return pair;
  }
};

// Where position t of a walk over `rows` x `columns` slots lies when it goes through
// windows of kWindow rows, and within a window kGroup columns at a time, down the
// window's rows for each group (the last window may have fewer rows): the order of
// SddRowPairTiles (columns: pairs of a row) and RowWindowTiles (tile columns, kGroup the
// cluster), so that the thread blocks running at one time share a few rows' A tiles and
// a few columns' B tiles in L2.
struct WindowSlot {
  int row;
  int column;
};
template <int kWindow, int kGroup>
__device__ __forceinline__ WindowSlot window_slot(int t, int rows, int columns) {
  const int first_row = t / (kWindow * columns) * kWindow;
  const int window_rows = min(kWindow, rows - first_row);
  const int local = t - first_row * columns;
  const int in_group = local % (window_rows * kGroup);
  return WindowSlot{first_row + in_group / kGroup, local / (window_rows * kGroup) * kGroup + in_group % kGroup};
}

// sdd with thread blocks of two blocks of one block row (wgmma tile_m = block, tile_n =
// 2 x block): the two blocks share their row's A tile, each has a B tile of its own block
// column (two copies into one stage), and the consumers multiply one tile twice the block
// wide. A row's live blocks (positions offsets[r] .. min(offsets[r + 1], live) of the
// row-major order) form ceil(n / 2) pairs, the last one single when n is odd. The tiles go
// through windows of kWindow block rows, pair by pair down the window's rows, so the
// blocks running at one time share a few rows' A tiles and the expert's weight columns in
// L2. `max_pairs` (max_row_pairs below) is the most pairs of any row; a row with fewer
// leaves empty tiles (count 0), which both sides skip. Then come the unused blocks past
// the live count, whose C is written with zeros, in pairs of consecutive stored blocks.
template <bool kTransA, bool kTransB, int kBlock, long long kK, int kTileK>
struct SddRowPairTile {
  static constexpr bool kAKMajor = !kTransA;
  static constexpr bool kBKMajor = kTransB;
  int count;          // blocks of the pair: 1 or 2; 0 for an empty tile
  int stored;         // the first block's stored (row-major) index; the second's is stored + 1
  long long m0;       // their common first row of A
  long long n0[2];    // their first columns of B
  int num_k_tiles;    // 0 for blocks past the live count

  // (Selects rather than indexing: a run-time index would put the array in local memory.)
  __device__ TileCoord a(const BsrGemmParams&, int kt) const {
    return operand_coord<kAKMajor>(m0, static_cast<long long>(kt) * kTileK);
  }
  __device__ TileCoord b(const BsrGemmParams&, int kt, int part) const {
    return operand_coord<kBKMajor>(part == 0 ? n0[0] : n0[1], static_cast<long long>(kt) * kTileK);
  }
  __device__ TileCoord c(int part) const { return TileCoord{0, (stored + part) * kBlock}; }
};

template <bool kTransA, bool kTransB, int kBlock, long long kK, int kTileK>
struct SddRowPairTiles {
  using Tile = SddRowPairTile<kTransA, kTransB, kBlock, kK, kTileK>;
  static constexpr int kWindow = 16;   // block rows
  int live;        // blocks in use: stored indices [0, live)
  int max_pairs;   // pairs of the row that has the most
  int slots;       // tiles of the live pairs, empty ones included: max_pairs x block_rows

  __device__ SddRowPairTiles(const BsrGemmParams& p, int most)
      : live(p.live_nnz != nullptr ? min(*p.live_nnz, p.nnz) : p.nnz), max_pairs(most), slots(most * p.block_rows) {}

  // Whether tile `t` exists (it may be empty: Tile::count == 0).
  __device__ bool seek(const BsrGemmParams& p, int t) const { return t < slots || live + 2 * (t - slots) < p.nnz; }

  __device__ Tile at(const BsrGemmParams& p, int t) const {
    Tile pair;
    pair.num_k_tiles = static_cast<int>(kK / kTileK);
    pair.m0 = 0;
    pair.n0[0] = pair.n0[1] = 0;
    if (t < slots) {
      const WindowSlot slot = window_slot<kWindow, 1>(t, p.block_rows, max_pairs);
      const int row = slot.row;
      const int begin = min(p.offsets[row], live);
      const int end = min(p.offsets[row + 1], live);
      pair.stored = begin + 2 * slot.column;
      pair.count = max(0, min(2, end - pair.stored));
      pair.m0 = static_cast<long long>(row) * kBlock;
    } else {
      pair.stored = live + 2 * (t - slots);
      pair.count = min(2, p.nnz - pair.stored);
      pair.num_k_tiles = 0;
    }
    if (pair.count > 0) {
      MOEJIT_CHECK(pair.stored >= 0 && pair.stored + pair.count <= p.nnz);
      MOEJIT_CHECK(t >= slots || p.row_indices[pair.stored] == static_cast<int>(pair.m0 / kBlock));
      pair.n0[0] = static_cast<long long>(p.column_indices[pair.stored]) * kBlock;
      pair.n0[1] = pair.count == 2 ? static_cast<long long>(p.column_indices[pair.stored + 1]) * kBlock : pair.n0[0];
    }
    return pair;
  }
};

// The tiles of a dsd product with A not transposed, in windows of kWindow tile rows and
// within a window column by column, down the window's rows for each, so the blocks
// running at one time share a few rows' A tiles and a few columns' B tiles in L2. The
// columns go kCluster at a time, so that a cluster's CTAs (consecutive tiles) still hold
// neighbouring tiles of one row.
template <class Coords, int kTilesN, int kCluster>
struct RowWindowTiles {
  using Tile = Coords;
  static constexpr int kWindow = 16;   // tile rows
  int rows;                            // tile rows
  __device__ RowWindowTiles(const BsrGemmParams& p, int) : rows(Coords::num_tiles(p) / kTilesN) {}
  __device__ bool seek(const BsrGemmParams&, int t) const { return t < rows * kTilesN; }
  __device__ Tile at(const BsrGemmParams& p, int t) const {
    const WindowSlot slot = window_slot<kWindow, kCluster>(t, rows, kTilesN);
    return Coords(p, slot.row * kTilesN + slot.column);
  }
};

// The tiles of a dsd cluster along M (TileConfig::cluster_m = 2): tile t is tile row
// 2 (t / 2 / tiles_n) + t % 2 of tile column t / 2 % tiles_n, so the two CTAs of a
// cluster (consecutive block indices, each stepping by the even grid) hold tile rows 2i
// and 2i + 1 of one column at every step. Each CTA also knows its partner's reduction
// (where it starts and how many steps it has): both walk the ring for the longer of the
// two, and at each step both decide alike whether they copy the same B tile, which
// they then share. An odd last tile row's partner lies past the end:
// absent, it computes and stores nothing but keeps the pair's handshake.
template <class Coords>
struct ColumnPairTile : Coords {
  bool present;
  int partner_first;     // the partner's first sparse block (its Coords::first)
  int partner_k_tiles;   // the partner's reduction steps (0 if it is absent)

  // Steps of the ring this tile takes: the longer reduction of the pair.
  __device__ int ring_steps() const { return max(this->num_k_tiles, partner_k_tiles); }
  // Whether both tiles of the pair copy the same B tile at step kt: both reduce over the
  // same sparse block column (row, for A^T) there, and their B tiles lie in the same
  // tile column. The same answer in both CTAs.
  __device__ bool shares_b(const BsrGemmParams& p, int kt) const {
    if (kt >= this->num_k_tiles || kt >= partner_k_tiles) return false;
    return this->k_block(p, kt, this->first) == this->k_block(p, kt, partner_first);
  }
};

template <class Coords, int kTilesN>
struct ColumnPairTiles {
  using Tile = ColumnPairTile<Coords>;
  int rows;    // tile rows
  int count;   // tiles walked: rows rounded up to pairs, by kTilesN
  __device__ ColumnPairTiles(const BsrGemmParams& p, int)
      : rows(Coords::num_tiles(p) / kTilesN), count((rows + 1) / 2 * 2 * kTilesN) {}
  __device__ bool seek(const BsrGemmParams&, int t) const { return t < count; }
  __device__ Tile at(const BsrGemmParams& p, int t) const {
    const int column = t / 2 % kTilesN;
    const int row = 2 * (t / 2 / kTilesN) + t % 2;
    const int partner_row = row ^ 1;
    Tile tile{};
    if (row < rows) {
      static_cast<Coords&>(tile) = Coords(p, row * kTilesN + column);
      tile.present = true;
    }
    if (partner_row < rows) {
      const Coords partner(p, partner_row * kTilesN + column);
      tile.partner_first = partner.first;
      tile.partner_k_tiles = partner.num_k_tiles;
    }
    return tile;
  }
};

// The ring steps of a tile and whether it has output: its reduction and yes, except for
// the tiles of a cluster along M (ColumnPairTile).
template <class Tile>
__device__ __forceinline__ int ring_steps(const Tile& tile) {
  return tile.num_k_tiles;
}
template <class Coords>
__device__ __forceinline__ int ring_steps(const ColumnPairTile<Coords>& tile) {
  return tile.ring_steps();
}
template <class Tile>
__device__ __forceinline__ bool tile_present(const Tile&) {
  return true;
}
template <class Coords>
__device__ __forceinline__ bool tile_present(const ColumnPairTile<Coords>& tile) {
  return tile.present;
}

// A tile the walk hands out with nothing to compute or store: only the row pairs' empty
// slots.
template <class Tile>
__device__ __forceinline__ bool empty_tile(const Tile&) {
  return false;
}
template <bool kTransA, bool kTransB, int kBlock, long long kK, int kTileK>
__device__ __forceinline__ bool empty_tile(const SddRowPairTile<kTransA, kTransB, kBlock, kK, kTileK>& pair) {
  return pair.count == 0;
}

// The most pairs of any block row, ceil(blocks / 2) over the rows' live blocks, for
// SddRowPairTiles: every thread of the block calls it and gets the result. `scratch` is a
// 4-byte word of shared memory that nothing uses until every thread has returned.
__device__ __forceinline__ int max_row_pairs(const BsrGemmParams& p, unsigned scratch) {
  const int live = p.live_nnz != nullptr ? min(*p.live_nnz, p.nnz) : p.nnz;
  int most = 0;
  for (int row = threadIdx.x; row < p.block_rows; row += blockDim.x) {
    const int n = min(p.offsets[row + 1], live) - min(p.offsets[row], live);
    most = max(most, (n + 1) / 2);
  }
  most = __reduce_max_sync(0xffffffffu, most);
  if (threadIdx.x == 0) asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(scratch), "r"(0) : "memory");
  __syncthreads();
  if (threadIdx.x % 32 == 0) asm volatile("red.shared.max.s32 [%0], %1;\n" ::"r"(scratch), "r"(most) : "memory");
  __syncthreads();
  int result;
  asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(result) : "r"(scratch) : "memory");
  __syncthreads();
  return result;
}

}  // namespace moejit
