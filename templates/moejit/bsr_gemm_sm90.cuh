// The wgmma family of block-sparse products (sm_90a, Hopper): persistent, warp-specialised
// thread blocks in which one producer warpgroup copies operand tiles with TMA into a ring
// of shared-memory stages and one or two consumer warpgroups multiply them with wgmma,
// accumulating in fp32 registers, and store C with TMA. One kernel serves sdd, dsd and dds
// with every operand transpose; docs/kernels/wgmma.md describes the design. Its parts:
//
//   sm90/kernel_config.cuh   the compile-time configuration and its checks
//   sm90/shared_storage.cuh  stages, C buffers and barriers (Sm90Layout), named barriers
//   sm90/pipeline_state.cuh  a position in the stage ring: index and phase
//   sm90/tile_scheduler.cuh  the tile walk per op and schedule (sm90/tile_walks.cuh)
//   sm90/operand_copies.cuh  the producer's TMA copies, plain and multicast
//   sm90/mainloop.cuh        the consumers' wgmma batches and stage releases
//
// The producer's loop, the consumers' loop and the epilogue are written out below rather
// than as objects: the same code through member functions compiled to other PTX (NVVM
// numbers and schedules it differently), and tests/ptx_identity pins the release PTX.
//
// compiler/codegen.cpp instantiates one kernel per spec.
#pragma once

#include "moejit/ablation.cuh"
#include "moejit/bsr_gemm_params.h"
#include "moejit/bsr_gemm_sm90_params.h"
#include "moejit/cluster.cuh"
#include "moejit/element.cuh"
#include "moejit/mbarrier.cuh"
#include "moejit/ptx.cuh"
#include "moejit/sm90/kernel_config.cuh"
#include "moejit/sm90/mainloop.cuh"
#include "moejit/sm90/operand_copies.cuh"
#include "moejit/sm90/shared_storage.cuh"
#include "moejit/sm90/tile_scheduler.cuh"
#include "moejit/tma.cuh"
#include "moejit/warpgroup.cuh"

namespace moejit {

template <OpKind kOp, bool kTransA, bool kTransB, class Element, int kBlock, long long kM, long long kN, long long kK,
          int kTileM, int kTileN, int kTileK, int kStages, int kWarpsM, int kWarpsN, bool kPingpong, int kCluster,
          int kClusterM = 1>
__global__ void __launch_bounds__(Sm90Layout<kTileM, kTileN, kTileK, kStages, kWarpsM / 4, kPingpong>::kThreads, 1)
    bsr_gemm_sm90(const __grid_constant__ BsrGemmSm90Params params) {
  using Config = sm90::GemmConfig<kOp, kTransA, kTransB, Element, kBlock, kM, kN, kK, kTileM, kTileN, kTileK, kStages,
                                  kWarpsM, kWarpsN, kPingpong, kCluster, kClusterM>;
  using Layout = typename Config::Layout;
  constexpr bool kPairs = Config::kColumnPairs;
  constexpr bool kRowPairs = Config::kRowPairs;
  constexpr int kCtas = Config::kCtas;
  using Walk = typename Config::Walk;
  using Tile = typename Config::Tile;
  using Mma = typename Config::Mma;
  constexpr int kConsumers = Config::kConsumers;
  constexpr int kMmaM = Config::kMmaM;
  const BsrGemmParams& p = params.gemm;

  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const typename Config::Storage storage(ptx::shared_address(smem_raw));
  const int warpgroup = threadIdx.x / 128;
  const int wg_thread = threadIdx.x % 128;

  if (threadIdx.x == 0) storage.template init_barriers<(kPingpong ? 1 : kConsumers) * kCtas>();
  // With a cluster, the peers' barriers must be initialised before any multicast or
  // release reaches them.
  if constexpr (kCtas == 1) {
    __syncthreads();
  } else {
    cluster::sync();
  }
  const int cta_rank = kCtas == 1 ? 0 : static_cast<int>(cluster::rank());
  // Row pairs: the most pairs of any block row, found by the whole block, with the C
  // buffer's first word as scratch (no epilogue writes it before the last read).
  int max_pairs = 0;
  if constexpr (kRowPairs) max_pairs = max_row_pairs(p, storage.scratch());

  if (warpgroup == kConsumers) {
    // Producer warpgroup: one thread issues every copy; the others only give up registers.
    warpgroup::release_registers<Layout::kProducerRegisters>();
    // The other threads leave at once; with a cluster they must reach the kernel's last
    // barrier instead, but only after the issuing thread's warp has reconverged: lanes
    // parked in a cluster barrier wait next to a working lane slow it down.
    if constexpr (kCtas == 1) {
      if (wg_thread != 0) return;
    }
    if (wg_thread == 0) {
      tma::prefetch_descriptor(params.a);
      tma::prefetch_descriptor(params.b);
      Walk walk(p, max_pairs);
      typename Config::State state{0};
      int t = blockIdx.x;
      bool more = walk.seek(p, t);
      Tile tile{};
      if (more) tile = walk.at(p, t);
      while (more) {
        // The next tile is found once the ring is full of this tile's steps, when the
        // producer would wait anyway: after the last step of a tile of fewer steps than
        // stages, at once for a tile without steps.
        const int t_next = t + static_cast<int>(gridDim.x);
        bool more_next = false;
        Tile next{};
        const auto find_next = [&]() { more_next = sm90::find_tile(walk, p, t_next, next); };
        const bool skip = empty_tile(tile);   // the consumers skip it too
        // A cluster along M finds it at once, before this tile's steps, which is also when
        // the ring is full (of the last tile's steps): between two steps the pair's two
        // lookups spill the producer's registers.
        const int find_next_after = skip || kClusterM > 1 ? -1 : min(kStages, ring_steps(tile)) - 1;
        if (find_next_after < 0) find_next();
        // A single-block pair copies one A tile (one B tile for a row pair): the stage then
        // expects half of A's (B's) bytes.
        int stage_bytes = Layout::kStageBytes;
        if constexpr (kPairs) stage_bytes -= (2 - tile.count) * (Layout::kABytes / 2);
        if constexpr (kRowPairs) stage_bytes -= (2 - tile.count) * (Layout::kBBytes / 2);
        // Steps of the ring: the tile's reduction, or its pair's longer one (clusters along M).
        const int k_steps = skip ? 0 : ring_steps(tile);
        for (int kt = 0; kt < k_steps; ++kt, ++state) {
          const int s = state.index();
          // A step of the pair's longer reduction only (clusters along M): this CTA copies
          // nothing and its partner shares nothing, so the stage is full at once.
          bool copies = true;
          if constexpr (kClusterM > 1) copies = kt < tile.num_k_tiles;
          // The step's tiles, found before the wait for its stage: dsd and dds look up the
          // step's sparse block in the topology, loads whose latency the wait then hides.
          // The paired tiles of sdd blocks (two per stage) are found below.
          TileCoord a_at{}, b_at{};
          bool b_shared = false;
          if (copies) {
            if constexpr (!kPairs) a_at = tile.a(p, kt);
            if constexpr (!kRowPairs) b_at = tile.b(p, kt);
            if constexpr (kClusterM > 1) b_shared = tile.shares_b(p, kt);
          }
          mbarrier::wait(storage.empty(s), state.phase() ^ 1);
          if (ablate_loads() || !copies) {   // ablate_loads: timing only (ablation.cuh)
            mbarrier::arrive(storage.full(s));
            if (kt == find_next_after) find_next();
            continue;
          }
          mbarrier::arrive_expect_tx(storage.full(s), stage_bytes);
          sm90::load_step<Config>(params, tile, kt, a_at, b_at, b_shared, storage.stage(s), storage.full(s), cta_rank);
          if (kt == find_next_after) find_next();
        }
        tile = next;
        t = t_next;
        more = more_next;
      }
    }
    if constexpr (kCtas > 1) cluster::sync();   // the kernel's last barrier (see its end)
    return;
  }

  // Consumer warpgroup `warpgroup`. Its rows of a tile are 64-row groups group0,
  // group0 + 1, ... (kMmaM of them); both A layouts put 64-row group g at byte 8192 g of
  // the stage's A tile (64 K-major rows of 128 bytes, or one MN-major chunk of 64 K rows),
  // and the C buffer has the K-major row layout.
  warpgroup::acquire_registers<Layout::kConsumerRegisters>();
  const int warp = wg_thread / 32;
  const int lane = wg_thread % 32;
  const int barrier_id = sm90::NamedBarriers::epilogue(warpgroup);
  const int my_turn = sm90::NamedBarriers::turn(warpgroup);   // pingpong only
  const int other_turn = sm90::NamedBarriers::turn(1 - warpgroup);
  const int group0 = kPingpong ? 0 : warpgroup * kMmaM;
  const unsigned c_buffer = storage.c_buffer(warpgroup);
  float acc[kMmaM][kTileN / 2];
  // Zeroed once: a tile's first wgmmas overwrite them (see issue_step), a tile without a
  // step, whose epilogue stores zeros (out_zero), still rounds them, and when timing
  // without wgmmas (ablate_mma) they stay zero, which every tile then stores.
#pragma unroll
  for (int i = 0; i < kMmaM; ++i) {
#pragma unroll
    for (int j = 0; j < kTileN / 2; ++j) acc[i][j] = 0.0f;
  }
  // The epilogue's state: a tile's outputs, rounded to 16 bits two to a register as soon
  // as its last wgmmas are done, wait here to be stored, at once or (Config::kDeferStores)
  // during the next tile's first steps.
  constexpr bool kDeferStores = Config::kDeferStores;
  unsigned out16[kMmaM][kTileN / 4];
  // Where this warpgroup's rows of out16 go: one place, or one per block of a row pair
  // (its left and right halves), of which out_parts exist.
  TileCoord out_at[2] = {};
  int out_parts = 0;
  bool out_rows = false;      // whether it has rows (not the missing block of a column pair)
  bool out_pending = false;   // whether out16 still has to be stored
  bool out_zero = false;      // whether its tile had no step, and so stores zeros instead
  Walk walk(p, max_pairs);
  typename Config::State state{0};
  int turn = 0;
  int t = blockIdx.x;
  bool more = walk.seek(p, t);
  Tile tile{};
  if (more) tile = walk.at(p, t);

  // The epilogue of one 64-column chunk of out16: staged in one of the C buffer's two
  // halves (128-byte rows swizzled like the operand tiles, one stmatrix per warp and 16x16
  // fragment), then a TMA store of this warpgroup's rows, which runs while the next chunk
  // is staged in the other half. Called with a compile-time `c` (unrolled loops), so out16
  // stays in registers. The halves alternate with this warpgroup's stores (`half` is the
  // next one's), not with the chunk's number: the missing block of a pair stores nothing,
  // and the next tile's chunk 0 must not write the half a store may still be reading.
  int half = 0;
  const auto store_chunk = [&](int c) {
    if constexpr (!ablate_epilogue()) {   // (timing only without it: ablation.cuh)
      // A row pair's chunks: the first half of them the left block's, the rest the right's.
      constexpr int kChunksPerPart = kRowPairs ? Layout::kCChunks / 2 : Layout::kCChunks;
      const int part = c / kChunksPerPart;
      if (!out_rows || part >= out_parts) return;   // the same in every thread of the warpgroup
      const unsigned buffer = c_buffer + half * (kTileM * 128);
      half = (half + 1) % Layout::kCChunkBuffers;
      // The store that last read this half (this warpgroup's, kCChunkBuffers stores ago,
      // possibly of the previous tile) must be done reading it.
      if (wg_thread == 0) tma::store_wait_read<Layout::kCChunkBuffers - 1>();
      warpgroup::named_barrier(barrier_id, 128);
      const auto stage_fragments = [&](bool zeros) {
#pragma unroll
        for (int i = 0; i < kMmaM; ++i) {
          // Lane l gives the address of row l % 8 of matrix l / 8.
          const int r = (group0 + i) * 64 + warp * 16 + (lane / 8 % 2) * 8 + lane % 8;
#pragma unroll
          for (int j = 8 * c; j < 8 * c + 8; j += 2) {
            const int group = j % 8 + lane / 16;   // this lane's 8-column group within the chunk
            const unsigned to = buffer + r * 128 + ((group ^ (r % 8)) * 16);
            if (zeros) {
              ptx::stmatrix_x4(to, 0u, 0u, 0u, 0u);
            } else {
              ptx::stmatrix_x4(to, out16[i][2 * j], out16[i][2 * j + 1], out16[i][2 * j + 2], out16[i][2 * j + 3]);
            }
          }
        }
      };
      // Two copies of the loop, not a choice per fragment, which ptxas would predicate.
      if (out_zero) {
        stage_fragments(true);
      } else {
        stage_fragments(false);
      }
      tma::fence_shared_to_async();
      warpgroup::named_barrier(barrier_id, 128);
      if (wg_thread == 0) {
        const TileCoord at = part == 0 ? out_at[0] : out_at[1];
#pragma unroll
        for (int i = 0; i < kMmaM; ++i) {
          tma::store_2d(params.c, at.x + 64 * (c % kChunksPerPart), at.y + 64 * i, buffer + (group0 + i) * 8192);
        }
        tma::store_commit();
      }
    } else {
      // Ablated: the chunk's values still go somewhere, folded into one word per thread
      // of the idle C buffer. Stored nowhere, the accumulators would be dead code to
      // ptxas, which would then drop the wgmmas as well.
      unsigned folded = 0;
#pragma unroll
      for (int i = 0; i < kMmaM; ++i) {
#pragma unroll
        for (int q = 16 * c; q < 16 * c + 16; ++q) folded ^= out16[i][q];
      }
      asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(c_buffer + 4 * threadIdx.x), "r"(folded) : "memory");
    }
  };

  if constexpr (kPingpong) {
    // The first tile is the first warpgroup's: the second hands it the first turn. Every
    // signal below has exactly one matching wait (none for a tile that does not exist).
    if (warpgroup == 1 && more) warpgroup::named_barrier_arrive(other_turn, 256);
  }
  while (more) {
    // A tile with no reduction (an empty sparse row, an sdd block past the live count)
    // still gets its epilogue: zeros, so every output element is defined. With a cluster
    // along M the ring walks the pair's longer reduction, k_steps, of which this tile
    // computes the first k_tiles.
    const int k_tiles = tile.num_k_tiles;
    const int k_steps = ring_steps(tile);
    // The next tile, found a few steps into this one (deferred stores) or once its last
    // wgmmas are issued, so its topology loads run under this tile's wgmmas; at once where
    // the other warpgroup computes this one.
    const int t_next = t + static_cast<int>(gridDim.x);
    bool more_next = false;
    Tile next{};
    const auto find_next = [&]() { more_next = sm90::find_tile(walk, p, t_next, next); };
    // An empty slot of the row pairs: nothing to compute, nothing to store (the producer
    // copies nothing for it either).
    if (empty_tile(tile)) {
      find_next();
      tile = next;
      t = t_next;
      more = more_next;
      continue;
    }
    if constexpr (kPingpong) {
      // The other warpgroup's turn: count its steps to stay in phase with the ring.
      if ((turn++ & 1) != warpgroup) {
        state += k_steps;
        find_next();
        tile = next;
        t = t_next;
        more = more_next;
        continue;
      }
    }
    // The second block of a single-block pair, or the absent partner of an odd last tile
    // row (clusters along M), does not exist: this warpgroup keeps the handshake (waits
    // for each stage, releases it) and computes and stores nothing.
    bool has_rows = tile_present(tile);
    if constexpr (kPairs) has_rows = warpgroup < tile.count;
    // Pingpong: wait until the other warpgroup has waited for every stage of its tile: the
    // parity waits below are only exact from then on (docs/kernels/wgmma.md).
    if constexpr (kPingpong) warpgroup::named_barrier(my_turn, 256);
    // One step of the reduction in two halves: wait for its stage and issue its batch of
    // wgmmas; then, once the previous batch is done reading its stage, hand that stage
    // back (one batch stays in flight, so the tensor cores never wait for the release).
    const auto issue_step = [&](int kt) {
      const int s = state.index();
      mbarrier::wait(storage.full(s), state.phase());
      const unsigned stage = storage.stage(s);
      const int accumulate = kt > 0;
      bool computes = has_rows;
      if constexpr (kClusterM > 1) computes = computes && kt < k_tiles;   // past it: the partner's steps
      if (computes && !ablate_mma()) {
        // dsd with A^T: the tile's last step may hold rows in use in its first K slices only
        // (BsrTileCoords<dsd>); the others are padding, whose wgmmas add nothing.
        int slices = kTileK / 16;
        if constexpr (Config::kPartialLastStep) slices = kt == k_tiles - 1 ? tile.last_step_k16 : 4;
        sm90::mma_step<Config>(acc, stage, group0, accumulate, slices);
      }
    };
    const auto retire_step = [&](int kt) {
      // A step of the partner's longer reduction (clusters along M) committed no batch, so
      // the batch still in flight may be the previous step's: wait for all of it before
      // that step's stage goes back.
      if (kClusterM > 1 && kt >= k_tiles) {
        wgmma::wait_group<0>();
      } else {
        wgmma::wait_group<1>();
      }
      if (kt > 0 && warp == 0) sm90::release_stage<kCtas>(storage.empty(state.previous().index()), lane);
      ++state;
    };
    // The first steps store the previous tile's chunks, one each: chunk c once step c + 1
    // is issued, so the tensor cores have two batches to run while the warpgroup stores.
    constexpr int kStoreSteps = kDeferStores ? Layout::kCChunks + 1 : 0;
#pragma unroll
    for (int c = 0; c < kStoreSteps; ++c) {
      if (c < k_steps) issue_step(c);
      if (c > 0 && out_pending) store_chunk(c - 1);
      if (c < k_steps) retire_step(c);
    }
    out_pending = false;
    // 256-column tiles find the next tile here, once the previous tile's stores are
    // issued, not after their last step: the lookups of a dsd with A^T are a chain of three
    // dependent loads (the column's offsets, its last block's row, that row's live rows),
    // longer than the last batch that would hide them.
    if constexpr (kDeferStores) find_next();
    // Unrolled by two, as NVVM chose unasked for the kernel's first, smaller body.
#pragma unroll 2
    for (int kt = kStoreSteps; kt < k_steps; ++kt) {
      issue_step(kt);
      retire_step(kt);
    }
    if constexpr (!kDeferStores) find_next();
    // Pingpong: every stage of this tile has landed; the next tile (the other's) may start.
    if constexpr (kPingpong) {
      if (more_next) warpgroup::named_barrier_arrive(other_turn, 256);
    }
    wgmma::wait_group<0>();
#pragma unroll
    for (int i = 0; i < kMmaM; ++i) wgmma::fence_accumulators(acc[i]);
    if (k_steps > 0 && warp == 0) sm90::release_stage<kCtas>(storage.empty(state.previous().index()), lane);
    // Round the tile's outputs now: the next tile's first batch overwrites the accumulators.
    // Those of a tile without a step hold nothing of it: its epilogue stores zeros instead
    // (out_zero), cheaper than zeroing the accumulators at every tile's start, which ptxas
    // turns into a select per accumulator while the tensor cores wait.
#pragma unroll
    for (int i = 0; i < kMmaM; ++i) {
#pragma unroll
      for (int q = 0; q < kTileN / 4; ++q) out16[i][q] = ElementOps<Element>::pack2(acc[i][2 * q], acc[i][2 * q + 1]);
    }
    out_zero = k_tiles == 0;
    // This warpgroup's rows of C: its block of a column pair, its rows of each block of a
    // row pair, or its rows of the tile.
    if constexpr (kPairs) {
      out_at[0] = tile.c(warpgroup);
      out_parts = 1;
    } else if constexpr (kRowPairs) {
#pragma unroll
      for (int part = 0; part < 2; ++part) out_at[part] = TileCoord{0, tile.c(part).y + 64 * group0};
      out_parts = tile.count;
    } else {
      out_at[0] = TileCoord{tile.c.x, tile.c.y + 64 * group0};
      out_parts = 1;
    }
    out_rows = has_rows;
    out_pending = true;
    if constexpr (!kDeferStores) {
#pragma unroll
      for (int c = 0; c < Layout::kCChunks; ++c) store_chunk(c);
      out_pending = false;
    }
    tile = next;
    t = t_next;
    more = more_next;
  }
  // The last tile's stores, deferred into a tile that does not come.
  if (out_pending) {
#pragma unroll
    for (int c = 0; c < Layout::kCChunks; ++c) store_chunk(c);
  }
  // The block's shared memory must outlive the stores reading it.
  if (wg_thread == 0) tma::store_wait_read();
  // ... and the peers' last releases of its stages, which may still be on their way.
  if constexpr (kCtas > 1) cluster::sync();
}

}  // namespace moejit
