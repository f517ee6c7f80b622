// Routing bookkeeping on the GPU, with no host synchronisation: from the top-k expert
// choices to the expert-sorted row of every assignment and the block-sparse topology of
// the expert products. It is a stable counting sort in three kernels:
//
//   expert_histogram  grid = chunks   per chunk of kRoutingChunk assignments, how many go to
//                                     each expert
//   expert_bins       grid = 1        per expert: exclusive prefix over chunks (the lanes of
//                                     a warp segment scan one expert's chunks together),
//                                     count, rows padded to the block size, first row (bins);
//                                     the topology's offsets, live rows and the padding marks
//                                     of row_assignment: all sized by the experts or the
//                                     block rows, not by the assignments
//   expert_slots      grid = chunks   each assignment's row: its expert's first row + the
//                     (at least 1)    assignments to that expert in earlier chunks, earlier
//                                     rounds, earlier warps and earlier lanes; and a
//                                     grid-stride share of the topology's block entries
//                                     (block rows x ffn column blocks), which grow with the
//                                     assignments and would make one thread block the
//                                     bottleneck at hundreds of thousands of tokens
//
// The host sizes every buffer for the most block rows the routing can need (see
// compiler/routing_layout.hpp) instead of reading the counts back, so a layer call
// never waits for the GPU and can be captured in a CUDA graph. The topology's
// block-diagonal structure (expert e's rows x expert e's ffn column blocks) is closed-form
// given the per-expert block counts, so each metadata entry is computed independently.
#pragma once

#include "moejit/debug_checks.cuh"
#include "moejit/routing_params.h"

namespace moejit {

inline constexpr int kHistogramThreads = 512;
inline constexpr int kSlotsThreads = 256;
inline constexpr int kBinsThreads = 1024;

namespace routing_detail {

// Lanes of this warp below the calling lane.
__device__ __forceinline__ unsigned lanes_below() {
  unsigned mask;
  asm("mov.u32 %0, %%lanemask_lt;" : "=r"(mask));
  return mask;
}

// Exclusive prefix sum over the threads of a block of kThreads (a multiple of 32); also
// returns the block's total. `warp_totals` is shared scratch of kThreads / 32 ints.
template <int kThreads>
__device__ int block_exclusive_scan(int value, int* warp_totals, int& total) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  int inclusive = value;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const int other = __shfl_up_sync(0xffffffffu, inclusive, d);
    if (lane >= d) inclusive += other;
  }
  if (lane == 31) warp_totals[warp] = inclusive;
  __syncthreads();
  if (warp == 0) {
    constexpr int kWarps = kThreads / 32;
    int t = lane < kWarps ? warp_totals[lane] : 0;
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
      const int other = __shfl_up_sync(0xffffffffu, t, d);
      if (lane >= d) t += other;
    }
    if (lane < kWarps) warp_totals[lane] = t;   // inclusive prefix of the warp totals
  }
  __syncthreads();
  const int before = warp == 0 ? 0 : warp_totals[warp - 1];
  total = warp_totals[kThreads / 32 - 1];
  __syncthreads();   // warp_totals may be reused by the caller
  return before + inclusive - value;
}

// The expert owning block row `r` (r < block_start[kExperts]): the last e with
// block_start[e] <= r. Experts without rows have block_start[e] == block_start[e+1] and
// are skipped by taking the last such e.
template <int kExperts>
__device__ __forceinline__ int expert_of(const int* block_start, int r) {
  int lo = 0, hi = kExperts;   // invariant: block_start[lo] <= r < block_start[hi]
  while (hi - lo > 1) {
    const int mid = (lo + hi) >> 1;
    if (block_start[mid] <= r) lo = mid;
    else hi = mid;
  }
  return lo;
}

// Lanes that scan one expert's chunk counts together in expert_bins: the largest power of
// two up to a warp that leaves a group for every expert in the thread block. A power of two
// dividing 32, so a group never straddles warps.
__host__ __device__ constexpr int lanes_per_expert(int experts, int threads) {
  int lanes = 32;
  while (lanes > 1 && lanes * experts > threads) lanes >>= 1;
  return lanes;
}

// Entries [first, max_nnz) step `stride` of the topology's block lists (row-major and
// column-major), given each expert's first block row (block_start[kExperts] = used block
// rows). Unused entries: in-range values, and an unused column-major entry points at the
// unused stored block of the same index, so both orders list every stored block once (the
// wgmma sdd walks the column-major order and zeros the blocks past live_nnz).
template <int kExperts>
__device__ void fill_block_entries(const RoutingParams& p, const int* block_start, int first, int stride) {
  const int col_blocks = p.ffn_blocks;
  const int live = block_start[kExperts] * col_blocks;
  const int max_nnz = p.max_block_rows * col_blocks;
  for (int i = first; i < max_nnz; i += stride) {
    int row = 0, col = 0, row_t = 0, stored_t = i;
    if (i < live) {
      // Row-major entry i: block row i / col_blocks, the j-th column block of its expert.
      row = i / col_blocks;
      const int e = expert_of<kExperts>(block_start, row);
      col = e * col_blocks + i % col_blocks;
      // Column-major entry i: expert e's entries are block_start[e] * col_blocks onwards,
      // column by column, each column its nb block rows (entry i lies in the same expert's
      // range in both orders).
      const int nb = block_start[e + 1] - block_start[e];
      const int local = i - block_start[e] * col_blocks;
      row_t = block_start[e] + local % nb;
      stored_t = row_t * col_blocks + local / nb;
    }
    p.row_indices[i] = row;
    p.column_indices[i] = col;
    p.column_indices_t[i] = row_t;
    p.block_offsets_t[i] = stored_t;
  }
}

}  // namespace routing_detail

template <int kExperts>
__global__ void __launch_bounds__(kHistogramThreads) expert_histogram(const RoutingParams p) {
  __shared__ int counts[kExperts];
  for (int e = threadIdx.x; e < kExperts; e += kHistogramThreads) counts[e] = 0;
  __syncthreads();
  const int begin = blockIdx.x * kRoutingChunk;
  const int end = min(begin + kRoutingChunk, p.assignments);
  // Whole warps iterate together (for __match_any_sync); lanes past the end sit out.
  for (int base = begin; base < end; base += kHistogramThreads) {
    const int a = base + static_cast<int>(threadIdx.x);
    const int e = a < end ? static_cast<int>(p.expert_indices[a]) : -1;
    MOEJIT_CHECK(e >= -1 && e < kExperts && (a >= end || e >= 0));
    // One shared atomic per distinct expert in the warp, not per lane: when one expert
    // takes every token, 32 lanes would otherwise serialise on one address.
    const unsigned peers = __match_any_sync(0xffffffffu, e);
    if (e >= 0 && (peers & routing_detail::lanes_below()) == 0) atomicAdd(&counts[e], __popc(peers));
  }
  __syncthreads();
  for (int e = threadIdx.x; e < kExperts; e += kHistogramThreads) p.chunk_counts[blockIdx.x * kExperts + e] = counts[e];
}

template <int kExperts, int kBlock, long long kFfn>
__global__ void __launch_bounds__(kBinsThreads) expert_bins(const RoutingParams p) {
  static_assert(kExperts <= kBinsThreads, "one thread per expert in the scan over experts");
  constexpr int kColBlocks = static_cast<int>(kFfn / kBlock);   // ffn column blocks per expert
  constexpr int kLanes = routing_detail::lanes_per_expert(kExperts, kBinsThreads);
  __shared__ int block_start[kExperts + 1];
  __shared__ int counts[kExperts];
  __shared__ int warp_totals[kBinsThreads / 32];
  const int chunks = (p.assignments + kRoutingChunk - 1) / kRoutingChunk;
  const int t = threadIdx.x;

  // Per expert: exclusive prefix over the chunks (in place, for expert_slots) and the count.
  // kLanes lanes take kLanes chunks of one expert per round and scan them with shuffles, so
  // the rounds are chunks / kLanes, not chunks. Every thread runs every round (the
  // shuffles need whole warps); threads past the experts carry zeros.
  {
    const int e = t / kLanes;
    const int lane = t % kLanes;
    const bool scans = e < kExperts;
    int running = 0;
    for (int base = 0; base < chunks; base += kLanes) {
      const int c = base + lane;
      const bool mine = scans && c < chunks;
      const int v = mine ? p.chunk_counts[c * kExperts + e] : 0;
      int inclusive = v;
#pragma unroll
      for (int d = 1; d < kLanes; d <<= 1) {
        const int other = __shfl_up_sync(0xffffffffu, inclusive, d, kLanes);
        if (lane >= d) inclusive += other;
      }
      if (mine) p.chunk_counts[c * kExperts + e] = running + inclusive - v;
      running += __shfl_sync(0xffffffffu, inclusive, kLanes - 1, kLanes);
    }
    if (scans && lane == 0) {
      counts[e] = running;
      p.expert_counts[e] = running;
    }
  }
  __syncthreads();
  const int blocks = t < kExperts ? (counts[t] + kBlock - 1) / kBlock : 0;
  int total_blocks = 0;
  const int first = routing_detail::block_exclusive_scan<kBinsThreads>(blocks, warp_totals, total_blocks);
  if (t < kExperts) block_start[t] = first;
  if (t == 0) block_start[kExperts] = total_blocks;
  __syncthreads();
  MOEJIT_CHECK(total_blocks <= p.max_block_rows);
  MOEJIT_CHECK(p.ffn_blocks == kColBlocks);

  const int live = total_blocks * kColBlocks;
  if (t == 0) *p.live_nnz = live;
  for (int e = t; e <= kExperts; e += kBinsThreads) p.bins[e] = block_start[e] * kBlock;
  // CSR offsets: block rows past the used ones are empty, so dsd writes zeros there.
  for (int r = t; r <= p.max_block_rows; r += kBinsThreads) p.offsets[r] = min(r, total_blocks) * kColBlocks;
  // CSC offsets: column c of expert e holds that expert's block rows.
  for (int c = t; c <= kExperts * kColBlocks; c += kBinsThreads) {
    if (c == kExperts * kColBlocks) {
      p.offsets_t[c] = live;
    } else {
      const int e = c / kColBlocks;
      p.offsets_t[c] = block_start[e] * kColBlocks + (c % kColBlocks) * (block_start[e + 1] - block_start[e]);
    }
  }
  // The block entries themselves (max_block_rows * kColBlocks of each list) are
  // expert_slots' work, spread over its grid.
  // Rows in use of each block row: full blocks, then each expert's last one (a prefix of
  // it), then none past the used block rows. dsd with A transposed (the weight gradients)
  // skips the reduction steps past them.
  for (int r = t; r < p.max_block_rows; r += kBinsThreads) {
    int rows = 0;
    if (r < total_blocks) {
      const int e = routing_detail::expert_of<kExperts>(block_start, r);
      rows = min(kBlock, counts[e] - (r - block_start[e]) * kBlock);
    }
    p.live_rows[r] = rows;
  }
  // Padding rows: each expert's rows after its assignments, then every row past the used ones.
  for (int i = t; i < kExperts * kBlock; i += kBinsThreads) {
    const int e = i / kBlock;
    const int row = block_start[e] * kBlock + counts[e] + i % kBlock;
    if (row < block_start[e + 1] * kBlock) p.row_assignment[row] = -1;
  }
  for (int row = total_blocks * kBlock + t; row < p.max_block_rows * kBlock; row += kBinsThreads) {
    p.row_assignment[row] = -1;
  }
}

template <int kExperts>
__global__ void __launch_bounds__(kSlotsThreads) expert_slots(const RoutingParams p) {
  constexpr int kWarps = kSlotsThreads / 32;
  __shared__ int next_row[kExperts];              // next free row of each expert for this chunk
  __shared__ int warp_counts[kWarps][kExperts];   // this round's assignments per warp and expert
  __shared__ int block_start[kExperts + 1];       // first block row of each expert (bins / block)
  const int warp = threadIdx.x >> 5;
  const int begin = blockIdx.x * kRoutingChunk;
  const int end = min(begin + kRoutingChunk, p.assignments);
  for (int e = threadIdx.x; e <= kExperts; e += kSlotsThreads) {
    block_start[e] = p.bins[e] / p.block;
    // With no assignment at all the grid is one block and there is no chunk to read.
    if (e < kExperts && begin < end) next_row[e] = p.bins[e] + p.chunk_counts[blockIdx.x * kExperts + e];
  }
  for (int base = begin; base < end; base += kSlotsThreads) {
    for (int i = threadIdx.x; i < kWarps * kExperts; i += kSlotsThreads) (&warp_counts[0][0])[i] = 0;
    __syncthreads();
    const int a = base + static_cast<int>(threadIdx.x);
    const int e = a < end ? static_cast<int>(p.expert_indices[a]) : -1;
    const unsigned peers = __match_any_sync(0xffffffffu, e);
    const int rank_in_warp = __popc(peers & routing_detail::lanes_below());
    if (e >= 0 && rank_in_warp == 0) warp_counts[warp][e] = __popc(peers);
    __syncthreads();
    if (e >= 0) {
      int row = next_row[e] + rank_in_warp;
      for (int w = 0; w < warp; ++w) row += warp_counts[w][e];
      p.slots[a] = row;
      p.row_assignment[row] = a;
    }
    __syncthreads();
    for (int x = threadIdx.x; x < kExperts; x += kSlotsThreads) {
      int round = 0;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) round += warp_counts[w][x];
      next_row[x] += round;
    }
    // The next round clears warp_counts only after everyone has read it.
    __syncthreads();
  }
  __syncthreads();   // block_start is read by every thread below
  routing_detail::fill_block_entries<kExperts>(p, block_start, blockIdx.x * kSlotsThreads + threadIdx.x,
                                               gridDim.x * kSlotsThreads);
}

}  // namespace moejit
