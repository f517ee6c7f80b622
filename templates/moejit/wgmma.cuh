// Warpgroup matrix multiply (wgmma, sm_90a): shared-memory matrix descriptors and the
// fences around the asynchronous instructions. The instructions themselves are in
// wgmma_mma.cuh.
#pragma once

#include "moejit/wgmma_mma.cuh"

namespace moejit {
namespace wgmma {

// A matrix descriptor for an operand tile stored with the 128-byte swizzle, the layout
// TMA writes with CU_TENSOR_MAP_SWIZZLE_128B: rows of 128 bytes (64 16-bit elements) in
// 1024-byte atoms of 8 rows, the 16-byte chunks of row r XOR-permuted by r % 8. The
// permutation is a function of the address bits, so tiles start on 1024-byte boundaries
// and the descriptor's base offset stays 0.
//   K-major tile (rows along M/N, K contiguous): consecutive 8-row groups lie `stride`
//     bytes apart (1024 for a dense tile); the leading offset is unused with swizzling
//     (1 by convention). Advancing K by 16 elements moves the start by 32 bytes.
//   MN-major tile (rows along K, M/N contiguous in 64-element chunks): `leading` is the
//     distance between 64-element chunks of M/N, `stride` between 8-row groups of K.
//     Advancing K by 16 moves the start by two 8-row groups.
// Fields (PTX ISA, "matrix descriptor"): start address >> 4 in bits 0-13, leading byte
// offset >> 4 in 16-29, stride byte offset >> 4 in 32-45, base offset in 49-51, swizzle
// mode in 62-63 (1 = 128-byte swizzle).
__device__ __forceinline__ unsigned long long descriptor_sw128(unsigned smem_address, unsigned leading,
                                                               unsigned stride) {
  return static_cast<unsigned long long>((smem_address & 0x3FFFF) >> 4) |
         (static_cast<unsigned long long>((leading >> 4) & 0x3FFF) << 16) |
         (static_cast<unsigned long long>((stride >> 4) & 0x3FFF) << 32) | (1ull << 62);
}

// Before the first wgmma of a batch: orders earlier register and shared-memory accesses
// of this warpgroup before the asynchronous instructions read them.
__device__ __forceinline__ void fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }

__device__ __forceinline__ void commit_group() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }

// Waits until at most `kPending` committed batches are still running.
template <int kPending>
__device__ __forceinline__ void wait_group() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}

// The accumulators belong to the asynchronous instructions between issue and wait: this
// empty asm pins them in their registers, so the compiler neither moves reads or writes
// of them across the fences nor copies them elsewhere while a wgmma is in flight.
template <int kCount>
__device__ __forceinline__ void fence_accumulators(float (&d)[kCount]) {
#pragma unroll
  for (int i = 0; i < kCount; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

}  // namespace wgmma
}  // namespace moejit
