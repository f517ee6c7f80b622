// The tensor memory accelerator (TMA, sm_90): 2-D tile copies between global memory and
// shared memory described by a tensor map, issued by one thread. Loads complete on an
// mbarrier (the bytes they deliver count against its expected transaction count); stores
// are tracked by bulk async-groups.
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

// Shared memory at `src` -> the box at column x, row y; elements out of the tensor's
// bounds are not written.
__device__ __forceinline__ void store_2d(const TmaDescriptor& map, int x, int y, unsigned src) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];\n" ::"l"(
                   descriptor_address(map)),
               "r"(x), "r"(y), "r"(src)
               : "memory");
}

__device__ __forceinline__ void store_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }

// Waits until the committed stores have read their shared-memory source: the memory may
// then be reused or released (the CTA must not exit before).
__device__ __forceinline__ void store_wait_read() { asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory"); }

// Orders this thread's ordinary shared-memory writes before later TMA (async proxy)
// accesses of the same memory: needed between staging C and the store that reads it.
__device__ __forceinline__ void fence_shared_to_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

}  // namespace tma
}  // namespace moejit
