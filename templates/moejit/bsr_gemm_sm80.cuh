// The mma.sync family of block-sparse products (sm_80 and newer): a multistage cp.async
// pipeline feeds swizzled shared-memory tiles, ldmatrix turns them into fragments, and
// mma.sync.m16n8k16 accumulates in fp32. One kernel template serves sdd, dsd and dds with
// every operand transpose; the op only changes the traversal (bsr_traversal.cuh).
//
// The code generator (compiler/codegen.cpp) instantiates exactly one of these per kernel
// spec; its template arguments are the spec's compile-time constants. The one extent that
// varies per step (the sparse operand's rows) is passed as kDynamic (-1) and taken from
// the topology at run time.
#pragma once

#include "moejit/bsr_gemm_params.h"
#include "moejit/bsr_traversal.cuh"
#include "moejit/element.cuh"
#include "moejit/epilogue.cuh"
#include "moejit/operand_tile.cuh"
#include "moejit/ptx.cuh"
#include "moejit/warp_mma.cuh"

namespace moejit {

template <OpKind kOp, bool kTransA, bool kTransB, class Element, int kBlock, long long kM, long long kN, long long kK,
          int kTileM, int kTileN, int kTileK, int kStages, int kWarpsM, int kWarpsN>
__global__ void __launch_bounds__(kWarpsM* kWarpsN * 32) bsr_gemm_sm80(const BsrGemmParams p) {
  constexpr int kThreads = kWarpsM * kWarpsN * 32;
  constexpr int kWarpM = kTileM / kWarpsM;
  constexpr int kWarpN = kTileN / kWarpsN;
  using Traversal = BsrTraversal<kOp, kTransA, kTransB, kBlock, kM, kN, kK, kTileM, kTileN, kTileK>;
  using ATile = OperandTile<kTileM, kTileK, Traversal::kAKMajor>;
  using BTile = OperandTile<kTileN, kTileK, Traversal::kBKMajor>;
  constexpr int kStageBytes = ATile::kBytes + BTile::kBytes;
  static_assert(kStages >= 2, "the pipeline needs at least two stages");
  static_assert(kTileK % 16 == 0, "mma.m16n8k16 consumes K in slices of 16");

  extern __shared__ __align__(128) unsigned char smem[];
  const unsigned smem_base = ptx::shared_address(smem);

  const Traversal tr(p, blockIdx.x);
  const int thread = threadIdx.x;
  if constexpr (kOp == OpKind::sdd) {
    if (!Traversal::live(p, blockIdx.x)) return zero_c_tile<kTileM, kTileN, kThreads>(tr.c, tr.ldc, thread);
  }
  const int lane = thread & 31;
  const int warp = thread >> 5;
  const int warp_m0 = (warp / kWarpsN) * kWarpM;
  const int warp_n0 = (warp % kWarpsN) * kWarpN;

  const auto load_stage = [&](int kt, int stage) {
    const unsigned base = smem_base + stage * kStageBytes;
    ATile::template load_async<kThreads>(base, tr.a_tile(kt), tr.lda, thread);
    BTile::template load_async<kThreads>(base + ATile::kBytes, tr.b_tile(kt), tr.ldb, thread);
  };

  WarpMma<Element, kWarpM, kWarpN> mma;
  mma.zero();
  const int num_k_tiles = tr.num_k_tiles;

  // Prologue: kStages-1 tiles in flight. A group is committed even when empty so that
  // the wait counts below stay uniform at the end of short (or empty) reductions.
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < num_k_tiles) load_stage(s, s);
    ptx::cp_async_commit();
  }

  for (int kt = 0; kt < num_k_tiles; ++kt) {
    ptx::cp_async_wait<kStages - 2>();   // tile kt has landed
    // Also guarantees every warp is done with the stage refilled below (read at kt-1).
    __syncthreads();
    const int next = kt + kStages - 1;
    if (next < num_k_tiles) load_stage(next, next % kStages);
    ptx::cp_async_commit();

    const unsigned base = smem_base + (kt % kStages) * kStageBytes;
#pragma unroll
    for (int k0 = 0; k0 < kTileK; k0 += 16) {
      mma.template step<ATile, BTile>(base, base + ATile::kBytes, warp_m0, warp_n0, k0, lane);
    }
  }

  // The epilogue reuses the pipeline's shared memory: drain it first.
  ptx::cp_async_wait<0>();
  __syncthreads();
  store_c_tile<Element, kTileM, kTileN, kThreads>(mma, smem, warp_m0, warp_n0, lane, thread, tr.c, tr.ldc);
}

}  // namespace moejit
