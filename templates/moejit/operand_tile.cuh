// One operand tile of a pipeline stage in shared memory: its swizzled layout, the
// asynchronous copy that fills it from global memory, and the ldmatrix loads that turn
// it into tensor-core fragments.
#pragma once

#include "moejit/ptx.cuh"

namespace moejit {

// kRows x kCols 16-bit elements, rows contiguous, stored in 16-byte chunks whose index is
// XOR-ed with the row. ldmatrix reads one chunk from each of 8 consecutive rows; without
// the swizzle those 8 chunks sit in the same four banks whenever a row is a multiple of
// 128 bytes long, an 8-way conflict. With it the 8 chunks cover all 32 banks.
template <int kRows, int kCols>
struct SwizzledTile {
  static constexpr int kChunks = kCols / 8;   // 16-byte chunks per row
  static constexpr int kBytes = kRows * kCols * 2;
  static_assert(kCols % 8 == 0 && (kChunks & (kChunks - 1)) == 0, "rows are a power-of-two number of chunks");

  static __device__ __forceinline__ int offset(int row, int chunk) {
    int physical;
    if constexpr (kChunks >= 8) {
      physical = chunk ^ (row & 7);
    } else {
      // Short rows: 8/kChunks rows share one 128-byte line, so rotate by the line index.
      physical = chunk ^ ((row / (8 / kChunks)) & (kChunks - 1));
    }
    return row * (kCols * 2) + physical * 16;
  }
};

// The logical operand is kMN x kK (A: M x K, B: N x K). kKMajor: K is the contiguous
// dimension in global memory, and the tile keeps that layout (rows = MN); otherwise rows
// are K and MN is contiguous, and fragments are loaded with ldmatrix.trans. Keeping the
// global layout in shared memory makes every global read a 16-byte coalesced access.
template <int kMN, int kK, bool kKMajor>
struct OperandTile {
  using Layout = SwizzledTile<kKMajor ? kMN : kK, kKMajor ? kK : kMN>;
  static constexpr int kBytes = Layout::kBytes;

  // Issues this thread's share of the copy. `src` points at logical element (0, 0) of the
  // tile and `ld` is the distance in elements between consecutive stored rows.
  template <int kThreads>
  static __device__ __forceinline__ void load_async(unsigned smem, const unsigned short* src, long long ld,
                                                    int thread) {
    constexpr int kTotal = kMN * kK / 8;
    constexpr int kIters = (kTotal + kThreads - 1) / kThreads;
#pragma unroll
    for (int i = 0; i < kIters; ++i) {
      const int c = thread + i * kThreads;
      if (kTotal % kThreads == 0 || c < kTotal) {
        const int row = c / Layout::kChunks;
        const int chunk = c % Layout::kChunks;
        ptx::cp_async_16(smem + Layout::offset(row, chunk), src + row * ld + chunk * 8);
      }
    }
  }

  // One 16(MN) x 16(K) block at (mn0, k0) as four 8x8 matrices. The order of the four
  // matrices is the mma operand's register order: for A (kBOrder false) a0..a3 are
  // (m0-7, k0-7), (m8-15, k0-7), (m0-7, k8-15), (m8-15, k8-15); for B (kBOrder true)
  // r0, r1 are the two K halves of columns n0-7 and r2, r3 those of n8-15.
  template <bool kBOrder>
  static __device__ __forceinline__ void load_fragment(unsigned (&r)[4], unsigned smem, int mn0, int k0, int lane) {
    const int matrix = lane >> 3;
    const int row_in_matrix = lane & 7;
    const int mn_half = kBOrder ? (matrix >> 1) : (matrix & 1);
    const int k_half = kBOrder ? (matrix & 1) : (matrix >> 1);
    if constexpr (kKMajor) {
      ptx::ldmatrix_x4(r, smem + Layout::offset(mn0 + 8 * mn_half + row_in_matrix, (k0 >> 3) + k_half));
    } else {
      ptx::ldmatrix_x4_trans(r, smem + Layout::offset(k0 + 8 * k_half + row_in_matrix, (mn0 >> 3) + mn_half));
    }
  }
};

}  // namespace moejit
