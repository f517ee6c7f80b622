// The compile-time configuration of one wgmma kernel: its template arguments, the shared
// memory layout, the tile walk, the wgmma instruction and the schedule's choices, checked
// once here so the parts can take them for granted.
#pragma once

#include "moejit/bsr_tile_coords.cuh"
#include "moejit/op_kind.h"
#include "moejit/sm90/pipeline_state.cuh"
#include "moejit/sm90/shared_storage.cuh"
#include "moejit/sm90/tile_scheduler.cuh"
#include "moejit/wgmma.cuh"

namespace moejit {
namespace sm90 {

template <OpKind kOp_, bool kTransA_, bool kTransB_, class Element_, int kBlock_, long long kM_, long long kN_,
          long long kK_, int kTileM_, int kTileN_, int kTileK_, int kStages_, int kWarpsM_, int kWarpsN_,
          bool kPingpong_, int kCluster_, int kClusterM_>
struct GemmConfig {
  using Element = Element_;
  static constexpr OpKind kOp = kOp_;
  static constexpr bool kTransA = kTransA_;
  static constexpr int kBlock = kBlock_;
  static constexpr int kTileM = kTileM_;
  static constexpr int kTileN = kTileN_;
  static constexpr int kTileK = kTileK_;
  static constexpr int kStages = kStages_;
  static constexpr bool kPingpong = kPingpong_;
  static constexpr int kCluster = kCluster_;     // CTAs along N sharing A (multicast)
  static constexpr int kClusterM = kClusterM_;   // CTAs along M sharing B
  static constexpr int kCtas = kCluster * kClusterM;   // thread blocks per cluster

  using Layout = Sm90Layout<kTileM, kTileN, kTileK, kStages, kWarpsM_ / 4, kPingpong>;
  using Storage = SharedStorage<Layout, kStages>;
  using State = PipelineState<kStages>;
  static constexpr int kConsumers = Layout::kConsumerWarpgroups;
  static constexpr int kMmaM = Layout::kWarpgroupRows / 64;   // m64 wgmmas per K slice and warpgroup

  static constexpr TileOrder kOrder = tile_order(kOp, kTransA, kBlock, kTileM, kTileN, kClusterM);
  static constexpr bool kColumnPairs = kOrder == TileOrder::sdd_column_pairs;
  static constexpr bool kRowPairs = kOrder == TileOrder::sdd_row_pairs;
  using Coords = BsrTileCoords<kOp, kTransA, kTransB_, kBlock, kM_, kN_, kK_, kTileM, kTileN, kTileK>;
  using Walk = typename TileWalkOf<kOrder, Coords, kTransA, kTransB_, kBlock, kK_, kTileK,
                                   static_cast<int>(kN_ / kTileN), kCluster>::type;
  using Tile = typename Walk::Tile;
  using Mma = WgmmaOp<Element, kTileN, !Tile::kAKMajor, !Tile::kBKMajor>;

  // Where a consumer's rounded tile waits for its stores (sm90/epilogue.cuh): into the next
  // tile's first steps for cooperative 256-column tiles, whose tensor cores would otherwise
  // idle while both warpgroups store; at once for narrower tiles, whose steps are too short
  // to hide them, and for pingpong, where the other warpgroup's mainloop hides them.
  static constexpr bool kDeferStores = !kPingpong && kTileN == 256;
  // dsd with A^T: the tile's last step may hold rows in use in its first K slices only.
  static constexpr bool kPartialLastStep = kOp == OpKind::dsd && kTransA;

  static_assert(kTileK == 64, "the 128-byte swizzle holds 64 16-bit elements of K per row");
  static_assert(kWarpsN_ == 1 && (kWarpsM_ == 4 || kWarpsM_ == 8), "one or two consumer warpgroups of 4 warps");
  static_assert(kConsumers == 2 || !kPingpong, "pingpong needs two consumer warpgroups");
  static_assert(kPingpong || Layout::kWarpgroupRows * kConsumers == kTileM, "cooperative warpgroups split the rows");
  static_assert(kMmaM == 1 || kMmaM == 2, "a consumer warpgroup owns 64 or 128 rows");
  static_assert(kMmaM * kTileN / 2 <= 128, "at most 128 fp32 accumulators per consumer thread");
  static_assert(kTileN % 64 == 0 && kTileN <= 256, "wgmma n up to 256, in 64-element swizzle chunks");
  static_assert(!kColumnPairs || (kTileN == kBlock && !kPingpong && Layout::kWarpgroupRows == kBlock),
                "a pair of sdd blocks: one block per cooperative warpgroup, the whole block's columns");
  static_assert(!kRowPairs || (kTileM == kBlock && !kPingpong && kCluster == 1),
                "a row pair of sdd blocks: the whole block's rows, cooperative warpgroups, no cluster");
  static_assert(kStages >= 2, "the pipeline needs at least two stages");
  static_assert(kCluster == 1 || kCluster == 2 || kCluster == 4, "clusters of 1, 2 or 4 CTAs");
  static_assert(kCluster == 1 || (kOp == OpKind::dsd && kN_ % (kTileN * kCluster) == 0),
                "a cluster shares A: dsd, whose tile rows hold a multiple of the cluster's tiles");
  static_assert(kClusterM == 1 || (kClusterM == 2 && kOp == OpKind::dsd && !kPingpong && kCluster == 1),
                "a cluster along M shares B: dsd's cooperative schedule, two CTAs, not also along N");
};

}  // namespace sm90
}  // namespace moejit
