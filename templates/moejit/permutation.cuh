// Moving token rows between token order and the expert-sorted, block-padded row order that
// routing.cuh lays out: one warp per output row, 16-byte vectors, fp32 arithmetic.
//
//   padded_gather          rows[r]   = tokens[assignment(r) / top_k], zeros for padding rows
//   weighted_scatter       tokens[t] = sum_j w[t, j] * rows[slot(t, j)]   (w = 1: gather's
//                                      backward, which sums the top_k copies' gradients)
//   weighted_scatter_grad  d rows[r] = w[a] * d tokens[a / top_k]   (zeros for padding), and
//                          d w[a]    = <d tokens[a / top_k], rows_forward[r]>,  a = assignment(r)
//
// Every output element is written exactly once, by one warp, with no atomics: the results
// are deterministic, and the padding rows the block-sparse products read are zeros, so they
// add nothing to the weight gradients.
#pragma once

#include "moejit/debug_checks.cuh"
#include "moejit/element.cuh"
#include "moejit/routing_params.h"

namespace moejit {

inline constexpr int kPermutationThreads = 256;
inline constexpr int kPermutationWarps = kPermutationThreads / 32;

namespace permutation_detail {

template <long long kWidth>
__device__ __forceinline__ const Chunk16* row_chunks(const void* base, long long row) {
  return static_cast<const Chunk16*>(base) + row * (kWidth / 8);
}

template <long long kWidth>
__device__ __forceinline__ Chunk16* row_chunks(void* base, long long row) {
  return static_cast<Chunk16*>(base) + row * (kWidth / 8);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) v += __shfl_xor_sync(0xffffffffu, v, d);
  return v;
}

// The assignment in expert-sorted row `row`; for a padding row (-1) the warp writes zeros
// to `out` instead and the caller has nothing more to do.
template <long long kWidth>
__device__ __forceinline__ int assignment_or_zero_row(const RoutingParams& p, long long row, Chunk16* out,
                                                      int lane) {
  const int a = p.row_assignment[row];
  MOEJIT_CHECK(a >= -1 && a < p.assignments);
  if (a < 0) {
    const Chunk16 zero{0u, 0u, 0u, 0u};
    for (int v = lane; v < kWidth / 8; v += 32) out[v] = zero;
  }
  return a;
}

}  // namespace permutation_detail

template <class Element, int kTopK, long long kWidth>
__global__ void __launch_bounds__(kPermutationThreads) padded_gather(const RoutingParams p) {
  namespace d = permutation_detail;
  static_assert(kWidth % 8 == 0, "rows move in 16-byte vectors of eight elements");
  const int lane = threadIdx.x & 31;
  const long long row = static_cast<long long>(blockIdx.x) * kPermutationWarps + (threadIdx.x >> 5);
  if (row >= p.rows) return;
  Chunk16* out = d::row_chunks<kWidth>(p.output, row);
  const int a = d::assignment_or_zero_row<kWidth>(p, row, out, lane);
  if (a < 0) return;
  const Chunk16* in = d::row_chunks<kWidth>(p.input, a / kTopK);
  for (int v = lane; v < kWidth / 8; v += 32) out[v] = in[v];
}

template <class Element, int kTopK, long long kWidth>
__global__ void __launch_bounds__(kPermutationThreads) weighted_scatter(const RoutingParams p) {
  namespace d = permutation_detail;
  static_assert(kWidth % 8 == 0, "rows move in 16-byte vectors of eight elements");
  const int lane = threadIdx.x & 31;
  const long long token = static_cast<long long>(blockIdx.x) * kPermutationWarps + (threadIdx.x >> 5);
  if (token >= p.tokens) return;
  const Chunk16* rows[kTopK];
  float weight[kTopK];
#pragma unroll
  for (int j = 0; j < kTopK; ++j) {
    const long long a = token * kTopK + j;
    const int slot = p.slots[a];
    MOEJIT_CHECK(slot >= 0 && slot < p.rows);
    rows[j] = d::row_chunks<kWidth>(p.input, slot);
    weight[j] = p.weights != nullptr ? p.weights[a] : 1.0f;
  }
  Chunk16* out = d::row_chunks<kWidth>(p.output, token);
  for (int v = lane; v < kWidth / 8; v += 32) {
    float sum[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll
    for (int j = 0; j < kTopK; ++j) {
      float x[8];
      unpack8<Element>(rows[j][v], x);
#pragma unroll
      for (int i = 0; i < 8; ++i) sum[i] += weight[j] * x[i];
    }
    out[v] = pack8<Element>(sum);
  }
}

template <class Element, int kTopK, long long kWidth>
__global__ void __launch_bounds__(kPermutationThreads) weighted_scatter_grad(const RoutingParams p) {
  namespace d = permutation_detail;
  static_assert(kWidth % 8 == 0, "rows move in 16-byte vectors of eight elements");
  const int lane = threadIdx.x & 31;
  const long long row = static_cast<long long>(blockIdx.x) * kPermutationWarps + (threadIdx.x >> 5);
  if (row >= p.rows) return;
  Chunk16* out = d::row_chunks<kWidth>(p.output, row);
  const int a = d::assignment_or_zero_row<kWidth>(p, row, out, lane);
  if (a < 0) return;
  const Chunk16* grad = d::row_chunks<kWidth>(p.input, a / kTopK);
  const Chunk16* forward = d::row_chunks<kWidth>(p.rows_forward, row);
  const float w = p.weights[a];
  float dot = 0.0f;
  for (int v = lane; v < kWidth / 8; v += 32) {
    float g[8], y[8], scaled[8];
    unpack8<Element>(grad[v], g);
    unpack8<Element>(forward[v], y);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      dot += g[i] * y[i];
      scaled[i] = w * g[i];
    }
    out[v] = pack8<Element>(scaled);
  }
  dot = d::warp_sum(dot);
  if (lane == 0) p.weight_grad[a] = dot;
}

}  // namespace moejit
