// The consumer warpgroups' side of the stage ring: one step's batch of wgmmas over a
// stage, and the release of a stage back to the producer (of every CTA of a cluster).
#pragma once

#include "moejit/cluster.cuh"
#include "moejit/mbarrier.cuh"
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

// A consumer warpgroup's batch of one step: all the stage's K slices, or (a partial last
// step) its first `slices`. A batch of fewer slices is a whole other batch, not a loop cut
// short: ptxas serialises the wgmmas of a batch that a branch can leave early (C7520).
template <class Config, class Accumulators>
__device__ __forceinline__ void mma_step(Accumulators& acc, unsigned stage, int group0, int accumulate, int slices) {
  using Mma = typename Config::Mma;
  using Tile = typename Config::Tile;
  constexpr int kABytes = Config::Layout::kABytes;
  if constexpr (Config::kPartialLastStep) {
    static_assert(Config::kTileK == 64, "the partial batches below are those of 64-deep steps");
    if (slices == 4) {
      mma_batch<4, Mma, Tile::kAKMajor, Tile::kBKMajor, kABytes>(acc, stage, group0, accumulate);
    } else if (slices == 3) {
      mma_batch<3, Mma, Tile::kAKMajor, Tile::kBKMajor, kABytes>(acc, stage, group0, accumulate);
    } else if (slices == 2) {
      mma_batch<2, Mma, Tile::kAKMajor, Tile::kBKMajor, kABytes>(acc, stage, group0, accumulate);
    } else {
      mma_batch<1, Mma, Tile::kAKMajor, Tile::kBKMajor, kABytes>(acc, stage, group0, accumulate);
    }
  } else {
    mma_batch<Config::kTileK / 16, Mma, Tile::kAKMajor, Tile::kBKMajor, kABytes>(acc, stage, group0, accumulate);
  }
}

}  // namespace sm90
}  // namespace moejit
