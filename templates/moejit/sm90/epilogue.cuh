// The consumer warpgroups' epilogue: a tile's accumulators rounded to 16 bits, two to a
// register, as soon as its last wgmmas are done, then staged chunk by chunk in the C
// buffer (64 columns, the 128-byte swizzled layout of the operand tiles) and stored with
// TMA. The stores of cooperative 256-column tiles are deferred: one chunk after each of
// the next tile's first steps, while the tensor cores run them (Config::kDeferStores).
#pragma once

#include "moejit/ablation.cuh"
#include "moejit/bsr_gemm_sm90_params.h"
#include "moejit/bsr_tile_coords.cuh"
#include "moejit/element.cuh"
#include "moejit/ptx.cuh"
#include "moejit/tma.cuh"
#include "moejit/warpgroup.cuh"
#include "moejit/wgmma.cuh"

namespace moejit {
namespace sm90 {

template <class Config>
struct Epilogue {
  using Layout = typename Config::Layout;
  static constexpr int kMmaM = Config::kMmaM;
  static constexpr int kTileM = Config::kTileM;
  // A row pair's chunks: the first half of them the left block's, the rest the right's.
  static constexpr int kChunksPerPart = Config::kRowPairs ? Layout::kCChunks / 2 : Layout::kCChunks;

  const TmaDescriptor& map;   // C's tensor map
  unsigned c_buffer;          // this warpgroup's C buffer
  int barrier_id;             // this warpgroup's named barrier
  int warpgroup;
  int group0;                 // its first 64-row group of the tile
  int warp;
  int lane;
  int wg_thread;

  // The rounded tile waiting to be stored: its values, where this warpgroup's rows go (one
  // place, or one per block of a row pair, of which out_parts exist), whether it has rows
  // (not the missing block of a column pair), whether it still has to be stored, and
  // whether its tile had no step, so that it stores zeros instead.
  unsigned out16[kMmaM][Config::kTileN / 4];
  TileCoord out_at[2] = {};
  int out_parts = 0;
  bool out_rows = false;
  bool out_pending = false;
  bool out_zero = false;
  // The C buffer half the next chunk goes to. The halves alternate with this warpgroup's
  // stores, not with the chunk's number: the missing block of a pair stores nothing, and
  // the next tile's chunk 0 must not write the half a store may still be reading.
  int half = 0;

  __device__ __forceinline__ Epilogue(const TmaDescriptor& c_map, unsigned buffer, int barrier, int wg, int first_group,
                                      int warp_index, int lane_index, int thread)
      : map(c_map), c_buffer(buffer), barrier_id(barrier), warpgroup(wg), group0(first_group), warp(warp_index),
        lane(lane_index), wg_thread(thread) {}

  // Takes a tile's accumulators, rounded now: the next tile's first batch overwrites them.
  // Those of a tile without a step hold nothing of it: its epilogue stores zeros instead
  // (cheaper than zeroing the accumulators at every tile's start, which ptxas turns into a
  // select per accumulator while the tensor cores wait).
  template <class Tile, class Accumulators>
  __device__ __forceinline__ void take(const Accumulators& acc, const Tile& tile, int k_tiles, bool has_rows) {
#pragma unroll
    for (int i = 0; i < kMmaM; ++i) {
#pragma unroll
      for (int q = 0; q < Config::kTileN / 4; ++q) {
        out16[i][q] = ElementOps<typename Config::Element>::pack2(acc[i][2 * q], acc[i][2 * q + 1]);
      }
    }
    out_zero = k_tiles == 0;
    // This warpgroup's rows of C: its block of a column pair, its rows of each block of a
    // row pair, or its rows of the tile.
    if constexpr (Config::kColumnPairs) {
      out_at[0] = tile.c(warpgroup);
      out_parts = 1;
    } else if constexpr (Config::kRowPairs) {
#pragma unroll
      for (int part = 0; part < 2; ++part) out_at[part] = TileCoord{0, tile.c(part).y + 64 * group0};
      out_parts = tile.count;
    } else {
      out_at[0] = TileCoord{tile.c.x, tile.c.y + 64 * group0};
      out_parts = 1;
    }
    out_rows = has_rows;
    out_pending = true;
    if constexpr (!Config::kDeferStores) store();
  }

  // Stores the whole tile taken last.
  __device__ __forceinline__ void store() {
#pragma unroll
    for (int c = 0; c < Layout::kCChunks; ++c) store_chunk(c);
    out_pending = false;
  }

  // The last tile's stores, deferred into a tile that does not come.
  __device__ __forceinline__ void flush() {
    if (out_pending) {
#pragma unroll
      for (int c = 0; c < Layout::kCChunks; ++c) store_chunk(c);
    }
  }

  // Stages chunk `c` (a compile-time value in unrolled loops, so out16 stays in registers)
  // in one of the C buffer's halves and stores this warpgroup's rows of it with TMA, which
  // runs while the next chunk is staged in the other half.
  __device__ __forceinline__ void store_chunk(int c) {
    if constexpr (!ablate_epilogue()) {
      const int part = c / kChunksPerPart;
      if (!out_rows || part >= out_parts) return;   // the same in every thread of the warpgroup
      const unsigned buffer = c_buffer + half * (kTileM * 128);
      half = (half + 1) % Layout::kCChunkBuffers;
      // The store that last read this half (kCChunkBuffers stores ago, possibly of the
      // previous tile) must be done reading it.
      if (wg_thread == 0) tma::store_wait_read<Layout::kCChunkBuffers - 1>();
      warpgroup::named_barrier(barrier_id, 128);
      // Two copies of the loop, not a choice per fragment, which ptxas would predicate.
      if (out_zero) {
        stage_fragments<true>(buffer, c);
      } else {
        stage_fragments<false>(buffer, c);
      }
      tma::fence_shared_to_async();
      warpgroup::named_barrier(barrier_id, 128);
      if (wg_thread == 0) {
        const TileCoord at = part == 0 ? out_at[0] : out_at[1];
#pragma unroll
        for (int i = 0; i < kMmaM; ++i) {
          tma::store_2d(map, at.x + 64 * (c % kChunksPerPart), at.y + 64 * i, buffer + (group0 + i) * 8192);
        }
        tma::store_commit();
      }
    } else {
      // Ablated: the chunk's values still go somewhere, folded into one word per thread of
      // the idle C buffer; stored nowhere, ptxas would drop the wgmmas as dead code too.
      unsigned folded = 0;
#pragma unroll
      for (int i = 0; i < kMmaM; ++i) {
#pragma unroll
        for (int q = 16 * c; q < 16 * c + 16; ++q) folded ^= out16[i][q];
      }
      asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(c_buffer + 4 * threadIdx.x), "r"(folded) : "memory");
    }
  }

 private:
  // A warp writes its 16 rows x 16 columns at a time with one stmatrix (four 8x8 matrices:
  // column groups j and j + 1, rows 0-7 and 8-15, the accumulator fragments of wgmma's
  // layout); the swizzle puts each matrix's eight 16-byte rows in distinct bank groups.
  template <bool kZeros>
  __device__ __forceinline__ void stage_fragments(unsigned buffer, int c) {
#pragma unroll
    for (int i = 0; i < kMmaM; ++i) {
      // Lane l gives the address of row l % 8 of matrix l / 8.
      const int r = (group0 + i) * 64 + warp * 16 + (lane / 8 % 2) * 8 + lane % 8;
#pragma unroll
      for (int j = 8 * c; j < 8 * c + 8; j += 2) {
        const int group = j % 8 + lane / 16;   // this lane's 8-column group within the chunk
        const unsigned to = buffer + r * 128 + ((group ^ (r % 8)) * 16);
        if (kZeros) {
          ptx::stmatrix_x4(to, 0u, 0u, 0u, 0u);
        } else {
          ptx::stmatrix_x4(to, out16[i][2 * j], out16[i][2 * j + 1], out16[i][2 * j + 2], out16[i][2 * j + 3]);
        }
      }
    }
  }
};

}  // namespace sm90
}  // namespace moejit
