// The kernel specs whose release PTX ptx_hashes pins: the CI subset and the full list.
// Built from the C++ tests' grids (tests/cpp/test_support.hpp) and the tuner's own search
// space (autotune/search_space.cpp), so a tile the tuner gains is listed without an edit.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "autotune/search_space.hpp"
#include "autotune/tile_heuristics.hpp"
#include "compiler/routing_spec.hpp"
#include "compiler/spec_error.hpp"
#include "compiler/validate.hpp"
#include "../cpp/test_support.hpp"

namespace moejit::ptx_identity {

// A model shape as the products see it: hidden size and all experts' ffn columns.
struct ProductShape {
  std::int64_t hidden;
  std::int64_t ffn_total;
};
inline constexpr ProductShape kMixtral{4096, 14336 * 8};   // mixtral-8x7b
inline constexpr ProductShape kQwen3{2048, 768 * 128};     // qwen3-30b-a3b
inline constexpr ProductShape kOlmoe{2048, 1024 * 64};     // olmoe-1b-7b
inline constexpr ProductShape kSmall{1024, 1024 * 8};      // a small layer: 8 experts of 1024

// A kernel to compile: a spec, and an NVRTC option on top of the release ones (the
// ablations' -DMOEJIT_ABLATE_<X>, templates/moejit/ablation.cuh) or none.
struct Variant {
  KernelSpec spec;
  std::string option;
  std::string name() const { return option.empty() ? spec.text() : spec.text() + " " + option; }
};

// Variants in first-seen order, each once, invalid ones (a tile that does not fit) left out.
class SpecList {
 public:
  void add(const KernelSpec& spec, const std::string& option = {}) {
    if (!is_routing(spec.op)) {
      try {
        validate(spec);
      } catch (const SpecError&) {
        return;
      }
    }
    Variant v{spec, option};
    if (seen_.insert(v.name()).second) variants_.push_back(std::move(v));
  }
  void add(const Variant& v) { add(v.spec, v.option); }
  std::vector<Variant> take() { return std::move(variants_); }

 private:
  std::set<std::string> seen_;
  std::vector<Variant> variants_;
};

inline KernelSpec product(OpKind op, const test::Transpose& t, DType dtype, int block, KernelFamily family,
                          ProductShape shape) {
  KernelSpec s = test::moe_spec(op, t.a, t.b, dtype, block, family == KernelFamily::wgmma ? test::sm_90a() : test::sm_80(),
                                shape.hidden, shape.ffn_total);
  s.family = family;
  return with_heuristic_tile(s);
}

// Tiles only explicit specs reach (the tuner skips them): sdd's column pairs of blocks
// (tile_m = 2 x block) and the clusters of four and pingpong clusters.
inline std::vector<TileConfig> explicit_wgmma_tiles(OpKind op, int block) {
  std::vector<TileConfig> out = test::wgmma_schedule_tiles(op, block);
  out.push_back(TileConfig{2 * block, block, 64, 4, 8, 1});
  out.push_back(TileConfig{128, 256, 64, 3, 8, 1, false, 4});
  out.push_back(TileConfig{128, 128, 64, 5, 8, 1, true, 2});
  out.push_back(TileConfig{64, 256, 64, 4, 8, 1, false, 1, 2});
  return out;
}

inline void add_routing(SpecList& list) {
  for (Target target : {test::sm_80(), test::sm_90a()}) {
    list.add(routing_spec(OpKind::expert_histogram, target, 128));
    list.add(routing_spec(OpKind::expert_bins, target, 8, 2, 14336, 128));
    list.add(routing_spec(OpKind::expert_slots, target, 128));
    for (DType dtype : test::kDTypes) {
      list.add(routing_spec(OpKind::padded_gather, target, 0, 2, 4096, 0, dtype));
      list.add(routing_spec(OpKind::weighted_scatter, target, 0, 2, 4096, 0, dtype));
      list.add(routing_spec(OpKind::weighted_scatter_grad, target, 0, 2, 4096, 0, dtype));
      for (int block : test::kBlockSizes) {
        list.add(routing_spec(OpKind::expert_activation, target, 0, 0, 0, block, dtype, Activation::silu, true));
        list.add(routing_spec(OpKind::expert_activation_grad, target, 0, 0, 0, block, dtype, Activation::silu, true));
      }
    }
  }
}

// CI: at the mixtral-8x7b shape, every op x transpose x dtype x block with its heuristic
// tile in both families, every wgmma schedule of test_support.hpp (pingpong, both pair
// kinds, deferred stores, clusters along N and M) and the explicit-only tiles, and the
// routing and activation kernels; and each ablation of the wgmma kernel's schedules.
inline std::vector<Variant> ci_list() {
  SpecList list;
  for (KernelFamily family : {KernelFamily::wgmma, KernelFamily::mma}) {
    for (OpKind op : test::kOps)
      for (const test::Transpose& t : test::kTransposes)
        for (DType dtype : test::kDTypes)
          for (int block : test::kBlockSizes) list.add(product(op, t, dtype, block, family, kMixtral));
  }
  for (OpKind op : test::kOps)
    for (const test::Transpose& t : test::kTransposes)
      for (int block : test::kBlockSizes) {
        // The dtype changes only the wgmma instruction's types: both for the first transpose.
        for (DType dtype : test::kDTypes) {
          if (dtype != DType::bf16 && (t.a || t.b)) continue;
          KernelSpec s = product(op, t, dtype, block, KernelFamily::wgmma, kMixtral);
          for (const TileConfig& tile : explicit_wgmma_tiles(op, block)) {
            s.tile = tile;
            list.add(s);
          }
        }
      }
  add_routing(list);
  for (const char* ablation : {"-DMOEJIT_ABLATE_LOADS", "-DMOEJIT_ABLATE_MMA", "-DMOEJIT_ABLATE_EPILOGUE"}) {
    for (OpKind op : test::kOps)
      for (const TileConfig& tile : explicit_wgmma_tiles(op, 128)) {
        KernelSpec s = product(op, test::kTransposes[op == OpKind::dsd ? 2 : 1], DType::bf16, 128,
                               KernelFamily::wgmma, kMixtral);
        s.tile = tile;
        list.add(s, ablation);
      }
  }
  return list.take();
}

// Every wgmma variant the tuner may pick at the mixtral-8x7b shape (every tile of the
// search space and the explicit-only tiles, both dtypes) and the CI list; with
// `all_shapes`, also at the qwen3-30b-a3b, olmoe-1b-7b and a small shape, and the mma
// search space at the mixtral-8x7b shape (about 7300 variants).
inline std::vector<Variant> full_list(bool all_shapes) {
  SpecList list;
  for (const Variant& v : ci_list()) list.add(v);
  for (ProductShape shape : {kMixtral, kQwen3, kOlmoe, kSmall}) {
    const bool mixtral = shape.hidden == kMixtral.hidden && shape.ffn_total == kMixtral.ffn_total;
    if (!mixtral && !all_shapes) continue;
    for (OpKind op : test::kOps)
      for (const test::Transpose& t : test::kTransposes)
        for (DType dtype : test::kDTypes)
          for (int block : test::kBlockSizes) {
            KernelSpec s = product(op, t, dtype, block, KernelFamily::wgmma, shape);
            std::vector<TileConfig> tiles = search_space(s);
            for (const TileConfig& tile : explicit_wgmma_tiles(op, block)) tiles.push_back(tile);
            for (const TileConfig& tile : tiles) {
              s.tile = tile;
              list.add(s);
            }
            if (!mixtral) continue;
            KernelSpec m = product(op, t, dtype, block, KernelFamily::mma, shape);
            if (!all_shapes) continue;
            for (const TileConfig& tile : search_space(m)) {
              m.tile = tile;
              list.add(m);
            }
          }
  }
  return list.take();
}

}  // namespace moejit::ptx_identity
