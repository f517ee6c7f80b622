// Ablations: stages of the wgmma family's products that a kernel can be compiled without,
// to find where its time goes by timing it with one stage left out (MOEJIT_ABLATE in
// python/moejit/jit/runtime.py). An ablated kernel computes wrong results: it is for timing
// only. Each is a -DMOEJIT_ABLATE_<X> compile option, so part of the kernel database key.
// Without the options every function is false and the kernels are the normal ones (the
// same PTX). Functions, not constexpr variables: NVRTC emits a namespace-scope variable
// into every module's PTX.
#pragma once

namespace moejit {

#ifdef MOEJIT_ABLATE_LOADS
__device__ constexpr bool ablate_loads() { return true; }      // the producer copies nothing
#else
__device__ constexpr bool ablate_loads() { return false; }
#endif
#ifdef MOEJIT_ABLATE_MMA
__device__ constexpr bool ablate_mma() { return true; }        // the consumers issue no wgmma
#else
__device__ constexpr bool ablate_mma() { return false; }
#endif
#ifdef MOEJIT_ABLATE_EPILOGUE
__device__ constexpr bool ablate_epilogue() { return true; }   // nothing is staged or stored
#else
__device__ constexpr bool ablate_epilogue() { return false; }
#endif

}  // namespace moejit
