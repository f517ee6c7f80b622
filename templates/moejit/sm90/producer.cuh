// The producer warpgroup's one issuing thread: for each step of each tile it waits for a
// free stage (empty[s]), announces the stage's bytes on full[s] and issues the TMA copies
// of the step's A and B tiles, in the form the schedule needs (sm90/operand_copies.cuh).
#pragma once

#include "moejit/ablation.cuh"
#include "moejit/bsr_gemm_sm90_params.h"
#include "moejit/mbarrier.cuh"
#include "moejit/sm90/operand_copies.cuh"
#include "moejit/sm90/tile_walks.cuh"
#include "moejit/tma.cuh"

namespace moejit {
namespace sm90 {

template <class Config>
struct Producer {
  using Layout = typename Config::Layout;
  using Tile = typename Config::Tile;
  static constexpr int kStages = Config::kStages;

  const BsrGemmSm90Params& params;
  typename Config::Storage storage;
  int cta_rank;                     // this CTA's rank in its cluster
  typename Config::State state{0};  // the step whose stage is filled next

  // Where a step's tiles lie, and (clusters along M) whether both CTAs copy the same B.
  struct StepCoords {
    TileCoord a{}, b{};
    bool b_shared = false;
  };

  __device__ __forceinline__ void prefetch_descriptors() const {
    tma::prefetch_descriptor(params.a);
    tma::prefetch_descriptor(params.b);
  }

  // Fills the ring with every tile's steps. The next tile is found once the ring is full of
  // this tile's steps, when the producer would wait anyway.
  template <class Scheduler>
  __device__ __forceinline__ void run(Scheduler& scheduler) {
    const BsrGemmParams& p = params.gemm;
    while (scheduler.more) {
      const Tile& tile = scheduler.tile;
      scheduler.begin_tile();
      const bool skip = empty_tile(tile);   // the consumers skip it too
      // A cluster along M finds it before this tile's steps, also when the ring is full (of
      // the last tile's steps): between two steps the pair's two lookups spill registers.
      const int find_next_after = skip || Config::kClusterM > 1 ? -1 : min(kStages, ring_steps(tile)) - 1;
      if (find_next_after < 0) scheduler.find_next(p);
      const int stage_bytes = bytes_of(tile);
      // Steps of the ring: the tile's reduction, or its pair's longer one (clusters along M).
      const int k_steps = skip ? 0 : ring_steps(tile);
      for (int kt = 0; kt < k_steps; ++kt, ++state) {
        const int s = state.index();
        // A step of the pair's longer reduction only (clusters along M): this CTA copies
        // nothing and its partner shares nothing, so the stage is full at once.
        bool copies = true;
        if constexpr (Config::kClusterM > 1) copies = kt < tile.num_k_tiles;
        // Looked up before the wait for the stage, which then hides the topology loads.
        // (The column and row pairs' two tiles of one operand are found as they are copied.)
        StepCoords at;
        if (copies) at = coords(tile, kt);
        mbarrier::wait(storage.empty(s), state.phase() ^ 1);
        if (ablate_loads() || !copies) {   // ablate_loads: timing only (ablation.cuh)
          mbarrier::arrive(storage.full(s));
          if (kt == find_next_after) scheduler.find_next(p);
          continue;
        }
        mbarrier::arrive_expect_tx(storage.full(s), stage_bytes);
        load(tile, kt, at, storage.stage(s), storage.full(s));
        if (kt == find_next_after) scheduler.find_next(p);
      }
      scheduler.advance();
    }
  }

 private:
  // A single-block pair copies one A tile (one B tile for a row pair): the stage then
  // expects half of A's (B's) bytes.
  __device__ __forceinline__ int bytes_of(const Tile& tile) const {
    int bytes = Layout::kStageBytes;
    if constexpr (Config::kColumnPairs) bytes -= (2 - tile.count) * (Layout::kABytes / 2);
    if constexpr (Config::kRowPairs) bytes -= (2 - tile.count) * (Layout::kBBytes / 2);
    return bytes;
  }

  __device__ __forceinline__ StepCoords coords(const Tile& tile, int kt) const {
    const BsrGemmParams& p = params.gemm;
    StepCoords at;
    if constexpr (!Config::kColumnPairs) at.a = tile.a(p, kt);
    if constexpr (!Config::kRowPairs) at.b = tile.b(p, kt);
    if constexpr (Config::kClusterM > 1) at.b_shared = tile.shares_b(p, kt);
    return at;
  }

  // Step kt's copies into `stage`, completing on barrier `full`.
  __device__ __forceinline__ void load(const Tile& tile, int kt, const StepCoords& at, unsigned stage,
                                       unsigned full) const {
    const BsrGemmParams& p = params.gemm;
    constexpr int kBlock = Config::kBlock;
    if constexpr (Config::kColumnPairs) {   // two A tiles, one per block of the pair
#pragma unroll
      for (int part = 0; part < 2; ++part) {
        if (part < tile.count) {
          load_operand<Tile::kAKMajor, kBlock>(stage + part * (Layout::kABytes / 2), params.a, tile.a(p, kt, part),
                                               full);
        }
      }
    } else if constexpr (Config::kCluster > 1) {   // this CTA's slice of A, multicast
      load_operand_slice<Tile::kAKMajor, Config::kTileM, Config::kCluster>(stage, params.a, at.a, full, cta_rank);
    } else {
      load_operand<Tile::kAKMajor, Config::kTileM>(stage, params.a, at.a, full);
    }
    const unsigned b_stage = stage + Layout::kABytes;
    if constexpr (Config::kRowPairs) {   // two B tiles side by side, one per block of the pair
#pragma unroll
      for (int part = 0; part < 2; ++part) {
        if (part < tile.count) {
          load_operand<Tile::kBKMajor, kBlock>(b_stage + part * (Layout::kBBytes / 2), params.b, tile.b(p, kt, part),
                                               full);
        }
      }
    } else if constexpr (Config::kClusterM > 1) {
      // Half of a B tile both CTAs copy, into both; otherwise all of it, in the halves the
      // tensor map's box holds.
      if (at.b_shared) {
        load_operand_slice<Tile::kBKMajor, Config::kTileN, Config::kClusterM>(b_stage, params.b, at.b, full, cta_rank);
      } else {
#pragma unroll
        for (int half = 0; half < Config::kClusterM; ++half) {
          load_operand_slice<Tile::kBKMajor, Config::kTileN, Config::kClusterM, false>(b_stage, params.b, at.b, full,
                                                                                      half);
        }
      }
    } else {
      load_operand<Tile::kBKMajor, Config::kTileN>(b_stage, params.b, at.b, full);
    }
  }
};

}  // namespace sm90
}  // namespace moejit
