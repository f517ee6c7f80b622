// The one kernel parameter of the wgmma family (bsr_gemm_sm90.cuh): the family's
// BsrGemmParams plus a TMA tensor map per operand. Shared by the host (runtime/, which
// encodes the maps with cuTensorMapEncodeTiled) and the device templates. Plain C++ with
// no CUDA headers: NVRTC compiles it without the toolkit.
//
// The kernel takes this struct as a __grid_constant__ parameter: TMA reads a tensor map
// from the kernel's parameter space by address, so the maps must stay in parameter memory
// (a copy in registers or local memory would not be a valid tensor-map address).
#pragma once

#include "moejit/bsr_gemm_params.h"

namespace moejit {

// An encoded tensor map, opaque to the device: the driver's CUtensorMap is 128 bytes,
// 64-byte aligned, and the runtime checks at compile time that this matches it.
struct alignas(64) TmaDescriptor {
  unsigned long long opaque[16];
};

struct BsrGemmSm90Params {
  // Each operand's stored matrix {columns (contiguous), rows}: a dense operand is the
  // matrix it views (the underlying one for a transposed view), a sparse operand its
  // blocks stacked into [nnz * block, block]; a 2-D tensor, or for an MN-major operand a
  // 3-D one whose third dimension steps 64 columns. Boxes and swizzle are the kernel's:
  // see compiler/tma_layout.hpp.
  TmaDescriptor a;
  TmaDescriptor b;
  TmaDescriptor c;
  BsrGemmParams gemm;
};

}  // namespace moejit
