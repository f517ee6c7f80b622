// heuristic_tile_config: the tile of a spec that was never tuned must be valid for every
// op, transpose, dtype, block size and target, for the shapes the model zoo produces.
#include <string>

#include <doctest/doctest.h>

#include "autotune/tile_heuristics.hpp"
#include "compiler/kernel_spec.hpp"
#include "compiler/spec_error.hpp"
#include "compiler/validate.hpp"
#include "test_support.hpp"

using namespace moejit;
using moejit::test::moe_spec;
using moejit::test::spec_error_of;

namespace {

struct ModelShape {
  const char* name;
  std::int64_t hidden;
  std::int64_t ffn_total;   // ffn size x experts: the sparse operand's block columns
};

// hidden 4096/2048/512 with ffn x experts of the model zoo: 14336 x 8 (Mixtral-8x7B),
// 12288 x 8, 8192 x 8, 2048 x 64 (fine-grained experts), and small test layers.
constexpr ModelShape kShapes[] = {
    {"mixtral-8x7b", 4096, 114688}, {"h4096-f98304", 4096, 98304},  {"h2048-f65536", 2048, 65536},
    {"h2048-e64", 2048, 2048 * 64}, {"h512-f65536", 512, 65536},    {"h512-e64", 512, 2048 * 64},
    {"h4096-f131072", 4096, 131072}, {"h512-f98304", 512, 98304},   {"tiny", 512, 1024},
};

}  // namespace

TEST_SUITE("heuristics") {

TEST_CASE("a valid tile for every model shape, op, transpose, dtype, block size and target") {
  const Target targets[] = {{8, 0, false}, {8, 6, false}, {9, 0, true}};
  int checked = 0;
  for (const ModelShape& shape : kShapes) {
    const std::string shape_name = shape.name;
    CAPTURE(shape_name);
    for (const Target& target : targets) {
      for (OpKind op : test::kOps) {
        for (const test::Transpose& t : test::kTransposes) {
          for (DType dtype : test::kDTypes) {
            for (int block : test::kBlockSizes) {
              KernelSpec spec = moe_spec(op, t.a, t.b, dtype, block, target, shape.hidden, shape.ffn_total);
              spec.tile = TileConfig{7, 7, 7, 7, 7, 7};   // ignored: heuristic_tile_config replaces it
              const TileConfig tile = heuristic_tile_config(spec);
              const KernelSpec tuned = with_heuristic_tile(spec);
              CAPTURE(tuned);
              CHECK(tuned.tile == tile);
              CHECK_NOTHROW(validate(tuned));
              CHECK(tile.shared_bytes(dtype) <= target.max_shared_bytes_per_block());
              CHECK(tile.accumulators_per_thread() <= 128);
              // Not a degenerate fallback: these shapes are all multiples of 128, so the
              // heuristic has no reason to go below 64-wide C tiles, 32-deep stages or a
              // 3-stage pipeline. (The exact choice is tuning policy and may change.)
              CHECK(tile.tile_m >= 64);
              CHECK(tile.tile_n >= 64);
              CHECK(tile.tile_k >= 32);
              CHECK(tile.stages >= 3);
              CHECK(tile.threads() >= 128);
              ++checked;
            }
          }
        }
      }
    }
  }
  CHECK(checked == static_cast<int>(std::size(kShapes)) * 3 * 3 * 4 * 2 * 2);
}

TEST_CASE("the heuristic is a pure function of the spec") {
  for (const KernelSpec& spec : test::moe_spec_grid()) {
    CAPTURE(spec);
    const TileConfig tile = heuristic_tile_config(spec);
    CHECK(heuristic_tile_config(spec) == tile);
    // Only the tile changes; the spec's own tile field does not influence the choice.
    KernelSpec other = spec;
    other.tile = TileConfig{16, 16, 16, 2, 1, 1};
    CHECK(heuristic_tile_config(other) == tile);
    KernelSpec expected = spec;
    expected.tile = tile;
    CHECK(with_heuristic_tile(spec) == expected);
  }
}

TEST_CASE("dense extents that 128 does not divide get the largest dividing tile") {
  // dsd tiles N (the hidden size) freely; dds tiles M.
  struct Case {
    std::int64_t extent;
    int tile;
    int warps;
  };
  const Case cases[] = {{4096, 128, 2}, {4160, 64, 2}, {4128, 32, 1}, {4112, 16, 1}, {48, 16, 1}, {64, 64, 2}};
  for (const Case& c : cases) {
    CAPTURE(c.extent);
    KernelSpec dsd = moe_spec(OpKind::dsd, false, false, DType::bf16, 128);
    dsd.n = c.extent;
    const TileConfig t = heuristic_tile_config(dsd);
    CHECK(t.tile_n == c.tile);
    CHECK(t.warps_n == c.warps);
    dsd.tile = t;
    CHECK_NOTHROW(validate(dsd));

    KernelSpec dds = moe_spec(OpKind::dds, false, true, DType::fp16, 64);
    dds.m = c.extent;
    const TileConfig u = heuristic_tile_config(dds);
    CHECK(u.tile_m == c.tile);
    CHECK(u.warps_m == c.warps);
    dds.tile = u;
    CHECK_NOTHROW(validate(dds));
  }
}

TEST_CASE("a reduction extent that 32 does not divide gets 16-deep stages") {
  KernelSpec sdd = moe_spec(OpKind::sdd, false, true, DType::bf16, 128);
  sdd.k = 4096 + 16;   // 16 x 257: no deeper stage divides it
  const TileConfig t = heuristic_tile_config(sdd);
  CHECK(t.tile_k == 16);
  sdd.tile = t;
  CHECK_NOTHROW(validate(sdd));
}

TEST_CASE("no tile fits an extent that 16 does not divide") {
  KernelSpec dsd = moe_spec(OpKind::dsd, false, false, DType::bf16, 128);
  dsd.n = 4100;
  auto thrown = spec_error_of([&] { heuristic_tile_config(dsd); });
  CHECK(thrown.field == "n");
  CHECK(thrown.what.find("4100") != std::string::npos);
  CHECK_THROWS_AS(with_heuristic_tile(dsd), SpecError);

  KernelSpec dds = moe_spec(OpKind::dds, false, false, DType::bf16, 64);
  dds.m = 1000;
  thrown = spec_error_of([&] { heuristic_tile_config(dds); });
  CHECK(thrown.field == "m");
  CHECK(thrown.what.find("1000") != std::string::npos);

  KernelSpec sdd = moe_spec(OpKind::sdd, false, true, DType::bf16, 128);
  sdd.k = 4100;   // the reduction: not even 16-deep stages fit
  CHECK(spec_error_of([&] { heuristic_tile_config(sdd); }).field == "k");

  // An extent the tile does not govern still has to fit the block structure.
  sdd = moe_spec(OpKind::sdd, false, true, DType::bf16, 128);
  sdd.n = 114688 + 64;
  CHECK(spec_error_of([&] { heuristic_tile_config(sdd); }).field == "n");
}

}  // TEST_SUITE
