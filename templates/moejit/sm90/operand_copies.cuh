// The TMA copies of one operand tile into a stage, in every form the producer issues: the
// whole tile into this CTA, or one CTA's slice of it multicast into every CTA of a cluster
// (or, unshared, into this CTA only). The host encodes the matching boxes:
// compiler/tma_layout.cpp.
#pragma once

#include "moejit/bsr_gemm_sm90_params.h"
#include "moejit/bsr_tile_coords.cuh"
#include "moejit/tma.cuh"

namespace moejit {
namespace sm90 {

// Copies one operand tile of `rows` x 64 (K-major: rows along M/N) or 64 x `rows`
// (MN-major: rows along K). A K-major tile is one box of {64, rows}. The 128-byte swizzle
// limits a box's contiguous extent to 64 elements, so an MN-major tile is rows/64 chunks of
// {64, 64}, 8192 bytes apart: one box of a 3-D tensor map whose third dimension steps from
// chunk to chunk, a single copy for the producer's one thread to issue.
template <bool kKMajor, int kRows>
__device__ __forceinline__ void load_operand(unsigned dst, const TmaDescriptor& map, TileCoord at, unsigned bar) {
  if constexpr (kKMajor) {
    tma::load_2d(dst, map, at.x, at.y, bar);
  } else {
    tma::load_3d(dst, map, 0, at.y, at.x / 64, bar);
  }
}

// Slice `rank` of kCluster of an operand tile (see load_operand), multicast into every CTA
// of the cluster, landing where load_operand would have put it: the rows of a K-major
// tile; the chunks of an MN-major one where they divide among the CTAs, else the K rows
// of each chunk (a tile of fewer chunks than CTAs). Every slice is a whole number of 8-row
// (1024-byte) swizzle atoms. With kMulticast = false the slice lands in this CTA only: a
// tile that is not shared, copied slice by slice with the tensor map of the shared ones.
template <bool kKMajor, int kRows, int kCluster, bool kMulticast = true>
__device__ __forceinline__ void load_operand_slice(unsigned dst, const TmaDescriptor& map, TileCoord at, unsigned bar,
                                                   int rank) {
  constexpr unsigned short kAllCtas = (1u << kCluster) - 1;
  if constexpr (kKMajor) {
    constexpr int kSliceRows = kRows / kCluster;
    static_assert(kSliceRows % 8 == 0, "slices of whole 8-row swizzle atoms");
    const unsigned to = dst + rank * kSliceRows * 128;
    if constexpr (kMulticast) {
      tma::load_2d_multicast(to, map, at.x, at.y + rank * kSliceRows, bar, kAllCtas);
    } else {
      tma::load_2d(to, map, at.x, at.y + rank * kSliceRows, bar);
    }
  } else {
    const auto copy = [&](unsigned to, int y, int chunk) {
      if constexpr (kMulticast) {
        tma::load_3d_multicast(to, map, 0, y, chunk, bar, kAllCtas);
      } else {
        tma::load_3d(to, map, 0, y, chunk, bar);
      }
    };
    constexpr int kChunks = kRows / 64;
    if constexpr (kChunks % kCluster == 0) {
      constexpr int kShare = kChunks / kCluster;
      copy(dst + rank * kShare * 8192, at.y, at.x / 64 + rank * kShare);
    } else {
      constexpr int kSliceRows = 64 / kCluster;
      static_assert(kSliceRows % 8 == 0, "slices of whole 8-row swizzle atoms");
#pragma unroll
      for (int chunk = 0; chunk < kChunks; ++chunk) {
        copy(dst + chunk * 8192 + rank * kSliceRows * 128, at.y + rank * kSliceRows, at.x / 64 + chunk);
      }
    }
  }
}

// The producer's copies of step kt of `tile` into `stage`, completing on barrier `full`:
// A whole, as the two blocks of a column pair, or as this CTA's multicast slice (clusters
// along N); B whole, as the two blocks of a row pair, or (clusters along M) half of a B
// tile both CTAs read, into both, else all of this CTA's own in the halves the tensor
// map's box holds. `a_at`, `b_at` and `b_shared` are looked up before the wait for the
// stage, which then hides the topology loads; the pairs' tiles are found here.
template <class Config>
__device__ __forceinline__ void load_step(const BsrGemmSm90Params& params, const typename Config::Tile& tile, int kt,
                                          TileCoord a_at, TileCoord b_at, bool b_shared, unsigned stage,
                                          unsigned full, int cta_rank) {
  using Layout = typename Config::Layout;
  using Tile = typename Config::Tile;
  const BsrGemmParams& p = params.gemm;
  if constexpr (Config::kColumnPairs) {
#pragma unroll
    for (int part = 0; part < 2; ++part) {
      if (part < tile.count) {
        load_operand<Tile::kAKMajor, Config::kBlock>(stage + part * (Layout::kABytes / 2), params.a,
                                                     tile.a(p, kt, part), full);
      }
    }
  } else if constexpr (Config::kCluster > 1) {
    load_operand_slice<Tile::kAKMajor, Config::kTileM, Config::kCluster>(stage, params.a, a_at, full, cta_rank);
  } else {
    load_operand<Tile::kAKMajor, Config::kTileM>(stage, params.a, a_at, full);
  }
  if constexpr (Config::kRowPairs) {
#pragma unroll
    for (int part = 0; part < 2; ++part) {
      if (part < tile.count) {
        load_operand<Tile::kBKMajor, Config::kBlock>(stage + Layout::kABytes + part * (Layout::kBBytes / 2), params.b,
                                                     tile.b(p, kt, part), full);
      }
    }
  } else if constexpr (Config::kClusterM > 1) {
    if (b_shared) {
      load_operand_slice<Tile::kBKMajor, Config::kTileN, Config::kClusterM>(stage + Layout::kABytes, params.b, b_at,
                                                                            full, cta_rank);
    } else {
#pragma unroll
      for (int half = 0; half < Config::kClusterM; ++half) {
        load_operand_slice<Tile::kBKMajor, Config::kTileN, Config::kClusterM, false>(stage + Layout::kABytes, params.b,
                                                                                     b_at, full, half);
      }
    }
  } else {
    load_operand<Tile::kBKMajor, Config::kTileN>(stage + Layout::kABytes, params.b, b_at, full);
  }
}

}  // namespace sm90
}  // namespace moejit
