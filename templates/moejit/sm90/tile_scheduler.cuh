// Which tiles a persistent wgmma thread block computes and in what order: the tile walk
// chosen per op and schedule (a trait). Block i takes tiles i, i + grid, i + 2 grid, ... of
// the walk, so the blocks running at one time hold neighbouring tiles that share operands
// in L2; producer and consumers walk the same tiles.
#pragma once

#include "moejit/bsr_gemm_params.h"
#include "moejit/op_kind.h"
#include "moejit/sm90/tile_walks.cuh"

namespace moejit {
namespace sm90 {

// The five tile orders (sm90/tile_walks.cuh has one walk for each).
enum class TileOrder {
  indexed,            // tile t is BsrTileCoords(t)                            IndexedTiles
  dsd_row_windows,    // dsd with A: windows of tile rows                      RowWindowTiles
  dsd_column_pairs,   // dsd with a cluster along M: tile rows in pairs        ColumnPairTiles
  sdd_column_pairs,   // sdd, tile_m = 2 x block: two blocks of a block column  SddColumnPairTiles
  sdd_row_pairs,      // sdd, tile_n = 2 x block: two blocks of a block row     SddRowPairTiles
};

__host__ __device__ constexpr TileOrder tile_order(OpKind op, bool trans_a, int block, int tile_m, int tile_n,
                                                  int cluster_m) {
  if (op == OpKind::sdd && tile_m == 2 * block) return TileOrder::sdd_column_pairs;
  if (op == OpKind::sdd && tile_n == 2 * block) return TileOrder::sdd_row_pairs;
  if (cluster_m == 2) return TileOrder::dsd_column_pairs;
  if (op == OpKind::dsd && !trans_a) return TileOrder::dsd_row_windows;
  return TileOrder::indexed;
}

template <TileOrder kOrder, class Coords, bool kTransA, bool kTransB, int kBlock, long long kK, int kTileK,
          int kTilesN, int kCluster>
struct TileWalkOf {
  using type = IndexedTiles<Coords>;
};
template <class Coords, bool kTransA, bool kTransB, int kBlock, long long kK, int kTileK, int kTilesN, int kCluster>
struct TileWalkOf<TileOrder::dsd_row_windows, Coords, kTransA, kTransB, kBlock, kK, kTileK, kTilesN, kCluster> {
  using type = RowWindowTiles<Coords, kTilesN, kCluster>;
};
template <class Coords, bool kTransA, bool kTransB, int kBlock, long long kK, int kTileK, int kTilesN, int kCluster>
struct TileWalkOf<TileOrder::dsd_column_pairs, Coords, kTransA, kTransB, kBlock, kK, kTileK, kTilesN, kCluster> {
  using type = ColumnPairTiles<Coords, kTilesN>;
};
template <class Coords, bool kTransA, bool kTransB, int kBlock, long long kK, int kTileK, int kTilesN, int kCluster>
struct TileWalkOf<TileOrder::sdd_column_pairs, Coords, kTransA, kTransB, kBlock, kK, kTileK, kTilesN, kCluster> {
  using type = SddColumnPairTiles<kTransA, kTransB, kBlock, kK, kTileK>;
};
template <class Coords, bool kTransA, bool kTransB, int kBlock, long long kK, int kTileK, int kTilesN, int kCluster>
struct TileWalkOf<TileOrder::sdd_row_pairs, Coords, kTransA, kTransB, kBlock, kK, kTileK, kTilesN, kCluster> {
  using type = SddRowPairTiles<kTransA, kTransB, kBlock, kK, kTileK>;
};

// Whether the walk has tile `t`; if so, its coordinates go to `tile`.
template <class Walk>
__device__ __forceinline__ bool find_tile(Walk& walk, const BsrGemmParams& p, int t, typename Walk::Tile& tile) {
  const bool found = walk.seek(p, t);
  if (found) tile = walk.at(p, t);
  return found;
}

}  // namespace sm90
}  // namespace moejit
