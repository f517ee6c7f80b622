// The consumer warpgroups' main loop: for each step of a tile's reduction, wait for its
// stage, issue the stage's wgmmas as one committed batch, and hand the previous step's
// stage back once that batch is done reading it (one batch stays in flight, so the tensor
// cores never wait for the release handshake).
#pragma once

#include "moejit/ablation.cuh"
#include "moejit/cluster.cuh"
#include "moejit/mbarrier.cuh"
#include "moejit/sm90/tile_walks.cuh"
#include "moejit/wgmma.cuh"

namespace moejit {
namespace sm90 {

// Hands stage barrier `bar` (empty[s]) one release from this CTA's warpgroup, called by
// the warpgroup's lanes 0 .. 31 of its first warp: lane 0 releases the local barrier, or
// with a cluster lane i releases the one of CTA i, all in one instruction.
template <int kCluster>
__device__ __forceinline__ void release_stage(unsigned bar, int lane) {
  if constexpr (kCluster == 1) {
    if (lane == 0) mbarrier::arrive(bar);
  } else {
    if (lane < kCluster) cluster::arrive_remote(cluster::map_shared(bar, lane));
  }
}

// The descriptor of the 16-deep K slice `k16` of an operand tile at `base` (see
// wgmma::descriptor_sw128): K-major tiles advance 32 bytes within the swizzled row,
// MN-major ones by two 8-row groups; MN-major 64-element chunks lie 8192 bytes apart.
template <bool kKMajor>
__device__ __forceinline__ unsigned long long operand_descriptor(unsigned base, int k16) {
  return kKMajor ? wgmma::descriptor_sw128(base + 32 * k16, 16, 1024)
                 : wgmma::descriptor_sw128(base + 2048 * k16, 8192, 1024);
}

// One batch of a consumer warpgroup's wgmmas, one committed group: its kMmaM 64-row
// groups of the stage's A tile (group0, group0 + 1, ...) times the B tile (at byte
// kABytes of the stage), over the stage's first kSlices K slices of 16. The first slice
// adds to the accumulators, or with `accumulate` = 0 (a tile's first step) overwrites them.
template <int kSlices, class Mma, bool kAKMajor, bool kBKMajor, int kABytes, int kMmaM, int kAccumulators>
__device__ __forceinline__ void mma_batch(float (&acc)[kMmaM][kAccumulators], unsigned stage, int group0,
                                          int accumulate) {
#pragma unroll
  for (int i = 0; i < kMmaM; ++i) wgmma::fence_accumulators(acc[i]);
  wgmma::fence();
#pragma unroll
  for (int k16 = 0; k16 < kSlices; ++k16) {
    const unsigned long long b_desc = operand_descriptor<kBKMajor>(stage + kABytes, k16);
#pragma unroll
    for (int i = 0; i < kMmaM; ++i) {
      Mma::mma(acc[i], operand_descriptor<kAKMajor>(stage + (group0 + i) * 8192, k16), b_desc,
               k16 == 0 ? accumulate : 1);
    }
  }
  wgmma::commit_group();
#pragma unroll
  for (int i = 0; i < kMmaM; ++i) wgmma::fence_accumulators(acc[i]);
}

// One consumer warpgroup's side of the ring. Its rows of a tile are the 64-row groups
// group0, group0 + 1, ... (kMmaM of them); both A layouts put 64-row group g at byte
// 8192 g of the stage's A tile.
template <class Config>
struct ConsumerMainloop {
  using Layout = typename Config::Layout;
  using Tile = typename Config::Tile;
  using Mma = typename Config::Mma;
  using Accumulators = float[Config::kMmaM][Config::kTileN / 2];

  typename Config::Storage storage;
  int group0;
  int warp;
  int lane;
  typename Config::State state;   // the step this warpgroup waits for next

  // The other pingpong warpgroup's tile: its steps pass this warpgroup by.
  __device__ __forceinline__ void skip(int steps) { state += steps; }

  // Waits for step kt's stage and issues its batch of wgmmas, unless this warpgroup has no
  // rows in the tile or (clusters along M) the step is the partner's only.
  __device__ __forceinline__ void issue(const Tile& tile, int kt, int k_tiles, bool has_rows, Accumulators& acc) {
    const int s = state.index();
    mbarrier::wait(storage.full(s), state.phase());
    const unsigned stage = storage.stage(s);
    const int accumulate = kt > 0;
    bool computes = has_rows;
    if constexpr (Config::kClusterM > 1) computes = computes && kt < k_tiles;
    if (computes && !ablate_mma()) {
      if constexpr (Config::kPartialLastStep) {
        // A batch of fewer slices is a whole other batch, not a loop cut short: ptxas
        // serialises the wgmmas of a batch that a branch can leave early (C7520).
        static_assert(Config::kTileK == 64, "the partial batches below are those of 64-deep steps");
        const int slices = kt == k_tiles - 1 ? tile.last_step_k16 : 4;
        if (slices == 4) {
          batch<4>(acc, stage, accumulate);
        } else if (slices == 3) {
          batch<3>(acc, stage, accumulate);
        } else if (slices == 2) {
          batch<2>(acc, stage, accumulate);
        } else {
          batch<1>(acc, stage, accumulate);
        }
      } else {
        batch<Config::kTileK / 16>(acc, stage, accumulate);
      }
    }
  }

  // Once the previous step's batch is done, hands its stage back.
  __device__ __forceinline__ void retire(int kt, int k_tiles) {
    // A step of the partner's longer reduction (clusters along M) committed no batch, so the
    // batch in flight may be the previous step's: wait for all of it.
    if (Config::kClusterM > 1 && kt >= k_tiles) {
      wgmma::wait_group<0>();
    } else {
      wgmma::wait_group<1>();
    }
    if (kt > 0 && warp == 0) release_stage<Config::kCtas>(storage.empty(state.previous().index()), lane);
    ++state;
  }

  // After a tile's last step: its last batch is done, its stage goes back.
  __device__ __forceinline__ void finish(int k_steps, Accumulators& acc) {
    wgmma::wait_group<0>();
#pragma unroll
    for (int i = 0; i < Config::kMmaM; ++i) wgmma::fence_accumulators(acc[i]);
    if (k_steps > 0 && warp == 0) release_stage<Config::kCtas>(storage.empty(state.previous().index()), lane);
  }

 private:
  template <int kSlices>
  __device__ __forceinline__ void batch(Accumulators& acc, unsigned stage, int accumulate) {
    mma_batch<kSlices, Mma, Tile::kAKMajor, Tile::kBKMajor, Layout::kABytes>(acc, stage, group0, accumulate);
  }
};

}  // namespace sm90
}  // namespace moejit
