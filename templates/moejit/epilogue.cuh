// Writing the C tile: accumulators are converted to the element type and staged through
// shared memory, so global memory sees full 16-byte coalesced row segments instead of the
// scattered 4-byte pieces each thread's mma fragment holds.
#pragma once

#include "moejit/element.cuh"

namespace moejit {

// Padding each staged row by 8 elements (16 bytes) shifts consecutive rows by four banks,
// so the 8 rows x 4 columns of a fragment store land in 32 different banks.
template <int kTileM, int kTileN>
struct EpilogueLayout {
  static constexpr int kRowElements = kTileN + 8;
  static constexpr int kBytes = kTileM * kRowElements * 2;
};

// Zeros over a C tile (for a thread block with nothing to compute), in 16-byte stores.
template <int kTileM, int kTileN, int kThreads>
__device__ __forceinline__ void zero_c_tile(unsigned short* c, long long ldc, int thread) {
  constexpr int kChunksPerRow = kTileN / 8;
  const Chunk16 zero{0u, 0u, 0u, 0u};
  for (int i = thread; i < kTileM * kChunksPerRow; i += kThreads) {
    *reinterpret_cast<Chunk16*>(c + (i / kChunksPerRow) * ldc + (i % kChunksPerRow) * 8) = zero;
  }
}

// Call after the mainloop's last shared-memory read (the caller synchronises first).
template <class Element, int kTileM, int kTileN, int kThreads, class Mma>
__device__ __forceinline__ void store_c_tile(const Mma& mma, unsigned char* smem, int warp_m0, int warp_n0, int lane,
                                             int thread, unsigned short* c, long long ldc) {
  using Layout = EpilogueLayout<kTileM, kTileN>;
  unsigned short* staged = reinterpret_cast<unsigned short*>(smem);
  const int group = lane >> 2;   // fragment row within an 8-row half
  const int pair = lane & 3;     // fragment column pair
#pragma unroll
  for (int i = 0; i < Mma::kFragsM; ++i) {
#pragma unroll
    for (int j = 0; j < Mma::kFragsN; ++j) {
      const int row = warp_m0 + 16 * i + group;
      const int col = warp_n0 + 8 * j + 2 * pair;
      *reinterpret_cast<unsigned*>(staged + row * Layout::kRowElements + col) =
          ElementOps<Element>::pack2(mma.acc[i][j][0], mma.acc[i][j][1]);
      *reinterpret_cast<unsigned*>(staged + (row + 8) * Layout::kRowElements + col) =
          ElementOps<Element>::pack2(mma.acc[i][j][2], mma.acc[i][j][3]);
    }
  }
  __syncthreads();
  constexpr int kChunksPerRow = kTileN / 8;
  constexpr int kChunks = kTileM * kChunksPerRow;
#pragma unroll
  for (int idx = thread; idx < kChunks; idx += kThreads) {
    const int row = idx / kChunksPerRow;
    const int chunk = idx % kChunksPerRow;
    *reinterpret_cast<Chunk16*>(c + row * ldc + chunk * 8) =
        *reinterpret_cast<const Chunk16*>(staged + row * Layout::kRowElements + chunk * 8);
  }
}

}  // namespace moejit
