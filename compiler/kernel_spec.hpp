// KernelSpec: one block-sparse product kernel, fully specified. This is the lower of
// the two IR levels: a plain value type with a canonical text form whose hash is the
// kernel's cache key.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "compiler/dtype.hpp"
#include "compiler/target.hpp"
#include "compiler/tile_config.hpp"
#include "moejit/activation_kind.h"
#include "moejit/op_kind.h"

namespace moejit {

std::string_view op_name(OpKind op);
OpKind parse_op(std::string_view text);

// The kernel family: which template implements the spec.
//   mma    mma.sync + ldmatrix + cp.async multistage pipeline (bsr_gemm_sm80.cuh),
//          portable to sm_80 and newer: the baseline and the fallback.
//   wgmma  TMA + mbarrier pipeline feeding warpgroup wgmma, warp-specialised
//          (bsr_gemm_sm90.cuh): Hopper only (sm_90a), where mma.sync cannot reach the
//          tensor cores' rate.
enum class KernelFamily { mma, wgmma };

std::string_view family_name(KernelFamily family);
KernelFamily parse_family(std::string_view text);

// Marks the one GEMM extent that changes from step to step: the sparse operand's row
// dimension, which is the (padded) number of tokens routed to the experts. Every other
// extent is fixed for a model and compiled into the kernel.
inline constexpr std::int64_t kDynamic = -1;

// Which of the logical extents (C is M x N, reduction K) is the dynamic one, for an op
// and its transposes.
char dynamic_extent(OpKind op, bool trans_a, bool trans_b);

// A product spec reads "op=sdd trans=nt ..." below; a routing spec names only the fields
// its op uses (see compiler/routing_spec.hpp).
struct KernelSpec {
  OpKind op = OpKind::sdd;
  bool trans_a = false;   // A is stored K x M (a transposed view); for dsd: use S^T
  bool trans_b = false;   // B is stored N x K (a transposed view); for dds: use S^T
  DType dtype = DType::bf16;
  int block_size = 128;
  std::int64_t m = kDynamic;
  std::int64_t n = kDynamic;
  std::int64_t k = kDynamic;
  TileConfig tile;
  KernelFamily family = KernelFamily::mma;
  Target target;
  // Routing ops only (compiler/routing_spec.hpp): the layer's expert count and top-k. A
  // routing spec leaves the product fields above unused, and n is the width of its rows.
  int experts = 0;
  int top_k = 0;
  // Activation ops only: the function, and whether a GLU gate multiplies it.
  Activation activation = Activation::gelu;
  bool glu = false;

  // "op=sdd trans=nt dtype=bf16 block=128 m=dyn n=114688 k=4096 tile=128x128x32.s4.w2x2
  //  family=mma target=sm_90a" -- every field, in a fixed order.
  std::string text() const;
  std::uint64_t hash() const;
  std::string hash_hex() const;
  // The text without the implementation choices (tile and family): what stays the same
  // when the autotuner picks another implementation of the same product.
  std::string problem_text() const;
  // A short identifier for tables and file names: "sdd_nt_bf16_b128_n114688_k4096".
  std::string short_name() const;

  // Threads and dynamic shared memory of one thread block of this spec's kernel: the
  // tile's, plus what the family adds (the wgmma family's producer warpgroup, barriers).
  int threads() const;
  int shared_bytes() const;

  friend bool operator==(const KernelSpec&, const KernelSpec&) = default;
};

KernelSpec parse_kernel_spec(std::string_view text);   // inverse of text(); throws SpecError

}  // namespace moejit
