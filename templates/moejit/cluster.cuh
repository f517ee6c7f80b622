// Thread-block clusters (sm_90): the CTAs of one cluster run at the same time on one GPC
// and can reach each other's shared memory. The wgmma kernel uses them to share an
// operand tile: each CTA copies a slice of it with a TMA multicast into every CTA of the
// cluster (tma::load_2d_multicast), and a stage may only be refilled once the consumers
// of every CTA are done with it, so consumers release stages on all CTAs' barriers.
#pragma once

namespace moejit {
namespace cluster {

// This CTA's rank within its cluster (0 .. cluster size - 1).
__device__ __forceinline__ unsigned rank() {
  unsigned r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
}

// Every thread of every CTA of the cluster arrives and waits: orders what each thread
// did before (barrier initialisation, last arrivals on a peer's barriers) before what any
// does after. Not .aligned: the warp-specialised roles reach it from different branches.
__device__ __forceinline__ void sync() {
  asm volatile("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;\n" ::: "memory");
}

// The shared::cluster address of the variable at `address` (a shared::cta address of
// this CTA) in the CTA of rank `cta`: the same offset in that CTA's shared memory.
__device__ __forceinline__ unsigned map_shared(unsigned address, unsigned cta) {
  unsigned mapped;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(mapped) : "r"(address), "r"(cta));
  return mapped;
}

// One arrival on the mbarrier at `address` (a shared::cluster address, possibly another
// CTA's), with the default semantics (release at CTA scope), as CUTLASS's cluster
// barriers do: what the arrival announces is that this CTA's wgmmas are done reading a
// stage, which they are (wgmma.wait_group) before it is issued. A cluster-scope release
// orders more than that; the first cluster kernel used it (and parked the producer's idle
// lanes in the final cluster barrier) and ran at 0.57x of the tile without a cluster on
// the H200, 0.95-1.0x after both changes (2026-11-29; which of the two mattered was not
// measured apart).
__device__ __forceinline__ void arrive_remote(unsigned address) {
  asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];\n" ::"r"(address) : "memory");
}

}  // namespace cluster
}  // namespace moejit
