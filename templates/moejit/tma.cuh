// The tensor memory accelerator (TMA, sm_90): 2-D and 3-D tile copies between global
// memory and shared memory described by a tensor map, issued by one thread. Loads
// complete on an mbarrier (the bytes they deliver count against its expected transaction
// count); stores are tracked by bulk async-groups.
#pragma once

#include "moejit/bsr_gemm_sm90_params.h"

namespace moejit {
namespace tma {

__device__ __forceinline__ unsigned long long descriptor_address(const TmaDescriptor& map) {
  return reinterpret_cast<unsigned long long>(&map);
}

// Fetches the tensor map into the TMA unit's cache ahead of the first copy.
__device__ __forceinline__ void prefetch_descriptor(const TmaDescriptor& map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(descriptor_address(map)) : "memory");
}

// Box at column x, row y of the map's tensor -> shared memory at `dst`; completes
// `mbarrier`'s transaction by the box's bytes. Out-of-bounds elements arrive as zeros.
__device__ __forceinline__ void load_2d(unsigned dst, const TmaDescriptor& map, int x, int y, unsigned mbarrier) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
          dst),
      "l"(descriptor_address(map)), "r"(x), "r"(y), "r"(mbarrier)
      : "memory");
}

// The same box, delivered to shared memory at `dst` and completing the mbarrier at
// `mbarrier` (offsets in this CTA, the same in each destination) of every CTA of the
// cluster whose rank has its bit set in `cta_mask`: one read of global memory (L2) feeds
// several CTAs. A destination's barrier may see these bytes before its own producer
// announces them (arrive_expect_tx): the transaction count may go negative in between,
// and the phase still cannot complete before that producer's arrival.
__device__ __forceinline__ void load_2d_multicast(unsigned dst, const TmaDescriptor& map, int x, int y,
                                                  unsigned mbarrier, unsigned short cta_mask) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
      " [%0], [%1, {%2, %3}], [%4], %5;\n" ::"r"(dst),
      "l"(descriptor_address(map)), "r"(x), "r"(y), "r"(mbarrier), "h"(cta_mask)
      : "memory");
}

// The 3-D forms of the two copies above, for the tensor maps of MN-major operands
// (compiler/tma_layout.hpp): coordinates {column within a 64-column chunk, row, chunk}.
// One copy moves a box of several chunks, each landing as its own block of rows.
__device__ __forceinline__ void load_3d(unsigned dst, const TmaDescriptor& map, int x, int y, int z,
                                        unsigned mbarrier) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n" ::
          "r"(dst),
      "l"(descriptor_address(map)), "r"(x), "r"(y), "r"(z), "r"(mbarrier)
      : "memory");
}

__device__ __forceinline__ void load_3d_multicast(unsigned dst, const TmaDescriptor& map, int x, int y, int z,
                                                  unsigned mbarrier, unsigned short cta_mask) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
      " [%0], [%1, {%2, %3, %4}], [%5], %6;\n" ::"r"(dst),
      "l"(descriptor_address(map)), "r"(x), "r"(y), "r"(z), "r"(mbarrier), "h"(cta_mask)
      : "memory");
}

// Shared memory at `src` -> the box at column x, row y; elements out of the tensor's
// bounds are not written.
__device__ __forceinline__ void store_2d(const TmaDescriptor& map, int x, int y, unsigned src) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];\n" ::"l"(
                   descriptor_address(map)),
               "r"(x), "r"(y), "r"(src)
               : "memory");
}

__device__ __forceinline__ void store_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }

// Waits until all but the `kPending` most recent committed store groups have read their
// shared-memory source: that memory may then be reused or released (the CTA must not exit
// before all have).
template <int kPending = 0>
__device__ __forceinline__ void store_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(kPending) : "memory");
}

// Orders this thread's ordinary shared-memory writes before later TMA (async proxy)
// accesses of the same memory: needed between staging C and the store that reads it.
__device__ __forceinline__ void fence_shared_to_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

}  // namespace tma
}  // namespace moejit
