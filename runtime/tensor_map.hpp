// Encoding the wgmma family's TMA tensor maps on the host, at launch: the pointers and
// the sparse operand's row count change from call to call, the boxes and swizzle are the
// compiled kernel's (compiler/tma_layout.hpp).
#pragma once

#include "compiler/dtype.hpp"
#include "compiler/tma_layout.hpp"
#include "moejit/bsr_gemm_sm90_params.h"
#include "runtime/driver_api.hpp"

namespace moejit {

// A tensor map over `tensor` at `address` with the 128-byte swizzle: 2-D, or 3-D for an
// MN-major operand's chunks (TmaTensor::box_chunks). Throws naming `operand` when the
// driver lacks TMA (before CUDA 12) or rejects the map (for example an address that is
// not 16-byte aligned).
TmaDescriptor encode_tensor_map(const DriverApi& driver, const char* operand, const void* address,
                                const TmaTensor& tensor, DType dtype);

}  // namespace moejit
