// Shared helpers of the C++ tests: the op x transpose x dtype x block grid, MoE-shaped
// specs, SpecError capture, and doctest printers for the IR's value types.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "autotune/tile_heuristics.hpp"
#include "compiler/kernel_spec.hpp"
#include "compiler/spec_error.hpp"

#ifndef MOEJIT_TEST_TEMPLATES_DIR
#error "tests/meson.build passes MOEJIT_TEST_TEMPLATES_DIR (the directory holding moejit/*.cuh)"
#endif

namespace moejit::test {

inline constexpr OpKind kOps[] = {OpKind::sdd, OpKind::dsd, OpKind::dds};
struct Transpose {
  bool a;
  bool b;
  const char* name;
};
inline constexpr Transpose kTransposes[] = {{false, false, "nn"}, {false, true, "nt"}, {true, false, "tn"}, {true, true, "tt"}};
inline constexpr DType kDTypes[] = {DType::bf16, DType::fp16};
inline constexpr int kBlockSizes[] = {64, 128};

inline Target sm_80() { return Target{8, 0, false}; }
inline Target sm_90a() { return Target{9, 0, true}; }

// A spec with the extents an MoE layer gives the op (hidden size H, all experts' ffn
// columns F = ffn * experts), the dynamic extent marked dyn, and the default tile:
//   sdd  C[tokens x F]  = X[tokens x H] W1[H x F]          m=dyn n=F k=H
//   dsd  C[tokens x H]  = S[tokens x F] W2[F x H]          m=dyn n=H k=F   (nn)
//        C[F x H]       = S^T[F x tokens] X[tokens x H]    m=F n=H k=dyn   (trans_a)
//   dds  C[H x F]       = X^T[H x tokens] S[tokens x F]    m=H n=F k=dyn   (nn)
//        C[H x tokens]  = W[H x F] S^T[F x tokens]         m=H n=dyn k=F   (trans_b)
inline KernelSpec moe_spec(OpKind op, bool trans_a, bool trans_b, DType dtype, int block, Target target = sm_90a(),
                           std::int64_t hidden = 4096, std::int64_t ffn_total = 114688) {
  KernelSpec s;
  s.op = op;
  s.trans_a = trans_a;
  s.trans_b = trans_b;
  s.dtype = dtype;
  s.block_size = block;
  s.target = target;
  switch (op) {
    case OpKind::sdd:
      s.m = kDynamic, s.n = ffn_total, s.k = hidden;
      break;
    case OpKind::dsd:
      if (trans_a) s.m = ffn_total, s.n = hidden, s.k = kDynamic;
      else s.m = kDynamic, s.n = hidden, s.k = ffn_total;
      break;
    case OpKind::dds:
      if (trans_b) s.m = hidden, s.n = kDynamic, s.k = ffn_total;
      else s.m = hidden, s.n = ffn_total, s.k = kDynamic;
      break;
    default:   // the routing, permutation and activation ops have no M x N x K
      throw std::invalid_argument("moe_spec: a block-sparse product (sdd, dsd or dds)");
  }
  // A tile that fits every op at this block size: 128x128 for 128 blocks, 64x64 for 64.
  s.tile = TileConfig{block, block, 32, 4, 2, 2};
  return s;
}

// Every op x transpose x dtype x block size, as moe_spec() builds them.
inline std::vector<KernelSpec> moe_spec_grid(Target target = sm_90a()) {
  std::vector<KernelSpec> out;
  for (OpKind op : kOps)
    for (const Transpose& t : kTransposes)
      for (DType dtype : kDTypes)
        for (int block : kBlockSizes) out.push_back(moe_spec(op, t.a, t.b, dtype, block, target));
  return out;
}

// The same grid in the wgmma family with its heuristic tiles: the Hopper kernels.
inline std::vector<KernelSpec> wgmma_spec_grid() {
  std::vector<KernelSpec> out;
  for (KernelSpec s : moe_spec_grid(sm_90a())) {
    s.family = KernelFamily::wgmma;
    out.push_back(with_heuristic_tile(s));
  }
  return out;
}

// The wgmma family's other schedules, per op and block size: pingpong tiles, the sdd
// pairs of blocks (2 x block rows: one block column; 2 x block columns: one row; with
// blocks of 128 the heuristic's tile is the row pair, so one block's 128x128 tile), dds's cooperative 256-row tile, dsd's thread-block
// clusters (.c2, .c4), each with the deepest ring that fits, and dsd's tuned 128x256 tile
// (its stores deferred into the next tile, which dsd's heuristic tiles at the small test
// shapes do not exercise). tests/python/test_hopper_gpu.py
// runs the same list on the GPU.
inline std::vector<TileConfig> wgmma_schedule_tiles(OpKind op, int block) {
  const bool b128 = block == 128;
  switch (op) {
    case OpKind::sdd:
      return b128 ? std::vector<TileConfig>{{128, 128, 64, 5, 8, 1, true}, {256, 128, 64, 3, 8, 1},
                                            {128, 128, 64, 5, 8, 1}}
                  : std::vector<TileConfig>{{64, 64, 64, 6, 8, 1, true}, {128, 64, 64, 6, 8, 1}, {64, 128, 64, 6, 4, 1}};
    case OpKind::dsd:
      return b128 ? std::vector<TileConfig>{{128, 128, 64, 5, 8, 1, true},
                                            {64, 256, 64, 4, 8, 1, true},
                                            {128, 256, 64, 3, 8, 1, false, 2},
                                            {128, 128, 64, 5, 8, 1, true, 4},
                                            {128, 256, 64, 4, 8, 1},
                                            {128, 256, 64, 4, 8, 1, false, 1, 2},
                                            {64, 256, 64, 4, 4, 1, false, 1, 2}}
                  : std::vector<TileConfig>{{64, 128, 64, 6, 8, 1, true},
                                            {64, 256, 64, 4, 8, 1, true},
                                            {64, 256, 64, 4, 8, 1, true, 2},
                                            {64, 256, 64, 4, 4, 1, false, 1, 2}};
    case OpKind::dds:
      return b128 ? std::vector<TileConfig>{{128, 128, 64, 5, 8, 1, true}, {64, 128, 64, 6, 8, 1, true},
                                            {256, 128, 64, 3, 8, 1}}
                  : std::vector<TileConfig>{{128, 64, 64, 6, 8, 1, true}, {64, 64, 64, 6, 8, 1, true}};
    default:
      return {};
  }
}

// Every op x transpose x block in the wgmma family with each of those tiles, bf16 (the
// dtype changes only the wgmma instruction's types: fp16 for the first transpose).
inline std::vector<KernelSpec> wgmma_schedule_grid() {
  std::vector<KernelSpec> out;
  for (KernelSpec s : moe_spec_grid(sm_90a())) {
    const bool first_transpose = !s.trans_a && !s.trans_b;
    if (s.dtype != DType::bf16 && !first_transpose) continue;
    s.family = KernelFamily::wgmma;
    for (const TileConfig& tile : wgmma_schedule_tiles(s.op, s.block_size)) {
      s.tile = tile;
      out.push_back(s);
    }
  }
  return out;
}

// What a call threw: the SpecError's field and message, or a marker that says what else
// happened (so a failed CHECK prints something useful).
struct Thrown {
  std::string field;
  std::string what;
};

template <class F>
Thrown spec_error_of(F&& f) {
  try {
    f();
  } catch (const SpecError& e) {
    return Thrown{e.field(), e.what()};
  } catch (const std::exception& e) {
    return Thrown{"<not a SpecError>", e.what()};
  }
  return Thrown{"<nothing thrown>", ""};
}

}  // namespace moejit::test

namespace doctest {
template <>
struct StringMaker<moejit::KernelSpec> {
  static String convert(const moejit::KernelSpec& s) { return String(s.text().c_str()); }
};
template <>
struct StringMaker<moejit::TileConfig> {
  static String convert(const moejit::TileConfig& t) { return String(t.text().c_str()); }
};
template <>
struct StringMaker<moejit::Target> {
  static String convert(const moejit::Target& t) { return String(t.text().c_str()); }
};
}  // namespace doctest
