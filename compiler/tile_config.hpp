// How one thread block tiles its part of a block-sparse product.
#pragma once

#include <string>
#include <string_view>

#include "compiler/dtype.hpp"

namespace moejit {

struct TileConfig {
  int tile_m = 128;   // rows of C per thread block
  int tile_n = 128;   // columns of C per thread block
  int tile_k = 32;    // reduction depth of one pipeline stage
  int stages = 4;     // shared-memory pipeline depth (cp.async multistage)
  int warps_m = 2;    // warp grid; each warp owns (tile_m/warps_m) x (tile_n/warps_n) of C
  int warps_n = 2;
  // wgmma family only: the two consumer warpgroups take turns on whole tiles instead of
  // sharing one (templates/moejit/bsr_gemm_sm90.cuh). Text suffix ".pingpong".
  bool pingpong = false;
  // wgmma family, dsd only: CTAs per thread-block cluster along N sharing the A tile by
  // TMA multicast (1, 2 or 4): the cluster's CTAs compute `cluster` N-adjacent tiles of one
  // tile row, and each copies 1/cluster of their common A tile into all of them. Text
  // suffix ".cN" (never ".c1": a tile without clusters prints as it always did).
  int cluster = 1;
  // wgmma family, dsd only: CTAs per thread-block cluster along M sharing the B tile by
  // TMA multicast (1 or 2; not with cluster > 1): the cluster's CTAs compute the two tiles
  // of one tile column in tile rows 2i and 2i + 1, which reduce over the same B tiles
  // wherever their sparse rows hold the same block columns (the tiles of one expert), and
  // each copies half of B into both. Text suffix ".c2x1" (cluster shape M x N).
  int cluster_m = 1;

  // The mma family's threads (the warp grid); see wgmma_threads for the wgmma family.
  int threads() const { return warps_m * warps_n * 32; }
  int warp_tile_m() const { return tile_m / warps_m; }
  int warp_tile_n() const { return tile_n / warps_n; }
  // fp32 accumulator registers each thread holds.
  int accumulators_per_thread() const { return tile_m * tile_n / threads(); }
  // Dynamic shared memory of the mma family's kernel: the operand pipeline, which the
  // epilogue reuses to stage C for coalesced stores (padded rows, see
  // templates/moejit/epilogue.cuh). See wgmma_shared_bytes for the wgmma family.
  int shared_bytes(DType dtype) const;

  // Thread blocks per cluster.
  int cluster_ctas() const { return cluster * cluster_m; }

  // "128x128x32.s4.w2x2", "128x128x64.s5.w8x1.pingpong", "128x128x64.s5.w8x1.c2.pingpong",
  // "128x256x64.s4.w8x1.c2x1"
  std::string text() const;
  friend bool operator==(const TileConfig&, const TileConfig&) = default;
};

// The inverse of text(); throws SpecError naming the expected form.
TileConfig parse_tile_config(std::string_view text);

// The wgmma family (templates/moejit/bsr_gemm_sm90.cuh): the warp grid is the consumer
// warpgroups' (warps_m / 4 of them, warps_n = 1), and a producer warpgroup issuing TMA
// comes on top. Each consumer warpgroup owns wgmma_warpgroup_rows of a tile: its share of
// tile_m when they cooperate on one tile (64 or 128), all of tile_m when they take turns
// (pingpong). Shared memory: the stages, the C buffer of the epilogue (tile_m rows by at
// most two 64-column chunks, staged a chunk at a time; one per consumer
// warpgroup with pingpong), two mbarriers per stage, and 1 KB of slack to align the
// 128-byte-swizzled tiles to 1024 bytes (Sm90Layout in the template; the generated
// source asserts that both agree).
int wgmma_threads(const TileConfig& tile);
int wgmma_consumer_warpgroups(const TileConfig& tile);
int wgmma_warpgroup_rows(const TileConfig& tile);
int wgmma_shared_bytes(const TileConfig& tile, DType dtype);

// The wgmma kernel's register split (Sm90Layout in the template): every thread starts
// with `launch` (its launch bound's share of an SM, at most 240, which ptxas allocates in
// full); the producer warpgroup drops to `producer`, the consumers rise to `consumer`.
// setmaxnreg moves registers only within the block, so producer * 128 + consumer *
// consumer threads must not exceed launch * threads, or the consumers would wait forever.
struct WgmmaRegisters {
  int launch;
  int producer;
  int consumer;
};
WgmmaRegisters wgmma_registers(const TileConfig& tile);

}  // namespace moejit
