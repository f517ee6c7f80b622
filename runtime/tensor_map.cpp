#include "runtime/tensor_map.hpp"

#include <cstdint>
#include <stdexcept>

#include <fmt/format.h>

#include "compiler/spec_error.hpp"

namespace moejit {

// The device templates cannot include cuda.h: their opaque copy must match the driver's.
static_assert(sizeof(TmaDescriptor) == sizeof(CUtensorMap), "TmaDescriptor must be a CUtensorMap");
static_assert(alignof(TmaDescriptor) >= 64, "TMA requires 64-byte aligned tensor maps");

TmaDescriptor encode_tensor_map(const DriverApi& driver, const char* operand, const void* address,
                                const TmaTensor& tensor, DType dtype) {
  if (driver.TensorMapEncodeTiled == nullptr) {
    throw std::runtime_error(
        "family=wgmma needs cuTensorMapEncodeTiled, which this CUDA driver lacks: install a driver for CUDA 12.0 or "
        "newer, or use family=mma");
  }
  if (reinterpret_cast<std::uintptr_t>(address) % 16 != 0) {
    throw SpecError(operand, fmt::format("address {}", address), "a 16-byte aligned address (TMA)");
  }
  // 2-D: {cols, rows}; 3-D (box_chunks, see TmaTensor): {64, rows, cols / 64}, the third
  // dimension's stride one chunk's 64 elements.
  const bool chunked = tensor.box_chunks != 0;
  const cuuint32_t rank = chunked ? 3 : 2;
  const auto element_bytes = static_cast<std::uint64_t>(dtype_bytes(dtype));
  const cuuint64_t dims[3] = {chunked ? tensor.box_cols : tensor.cols, tensor.rows,
                              chunked ? tensor.cols / tensor.box_cols : 1};
  const cuuint64_t strides[2] = {tensor.row_bytes, tensor.box_cols * element_bytes};
  const cuuint32_t box[3] = {tensor.box_cols, tensor.box_rows, chunked ? tensor.box_chunks : 1};
  const cuuint32_t element_strides[3] = {1, 1, 1};
  CUtensorMap map;
  const CUresult result = driver.TensorMapEncodeTiled(
      &map, dtype == DType::bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, rank,
      const_cast<void*>(address), dims, strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
      CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (result != CUDA_SUCCESS) {
    try {
      driver.check(result, "cuTensorMapEncodeTiled");
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(fmt::format("{}\noperand {}: address {}, {} rows x {} columns, row stride {} bytes, "
                                           "box {} x {}{}",
                                           e.what(), operand, address, tensor.rows, tensor.cols, tensor.row_bytes,
                                           tensor.box_rows, tensor.box_cols,
                                           chunked ? fmt::format(" x {} chunks", tensor.box_chunks) : ""));
    }
  }
  TmaDescriptor out;
  static_assert(sizeof(out.opaque) == sizeof(map));
  __builtin_memcpy(out.opaque, &map, sizeof(map));
  return out;
}

}  // namespace moejit
