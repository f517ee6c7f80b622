// Shared memory of one wgmma thread block (docs/kernels/wgmma.md): the ring of operand
// stages, the C buffers the epilogue stages its stores in, the ring's full and empty
// mbarriers, and the ids of the named barriers.
#pragma once

#include "moejit/cluster.cuh"
#include "moejit/mbarrier.cuh"

namespace moejit {

// Shared memory and register budget of one thread block. The host mirrors the byte count
// in compiler/tile_config.cpp (wgmma_shared_bytes) and the generated source checks the two
// agree (HostCheckedLayout); the kernel traps if it got less.
template <int kTileM, int kTileN, int kTileK, int kStages, int kConsumers, bool kPingpong>
struct Sm90Layout {
  static constexpr int kConsumerWarpgroups = kConsumers;
  static constexpr int kThreads = (kConsumerWarpgroups + 1) * 128;
  // Rows of a tile one consumer warpgroup computes (compiler: wgmma_warpgroup_rows).
  static constexpr int kWarpgroupRows = kPingpong ? kTileM : kTileM / kConsumerWarpgroups;
  static constexpr int kABytes = kTileM * kTileK * 2;
  static constexpr int kBBytes = kTileN * kTileK * 2;
  static constexpr int kStageBytes = kABytes + kBBytes;
  // One C buffer: the tile's rows by two 64-column chunks (all of a narrower tile). Wider
  // tiles are staged chunk by chunk, alternating between the two, so the shared memory a
  // whole C tile would take goes to another stage.
  static constexpr int kCChunks = kTileN / 64;
  static constexpr int kCChunkBuffers = kCChunks < 2 ? kCChunks : 2;
  static constexpr int kCBytes = kTileM * 128 * kCChunkBuffers;
  static constexpr int kCBuffers = kPingpong ? kConsumerWarpgroups : 1;
  // The dynamic shared memory base is only 16-byte aligned by contract; the swizzled
  // tiles need 1024, so the kernel rounds up within this slack.
  static constexpr int kAlignSlack = 1024;
  static constexpr int kCOffset = kStages * kStageBytes;
  static constexpr int kBarrierOffset = kCOffset + kCBuffers * kCBytes;
  static constexpr int kSharedBytes = kAlignSlack + kBarrierOffset + 2 * kStages * 8;
  // Registers: ptxas gives every thread the launch bound's share of the SM's 65536 (one
  // block per SM). The producer keeps kProducerRegisters and the consumers take the rest;
  // setmaxnreg only moves registers within the block's allocation, so the split must fit
  // it or setmaxnreg.inc waits forever. compiler/tile_config.cpp mirrors these numbers and
  // tests/cpp checks ptxas's count against them.
  static constexpr int kLaunchRegisters = 65536 / kThreads / 8 * 8 > 240 ? 240 : 65536 / kThreads / 8 * 8;
  static constexpr int kProducerRegisters = 40;
  static constexpr int kConsumerRegistersRaw =
      (kLaunchRegisters * kThreads - kProducerRegisters * 128) / (kConsumerWarpgroups * 128) / 8 * 8;
  static constexpr int kConsumerRegisters = kConsumerRegistersRaw > 240 ? 240 : kConsumerRegistersRaw;
};

namespace sm90 {

__device__ __forceinline__ unsigned dynamic_shared_bytes() {
  unsigned bytes;
  asm("mov.u32 %0, %%dynamic_smem_size;\n" : "=r"(bytes));
  return bytes;
}

// The hardware named barriers the kernel uses (bar.sync ids; 0 is __syncthreads).
struct NamedBarriers {
  // Consumer warpgroup w's 128 threads, around each chunk the epilogue stages.
  __device__ __forceinline__ static int epilogue(int warpgroup) { return 1 + warpgroup; }
  // Pingpong: warpgroup w may start its next tile's mainloop (w's 128 threads wait, the
  // other warpgroup's 128 signal).
  __device__ __forceinline__ static int turn(int warpgroup) { return 3 + warpgroup; }
};

// Addresses in the block's shared memory: stage s's A and B tiles, each consumer
// warpgroup's C buffer, and stage s's barriers full[s] (the producer's copies have
// landed: one arrival and the stage's bytes) and empty[s] (every consumer warpgroup that
// reads the stage, in every CTA of the cluster, is done with it).
template <class Layout, int kStages>
struct SharedStorage {
  unsigned base;   // 1024-byte aligned, as the swizzled tiles need
  unsigned full0;
  unsigned empty0;

  __device__ __forceinline__ explicit SharedStorage(unsigned dynamic_base)
      : base((dynamic_base + 1023u) & ~1023u), full0(base + Layout::kBarrierOffset), empty0(full0 + 8 * kStages) {}

  __device__ __forceinline__ unsigned stage(int s) const { return base + s * Layout::kStageBytes; }
  __device__ __forceinline__ unsigned full(int s) const { return full0 + 8 * s; }
  __device__ __forceinline__ unsigned empty(int s) const { return empty0 + 8 * s; }
  __device__ __forceinline__ unsigned c_buffer(int warpgroup) const {
    return base + Layout::kCOffset + (Layout::kCBuffers > 1 ? warpgroup * Layout::kCBytes : 0);
  }
  // A word no epilogue writes before the kernel's start-up is over.
  __device__ __forceinline__ unsigned scratch() const { return base + Layout::kCOffset; }

  // Called by one thread. A launch with less shared memory than this layout would corrupt
  // memory silently: it stops with an error instead. empty[s] counts one release per
  // consumer warpgroup that reads the stage, from every CTA of the cluster.
  template <int kReleases>
  __device__ __forceinline__ void init_barriers() const {
    if (dynamic_shared_bytes() < static_cast<unsigned>(Layout::kSharedBytes)) __trap();
#pragma unroll
    for (int s = 0; s < kStages; ++s) {
      mbarrier::init(full(s), 1);
      mbarrier::init(empty(s), kReleases);
    }
    mbarrier::fence_init();
  }
};

}  // namespace sm90
}  // namespace moejit
