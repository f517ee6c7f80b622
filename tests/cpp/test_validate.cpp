// validate(): every inconsistent spec is rejected with a SpecError naming the field.
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

KernelSpec sdd128() { return moe_spec(OpKind::sdd, false, true, DType::bf16, 128); }

// The field validate() names for `spec`, or a marker when it accepts it.
std::string rejected_field(const KernelSpec& spec) {
  return spec_error_of([&] { validate(spec); }).field;
}

constexpr const char* kAccepted = "<nothing thrown>";

}  // namespace

TEST_SUITE("validate") {

TEST_CASE("heuristic specs are valid for every op x transpose x dtype x block on every target") {
  const Target targets[] = {{8, 0, false}, {8, 6, false}, {8, 9, false}, {9, 0, true}, {10, 0, true}};
  int checked = 0;
  for (const Target& target : targets) {
    for (const KernelSpec& grid_spec : test::moe_spec_grid(target)) {
      const KernelSpec spec = with_heuristic_tile(grid_spec);
      CAPTURE(spec);
      CHECK(rejected_field(spec) == kAccepted);
      CHECK_NOTHROW(validate(grid_spec));   // the grid's own tile fits as well
      ++checked;
    }
  }
  CHECK(checked == 5 * 3 * 4 * 2 * 2);
}

TEST_CASE("block size must be 64 or 128") {
  for (int block : {96, 32, 256, 0, -128}) {
    CAPTURE(block);
    KernelSpec s = sdd128();
    s.block_size = block;
    s.tile = TileConfig{32, 32, 32, 4, 2, 2};
    CHECK(rejected_field(s) == "block");
  }
  KernelSpec s = sdd128();
  s.block_size = 96;
  CHECK(spec_error_of([&] { validate(s); }).what == "block=96: expected 64 or 128");
}

TEST_CASE("target must be sm_80 or newer") {
  KernelSpec s = sdd128();
  s.target = Target{7, 5, false};
  const auto thrown = spec_error_of([&] { validate(s); });
  CHECK(thrown.field == "target");
  CHECK(thrown.what.find("sm_75") != std::string::npos);
  s.target = Target{7, 0, false};
  CHECK(rejected_field(s) == "target");
  s.target = Target{8, 0, false};
  CHECK(rejected_field(s) == kAccepted);
}

TEST_CASE("exactly the op's dynamic extent is dyn") {
  for (OpKind op : test::kOps) {
    for (const test::Transpose& t : test::kTransposes) {
      const KernelSpec good = moe_spec(op, t.a, t.b, DType::bf16, 128);
      const char dyn = dynamic_extent(op, t.a, t.b);
      CAPTURE(good);
      REQUIRE(rejected_field(good) == kAccepted);
      for (char extent : {'m', 'n', 'k'}) {
        CAPTURE(extent);
        KernelSpec s = good;
        std::int64_t& value = extent == 'm' ? s.m : extent == 'n' ? s.n : s.k;
        const std::string field(1, extent);
        if (extent == dyn) {
          value = 4096;   // a static value where the token count belongs
          const auto thrown = spec_error_of([&] { validate(s); });
          CHECK(thrown.field == field);
          CHECK(thrown.what.find("expected dyn") != std::string::npos);
        } else {
          value = kDynamic;   // dynamic where the model fixes the extent
          const auto thrown = spec_error_of([&] { validate(s); });
          CHECK(thrown.field == field);
          CHECK(thrown.what.find(field + "=dyn: expected a positive compile-time extent") == 0);
          value = 0;
          CHECK(rejected_field(s) == field);
        }
      }
    }
  }
}

TEST_CASE("tile extents are powers of two in range") {
  struct Case {
    TileConfig tile;
    const char* field;
  };
  const Case cases[] = {
      {{96, 128, 32, 4, 2, 2}, "tile_m"},  {{128, 96, 32, 4, 2, 2}, "tile_n"}, {{128, 128, 24, 4, 2, 2}, "tile_k"},
      {{8, 128, 32, 4, 1, 2}, "tile_m"},   {{512, 128, 32, 4, 2, 2}, "tile_m"}, {{128, 8, 32, 4, 2, 1}, "tile_n"},
      {{128, 512, 32, 4, 2, 2}, "tile_n"}, {{128, 128, 8, 4, 2, 2}, "tile_k"},  {{128, 128, 256, 2, 2, 2}, "tile_k"},
      {{0, 128, 32, 4, 2, 2}, "tile_m"},   {{128, 128, 0, 4, 2, 2}, "tile_k"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.tile);
    KernelSpec s = sdd128();
    s.tile = c.tile;
    CHECK(rejected_field(s) == c.field);
  }
}

TEST_CASE("pipeline stages are 2 to 8") {
  for (int stages : {1, 9, 0, -1}) {
    CAPTURE(stages);
    KernelSpec s = sdd128();
    s.tile.stages = stages;
    CHECK(rejected_field(s) == "stages");
  }
  for (int stages : {2, 3, 5, 6}) {   // 6 x 16 KiB still fits sm_90a
    CAPTURE(stages);
    KernelSpec s = sdd128();
    s.tile.stages = stages;
    CHECK(rejected_field(s) == kAccepted);
  }
}

TEST_CASE("warp grid: powers of two, at most 16 warps, whole 16x16 fragments per warp") {
  KernelSpec s = sdd128();
  s.tile.warps_m = 3;
  CHECK(rejected_field(s) == "warps_m");
  s = sdd128();
  s.tile.warps_n = 3;
  CHECK(rejected_field(s) == "warps_n");
  s = sdd128();
  s.tile.warps_m = 16;
  CHECK(rejected_field(s) == "warps_m");
  s = sdd128();
  s.tile.warps_m = 0;
  CHECK(rejected_field(s) == "warps_m");
  s = sdd128();
  s.tile.warps_m = 8;
  s.tile.warps_n = 4;   // 32 warps = 1024 threads
  CHECK(rejected_field(s) == "warps");
  // Warp tile not a multiple of 16: a 64-row tile over 8 warps gives each warp 8 rows, a
  // 32-column tile over 4 warps 8 columns.
  s = sdd128();
  s.tile = TileConfig{64, 64, 32, 4, 8, 1};
  CHECK(rejected_field(s) == "warps_m");
  s.tile = TileConfig{64, 32, 32, 4, 1, 4};
  CHECK(rejected_field(s) == "warps_n");
  s.tile = TileConfig{128, 128, 32, 4, 8, 2};   // 16 x 64 per warp
  CHECK(rejected_field(s) == kAccepted);
  s.tile = TileConfig{16, 16, 16, 2, 1, 1};
  CHECK(rejected_field(s) == kAccepted);
}

TEST_CASE("at most 128 fp32 accumulators per thread") {
  KernelSpec s = moe_spec(OpKind::dsd, false, false, DType::bf16, 128);
  s.tile = TileConfig{128, 256, 32, 3, 2, 2};   // 256 accumulators per thread
  const auto thrown = spec_error_of([&] { validate(s); });
  CHECK(thrown.field == "tile");
  CHECK(thrown.what.find("accumulators") != std::string::npos);
  s.tile = TileConfig{128, 256, 32, 3, 2, 4};   // 128: the limit itself is fine
  CHECK(rejected_field(s) == kAccepted);
  s.tile = TileConfig{128, 128, 32, 4, 1, 1};   // one warp for a 128x128 tile: 512
  CHECK(rejected_field(s) == "tile");
}

TEST_CASE("shared memory within the target's per-block limit") {
  KernelSpec s = sdd128();
  s.tile.stages = 8;   // 8 x 16 KiB = 128 KiB
  REQUIRE(s.tile.shared_bytes(s.dtype) == 131072);
  s.target = Target{9, 0, true};
  CHECK(rejected_field(s) == kAccepted);
  s.target = Target{8, 0, false};
  CHECK(rejected_field(s) == kAccepted);
  s.target = Target{8, 6, false};   // 99 KiB
  auto thrown = spec_error_of([&] { validate(s); });
  CHECK(thrown.field == "tile");
  CHECK(thrown.what.find("101376 bytes of shared memory on sm_86, needs 131072") != std::string::npos);
  s.target = Target{8, 9, false};
  CHECK(rejected_field(s) == "tile");

  s.target = Target{9, 0, true};
  s.tile = TileConfig{128, 128, 64, 8, 2, 2};   // 256 KiB > 227 KiB
  thrown = spec_error_of([&] { validate(s); });
  CHECK(thrown.field == "tile");
  CHECK(thrown.what.find("232448 bytes of shared memory on sm_90a, needs 262144") != std::string::npos);
}

TEST_CASE("the tile divides the block along the sparse dimensions") {
  // sdd: C's blocks are sparse, so tile_m and tile_n both divide the block.
  KernelSpec s = moe_spec(OpKind::sdd, false, true, DType::bf16, 64);
  s.tile = TileConfig{128, 64, 32, 4, 2, 2};
  CHECK(rejected_field(s) == "tile_m");
  s.tile = TileConfig{64, 128, 32, 4, 2, 2};
  CHECK(rejected_field(s) == "tile_n");
  s.tile = TileConfig{32, 32, 64, 4, 2, 2};   // tile_k is free for sdd: K is dense
  CHECK(rejected_field(s) == kAccepted);

  // dsd: A's rows and the reduction run through sparse blocks.
  for (bool trans_a : {false, true}) {
    CAPTURE(trans_a);
    s = moe_spec(OpKind::dsd, trans_a, false, DType::bf16, 64);
    s.tile = TileConfig{128, 64, 32, 4, 2, 2};
    CHECK(rejected_field(s) == "tile_m");
    s.tile = TileConfig{64, 64, 128, 2, 2, 2};
    CHECK(rejected_field(s) == "tile_k");
    s.tile = TileConfig{64, 128, 32, 4, 2, 2};   // tile_n is free for dsd: B is dense
    CHECK(rejected_field(s) == kAccepted);
  }

  // dds: B's columns and the reduction run through sparse blocks.
  for (bool trans_b : {false, true}) {
    CAPTURE(trans_b);
    s = moe_spec(OpKind::dds, false, trans_b, DType::bf16, 64);
    s.tile = TileConfig{64, 128, 32, 4, 2, 2};
    CHECK(rejected_field(s) == "tile_n");
    s.tile = TileConfig{64, 64, 128, 2, 2, 2};
    CHECK(rejected_field(s) == "tile_k");
    s.tile = TileConfig{128, 64, 32, 4, 2, 2};   // tile_m is free for dds: A is dense
    CHECK(rejected_field(s) == kAccepted);
  }
}

TEST_CASE("static extents are multiples of the tile or the block") {
  struct Case {
    OpKind op;
    bool trans_a, trans_b;
    char extent;
    std::int64_t value;
    const char* of;   // what it must be a multiple of, as the message says
  };
  const Case cases[] = {
      // sdd: K is reduced tile_k at a time, N is C's block columns.
      {OpKind::sdd, false, true, 'k', 4096 + 16, "tile_k"},
      {OpKind::sdd, false, false, 'n', 114688 + 64, "block"},
      // dsd: N is tiled by tile_n; the sparse operand's columns are blocks.
      {OpKind::dsd, false, false, 'n', 4096 + 64, "tile_n"},
      {OpKind::dsd, false, false, 'k', 114688 + 64, "block"},
      {OpKind::dsd, true, false, 'n', 4096 + 32, "tile_n"},
      {OpKind::dsd, true, false, 'm', 114688 + 64, "block"},
      // dds: M is tiled by tile_m; the sparse operand's columns are blocks.
      {OpKind::dds, false, false, 'm', 4096 + 64, "tile_m"},
      {OpKind::dds, false, false, 'n', 114688 + 64, "block"},
      {OpKind::dds, true, true, 'm', 4096 + 16, "tile_m"},
      {OpKind::dds, false, true, 'k', 114688 + 64, "block"},
  };
  for (const Case& c : cases) {
    KernelSpec s = moe_spec(c.op, c.trans_a, c.trans_b, DType::bf16, 128);
    (c.extent == 'm' ? s.m : c.extent == 'n' ? s.n : s.k) = c.value;
    CAPTURE(s);
    const auto thrown = spec_error_of([&] { validate(s); });
    CHECK(thrown.field == std::string(1, c.extent));
    CHECK(thrown.what.find(std::string("a multiple of ") + c.of) != std::string::npos);
  }
}

}  // TEST_SUITE
