// A warp's share of the C tile: its fp32 accumulators and the tensor-core step that
// multiplies one 16-deep K slice of the A and B tiles in shared memory into them.
#pragma once

#include "moejit/element.cuh"

namespace moejit {

template <class Element, int kWarpM, int kWarpN>
struct WarpMma {
  static constexpr int kFragsM = kWarpM / 16;   // m16 rows of mma.m16n8k16
  static constexpr int kFragsN = kWarpN / 8;    // n8 columns
  static_assert(kWarpM % 16 == 0 && kWarpN % 16 == 0, "a warp owns whole 16x16 tiles");

  float acc[kFragsM][kFragsN][4];

  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int i = 0; i < kFragsM; ++i)
#pragma unroll
      for (int j = 0; j < kFragsN; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;
  }

  // C[m0:m0+kWarpM, n0:n0+kWarpN] += A[m0.., k0:k0+16] x B[k0:k0+16, n0..].
  template <class ATile, class BTile>
  __device__ __forceinline__ void step(unsigned a_smem, unsigned b_smem, int m0, int n0, int k0, int lane) {
    unsigned a[kFragsM][4];
    unsigned b[kFragsN / 2][4];
#pragma unroll
    for (int i = 0; i < kFragsM; ++i) ATile::template load_fragment<false>(a[i], a_smem, m0 + 16 * i, k0, lane);
#pragma unroll
    for (int j = 0; j < kFragsN / 2; ++j) BTile::template load_fragment<true>(b[j], b_smem, n0 + 16 * j, k0, lane);
#pragma unroll
    for (int i = 0; i < kFragsM; ++i)
#pragma unroll
      for (int j = 0; j < kFragsN; ++j)
        ElementOps<Element>::mma_16x8x16(acc[i][j], a[i], b[j / 2][(j % 2) * 2], b[j / 2][(j % 2) * 2 + 1]);
  }
};

}  // namespace moejit
