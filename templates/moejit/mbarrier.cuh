// Shared-memory barriers (mbarrier) with transaction counts: the producer/consumer
// handshake of the sm_90 pipeline. A barrier completes a phase when its expected arrivals
// and expected transaction bytes are both in; waiters name the phase by its parity.
#pragma once

namespace moejit {
namespace mbarrier {

__device__ __forceinline__ void init(unsigned bar, unsigned arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(arrivals) : "memory");
}

// Makes initialised barriers visible to the async proxy (TMA) and the other threads; the
// caller synchronises the CTA afterwards.
__device__ __forceinline__ void fence_init() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }

// One arrival that also announces `bytes` of transactions (TMA loads) for this phase.
__device__ __forceinline__ void arrive_expect_tx(unsigned bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}

__device__ __forceinline__ void arrive(unsigned bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}

// Blocks until the phase of parity `parity` has completed. A fresh barrier is in phase 0,
// so waiting on parity 1 returns at once: the "previous" phase counts as complete, which
// lets a producer pass its first wait on a stage nobody has released yet.
__device__ __forceinline__ void wait(unsigned bar, unsigned parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_%=;\n"
      "}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

}  // namespace mbarrier
}  // namespace moejit
