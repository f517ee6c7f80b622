// Thread-block clusters of the wgmma family's dsd kernel (TileConfig::cluster, text suffix
// .cN, sharing A along N; TileConfig::cluster_m, suffix .c2x1, sharing B along M), host
// side, no GPU needed: the tile text, validation, the TMA boxes of the shares, the launch
// geometry, the template arguments and the search space. (That the cluster kernels compute the right
// thing only a GPU can tell: tests/python/test_hopper_gpu.py runs the cluster tiles of
// test_support.hpp's wgmma_schedule_tiles.)
#include <algorithm>
#include <string>
#include <tuple>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "autotune/search_space.hpp"
#include "autotune/tile_heuristics.hpp"
#include "compiler/codegen.hpp"
#include "compiler/kernel_spec.hpp"
#include "compiler/launch_geometry.hpp"
#include "compiler/spec_error.hpp"
#include "compiler/tma_layout.hpp"
#include "compiler/validate.hpp"
#include "test_support.hpp"

using namespace moejit;
using moejit::test::moe_spec;
using moejit::test::spec_error_of;

namespace {

KernelSpec wgmma_spec(OpKind op, bool ta, bool tb, TileConfig tile, int block = 128, std::int64_t hidden = 4096) {
  KernelSpec s = moe_spec(op, ta, tb, DType::bf16, block, test::sm_90a(), hidden);
  s.family = KernelFamily::wgmma;
  s.tile = tile;
  return s;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The cluster tiles the tuner considers for dsd (autotune/search_space.cpp).
const TileConfig kClusterTiles[] = {{128, 256, 64, 4, 8, 1, false, 2}, {128, 256, 64, 3, 8, 1, false, 2},
                                    {128, 256, 64, 4, 8, 1, false, 1, 2}};

bool clustered(const TileConfig& t) { return t.cluster_ctas() != 1; }

}  // namespace

TEST_SUITE("wgmma") {

TEST_CASE("cluster tiles: the .cN suffix before .pingpong, never .c1") {
  const std::pair<TileConfig, std::string> texts[] = {
      {{128, 256, 64, 3, 8, 1, false, 2}, "128x256x64.s3.w8x1.c2"},
      {{128, 256, 64, 3, 8, 1, false, 4}, "128x256x64.s3.w8x1.c4"},
      {{128, 128, 64, 5, 8, 1, true, 2}, "128x128x64.s5.w8x1.c2.pingpong"},
      {{64, 256, 64, 4, 8, 1, true, 4}, "64x256x64.s4.w8x1.c4.pingpong"},
      {{128, 128, 64, 5, 8, 1, true, 1}, "128x128x64.s5.w8x1.pingpong"},
      {{128, 128, 32, 4, 2, 2}, "128x128x32.s4.w2x2"},
  };
  for (const auto& [tile, text] : texts) {
    CAPTURE(text);
    CHECK(tile.text() == text);
    CHECK(parse_tile_config(text) == tile);
  }
  CHECK(TileConfig{}.cluster == 1);
  CHECK(parse_tile_config("128x256x64.s3.w8x1").cluster == 1);
  // .c1 is the default spelled out: accepted, printed without the suffix.
  CHECK(parse_tile_config("128x256x64.s3.w8x1.c1") == TileConfig{128, 256, 64, 3, 8, 1});
  // The cluster is part of the spec text, so of the kernel key.
  const KernelSpec s = wgmma_spec(OpKind::dsd, false, false, {128, 256, 64, 3, 8, 1, false, 2});
  CHECK(contains(s.text(), " tile=128x256x64.s3.w8x1.c2 "));
  CHECK(parse_kernel_spec(s.text()) == s);
  KernelSpec plain = s;
  plain.tile.cluster = 1;
  CHECK_FALSE(plain == s);
  CHECK(plain.text() != s.text());
}

TEST_CASE("malformed cluster suffixes are rejected naming the expected form") {
  for (const char* text :
       {"128x256x64.s3.w8x1.c", "128x256x64.s3.w8x1.cx", "128x256x64.s3.w8x1.c0", "128x256x64.s3.w8x1.c02",
        "128x256x64.s3.w8x1.c-2", "128x256x64.s3.w8x1.c+2", "128x256x64.s3.w8x1.c2x", "128x256x64.s3.w8x1.c 2",
        "128x256x64.s3.w8x1.c2.", "128x256x64.s3.w8x1.c2.c2", "128x128x64.s5.w8x1.pingpong.c2",
        "128x256x64.s3.w8x1c2", "128x256x64.s3.w8x1.x2", "128x256x64.s3.w8x1.c99999999999",
        "128x256x64.s4.w8x1.c1x2", "128x256x64.s4.w8x1.c2x0", "128x256x64.s4.w8x1.c2x01", "128x256x64.s4.w8x1.c2x1x1",
        "128x256x64.s4.w8x1.cx1", "128x256x64.s4.w8x1.c2y1", "128x256x64.s4.w8x1.c2x-1"}) {
    CAPTURE(text);
    const auto thrown = spec_error_of([&] { parse_tile_config(text); });
    CHECK(thrown.field == "tile");
    CHECK(contains(thrown.what, "MxNxK.sS.wWMxWN[.cC|.cCMxCN][.pingpong]"));
  }
}

TEST_CASE("clusters along M: the .c2x1 suffix (cluster shape M x N), round trip and key") {
  const std::pair<TileConfig, std::string> texts[] = {
      {{128, 256, 64, 4, 8, 1, false, 1, 2}, "128x256x64.s4.w8x1.c2x1"},
      {{64, 256, 64, 4, 4, 1, false, 1, 2}, "64x256x64.s4.w4x1.c2x1"},
      {{128, 256, 64, 4, 8, 1, false, 2, 2}, "128x256x64.s4.w8x1.c2x2"},   // parses; validate refuses it
  };
  for (const auto& [tile, text] : texts) {
    CAPTURE(text);
    CHECK(tile.text() == text);
    CHECK(parse_tile_config(text) == tile);
  }
  CHECK(TileConfig{}.cluster_m == 1);
  CHECK(TileConfig{128, 256, 64, 4, 8, 1, false, 1, 2}.cluster_ctas() == 2);
  CHECK(TileConfig{128, 256, 64, 4, 8, 1, false, 4}.cluster_ctas() == 4);
  const KernelSpec s = wgmma_spec(OpKind::dsd, true, false, {128, 256, 64, 4, 8, 1, false, 1, 2});
  CHECK(contains(s.text(), " tile=128x256x64.s4.w8x1.c2x1 "));
  CHECK(parse_kernel_spec(s.text()) == s);
  KernelSpec along_n = s;
  along_n.tile = {128, 256, 64, 4, 8, 1, false, 2};
  CHECK(along_n.text() != s.text());
}

TEST_CASE("validate: clusters along M on the cooperative dsd only, 1 or 2 CTAs, not also along N") {
  for (bool trans_a : {false, true}) {
    for (bool trans_b : {false, true}) {
      for (const TileConfig& tile : {TileConfig{128, 256, 64, 4, 8, 1, false, 1, 2},
                                     TileConfig{64, 256, 64, 4, 4, 1, false, 1, 2}}) {
        const KernelSpec s = wgmma_spec(OpKind::dsd, trans_a, trans_b, tile);
        CAPTURE(s);
        CHECK_NOTHROW(validate(s));
      }
    }
  }
  const auto refused = [](const KernelSpec& s) { return spec_error_of([&] { validate(s); }); };
  SUBCASE("sizes other than 1 and 2") {
    for (int m : {3, 4, 0}) {
      CAPTURE(m);
      const auto thrown = refused(wgmma_spec(OpKind::dsd, false, false, {128, 256, 64, 4, 8, 1, false, 1, m}));
      CHECK(thrown.field == "cluster_m");
      CHECK(contains(thrown.what, "expected 1 or 2"));
    }
  }
  SUBCASE("pingpong, and a cluster along N as well") {
    const auto pingpong = refused(wgmma_spec(OpKind::dsd, false, false, {128, 128, 64, 5, 8, 1, true, 1, 2}));
    CHECK(pingpong.field == "cluster_m");
    CHECK(contains(pingpong.what, "1 with .pingpong"));
    const auto both = refused(wgmma_spec(OpKind::dsd, false, false, {128, 256, 64, 4, 8, 1, false, 2, 2}));
    CHECK(both.field == "cluster_m");
    CHECK(contains(both.what, "1 with cluster=2"));
  }
  SUBCASE("sdd, dds and the mma family") {
    for (auto [op, ta, tb] : {std::tuple{OpKind::sdd, false, true}, std::tuple{OpKind::dds, false, false}}) {
      const auto thrown = refused(wgmma_spec(op, ta, tb, {128, 128, 64, 5, 8, 1, false, 1, 2}));
      CHECK(thrown.field == "cluster_m");
      CHECK(contains(thrown.what, fmt::format("cluster_m=2: expected 1 for op={}", op_name(op))));
    }
    KernelSpec m = moe_spec(OpKind::dsd, false, false, DType::bf16, 128, test::sm_90a());
    REQUIRE(m.family == KernelFamily::mma);
    m.tile.cluster_m = 2;
    const auto thrown = refused(m);
    CHECK(thrown.field == "cluster_m");
    CHECK(contains(thrown.what, "cluster_m=2: expected 1 for family=mma"));
  }
}

TEST_CASE("clusters along M: half of B's box per CTA, tile rows in pairs, the template argument") {
  const SparseShape sparse{12, 5, 896};   // 5 token blocks (an odd count), 896 ffn blocks
  const TileConfig tile{128, 256, 64, 4, 8, 1, false, 1, 2};
  SUBCASE("dsd nn, MN-major B: two of the tile's four 64-column chunks; A and C the CTA's own") {
    const TmaLayout l = tma_layout(wgmma_spec(OpKind::dsd, false, false, tile), sparse, 0, 4096, 4096);
    CHECK(l.a == TmaTensor{12 * 128, 128, 128 * 2, 64, 128});
    CHECK(l.b == TmaTensor{114688, 4096, 4096 * 2, 64, 64, 2});
    CHECK(l.c == TmaTensor{5 * 128, 4096, 4096 * 2, 64, 64});
    // A 64-column tile has one chunk: each CTA copies 32 of its K rows.
    const KernelSpec narrow = wgmma_spec(OpKind::dsd, false, false, {128, 64, 64, 6, 8, 1, false, 1, 2});
    CHECK(tma_layout(narrow, sparse, 0, 4096, 4096).b == TmaTensor{114688, 4096, 4096 * 2, 64, 32, 1});
  }
  SUBCASE("dsd nt, K-major B: boxes of tile_n / 2 rows") {
    const TmaLayout l = tma_layout(wgmma_spec(OpKind::dsd, false, true, tile), sparse, 0, 114688, 4096);
    CHECK(l.b == TmaTensor{4096, 114688, 114688 * 2, 64, 128});
  }
  SUBCASE("launch geometry: an odd count of tile rows gets a partner that computes nothing") {
    // 5 block rows of 128: 5 tile rows, in 3 pairs, by 16 tile columns.
    CHECK(launch_geometry(wgmma_spec(OpKind::dsd, false, false, tile), sparse).grid_x == 6 * 16);
    KernelSpec plain = wgmma_spec(OpKind::dsd, false, false, {128, 256, 64, 4, 8, 1});
    CHECK(launch_geometry(plain, sparse).grid_x == 5 * 16);
    // 64-row tiles: two per block, so always in whole pairs.
    const KernelSpec half = wgmma_spec(OpKind::dsd, false, false, {64, 256, 64, 4, 4, 1, false, 1, 2});
    CHECK(launch_geometry(half, sparse).grid_x == 10 * 16);
    // dsd tn: 896 ffn blocks, an even count.
    CHECK(launch_geometry(wgmma_spec(OpKind::dsd, true, false, tile), sparse).grid_x == 896 * 16);
  }
  SUBCASE("generated source: the cluster along M follows the cluster, only where it is not 1") {
    const GeneratedSource g = generate_source(wgmma_spec(OpKind::dsd, true, false, tile));
    CHECK(g.name_expression.ends_with(", 128, 256, 64, 4, 8, 1, false, 1, 2>"));
    const GeneratedSource plain = generate_source(wgmma_spec(OpKind::dsd, true, false, {128, 256, 64, 4, 8, 1}));
    CHECK(plain.name_expression.ends_with(", 128, 256, 64, 4, 8, 1, false, 1>"));
  }
}

TEST_CASE("validate: clusters of 2 or 4 on the wgmma family's dsd, tile rows of whole clusters") {
  for (const TileConfig& tile : kClusterTiles) {
    for (bool trans_a : {false, true}) {
      for (bool trans_b : {false, true}) {
        const KernelSpec s = wgmma_spec(OpKind::dsd, trans_a, trans_b, tile);
        CAPTURE(s);
        CHECK_NOTHROW(validate(s));
      }
    }
  }
  SUBCASE("cluster 3, 8, 0: not a supported size") {
    for (int cluster : {3, 8, 0, -2}) {
      CAPTURE(cluster);
      KernelSpec s = wgmma_spec(OpKind::dsd, false, false, {128, 256, 64, 3, 8, 1, false, cluster});
      const auto thrown = spec_error_of([&] { validate(s); });
      CHECK(thrown.field == "cluster");
      CHECK(contains(thrown.what, "expected 1, 2 or 4"));
    }
  }
  SUBCASE("sdd and dds: their kernels share no tile") {
    for (auto [op, ta, tb] : {std::tuple{OpKind::sdd, false, true}, std::tuple{OpKind::sdd, false, false},
                              std::tuple{OpKind::dds, false, false}, std::tuple{OpKind::dds, true, true}}) {
      const KernelSpec s = wgmma_spec(op, ta, tb, {128, 128, 64, 5, 8, 1, true, 2});
      CAPTURE(s);
      const auto thrown = spec_error_of([&] { validate(s); });
      CHECK(thrown.field == "cluster");
      CHECK(contains(thrown.what, fmt::format("cluster=2: expected 1 for op={}", op_name(op))));
      KernelSpec one = s;
      one.tile.cluster = 1;
      CHECK_NOTHROW(validate(one));
    }
  }
  SUBCASE("the mma family has no clusters") {
    KernelSpec m = moe_spec(OpKind::dsd, false, false, DType::bf16, 128, test::sm_90a());
    REQUIRE(m.family == KernelFamily::mma);
    CHECK_NOTHROW(validate(m));
    m.tile.cluster = 2;
    const auto thrown = spec_error_of([&] { validate(m); });
    CHECK(thrown.field == "cluster");
    CHECK(contains(thrown.what, "cluster=2: expected 1 for family=mma"));
  }
  SUBCASE("n / tile_n a multiple of the cluster") {
    // n = 4352: 17 tiles of 256 columns, 34 of 128.
    const KernelSpec odd = wgmma_spec(OpKind::dsd, true, false, {128, 256, 64, 3, 8, 1, false, 2}, 128, 4352);
    const auto thrown = spec_error_of([&] { validate(odd); });
    CHECK(thrown.field == "n");
    CHECK(contains(thrown.what, "n=4352: expected n / tile_n (= 17) a multiple of the cluster (2)"));
    KernelSpec s = wgmma_spec(OpKind::dsd, false, false, {128, 128, 64, 5, 8, 1, true, 4}, 128, 4352);
    CHECK(spec_error_of([&] { validate(s); }).field == "n");   // 34 % 4
    s.tile.cluster = 2;
    CHECK_NOTHROW(validate(s));   // 34 % 2
    s.tile.cluster = 1;
    CHECK_NOTHROW(validate(s));
  }
}

TEST_CASE("TMA layout: each CTA of a cluster copies its share of A's rows") {
  const SparseShape sparse{12, 6, 896};   // 6 token blocks, 896 ffn blocks
  SUBCASE("dsd nn, K-major A: a box of tile_m / cluster rows") {
    for (int cluster : {1, 2, 4}) {
      CAPTURE(cluster);
      const KernelSpec s = wgmma_spec(OpKind::dsd, false, false, {128, 256, 64, 3, 8, 1, false, cluster});
      const TmaLayout l = tma_layout(s, sparse, 0, 4096, 4096);
      CHECK(l.a == TmaTensor{12 * 128, 128, 128 * 2, 64, static_cast<std::uint32_t>(128 / cluster)});
      // B and C are each CTA's own.
      CHECK(l.b == TmaTensor{114688, 4096, 4096 * 2, 64, 64, 4});
      CHECK(l.c == TmaTensor{6 * 128, 4096, 4096 * 2, 64, 64});
    }
    const KernelSpec b64 = wgmma_spec(OpKind::dsd, false, false, {64, 256, 64, 4, 8, 1, true, 2}, 64);
    CHECK(tma_layout(b64, SparseShape{12, 6, 1792}, 0, 4096, 4096).a.box_rows == 32);
  }
  SUBCASE("dsd tn, MN-major A: its two chunks shared out, or 64 / cluster K rows of each") {
    // cluster 1: both chunks; 2: one chunk each; 4: 16 K rows of each chunk.
    const TmaTensor expected_a[] = {{12 * 128, 128, 128 * 2, 64, 64, 2},
                                    {12 * 128, 128, 128 * 2, 64, 64, 1},
                                    {12 * 128, 128, 128 * 2, 64, 16, 1}};
    int i = 0;
    for (int cluster : {1, 2, 4}) {
      CAPTURE(cluster);
      const KernelSpec s = wgmma_spec(OpKind::dsd, true, false, {128, 128, 64, 5, 8, 1, true, cluster});
      const TmaLayout l = tma_layout(s, sparse, 0, 4096, 4096);
      CHECK(l.a == expected_a[i++]);
      CHECK(l.b == TmaTensor{6 * 128, 4096, 4096 * 2, 64, 64, 2});
      CHECK(l.c == TmaTensor{114688, 4096, 4096 * 2, 64, 64});
    }
  }
}

TEST_CASE("generated source: every wgmma kernel ends its template arguments with the cluster") {
  const GeneratedSource c2 = generate_source(wgmma_spec(OpKind::dsd, false, false, {128, 256, 64, 3, 8, 1, false, 2}));
  CHECK(c2.name_expression.ends_with(", 128, 256, 64, 3, 8, 1, false, 2>"));
  const GeneratedSource c4 = generate_source(wgmma_spec(OpKind::dsd, true, false, {128, 128, 64, 5, 8, 1, true, 4}));
  CHECK(c4.name_expression.ends_with(", 128, 128, 64, 5, 8, 1, true, 4>"));
  CHECK(contains(c4.source, "template __global__ void " + c4.name_expression + "("));
  const GeneratedSource one = generate_source(wgmma_spec(OpKind::sdd, false, true, {128, 128, 64, 5, 8, 1}));
  CHECK(one.name_expression.ends_with(", 128, 128, 64, 5, 8, 1, false, 1>"));
  // The mma family's template has no schedule arguments.
  const GeneratedSource mma = generate_source(moe_spec(OpKind::dsd, false, false, DType::bf16, 128));
  CHECK(mma.name_expression.ends_with(", 128, 128, 32, 4, 2, 2>"));
}

TEST_CASE("search space: the cluster tiles for dsd, after the others; none for sdd and dds") {
  for (auto [ta, tb] : {std::pair{false, false}, std::pair{true, false}}) {
    // nn: m=dyn n=4096 k=114688; tn: m=114688 n=4096 k=dyn.
    const KernelSpec problem = with_heuristic_implementation(moe_spec(OpKind::dsd, ta, tb, DType::bf16, 128));
    CAPTURE(problem);
    REQUIRE(problem.family == KernelFamily::wgmma);
    const std::vector<TileConfig> space = search_space(problem);
    std::vector<TileConfig> cluster_tiles;
    std::copy_if(space.begin(), space.end(), std::back_inserter(cluster_tiles), clustered);
    CHECK(cluster_tiles == std::vector<TileConfig>(std::begin(kClusterTiles), std::end(kClusterTiles)));
    // After every tile without clusters: a tuner that times only the first few candidates
    // compares the established schedules first.
    const auto first = std::find_if(space.begin(), space.end(), clustered);
    CHECK(std::all_of(first, space.end(), clustered));
    CHECK_FALSE(clustered(problem.tile));   // the heuristic is unchanged
  }
  // Block 64: the 128-row cluster tiles do not divide the block.
  const KernelSpec b64 = with_heuristic_implementation(moe_spec(OpKind::dsd, false, false, DType::bf16, 64));
  const std::vector<TileConfig> space64 = search_space(b64);
  CHECK(std::none_of(space64.begin(), space64.end(), clustered));
  for (auto [op, ta, tb] : {std::tuple{OpKind::sdd, false, true}, std::tuple{OpKind::dds, false, false},
                            std::tuple{OpKind::dds, false, true}}) {
    for (int block : {128, 64}) {
      const KernelSpec problem = with_heuristic_implementation(moe_spec(op, ta, tb, DType::bf16, block));
      CAPTURE(problem);
      const std::vector<TileConfig> space = search_space(problem);
      CHECK_FALSE(space.empty());
      CHECK(std::none_of(space.begin(), space.end(), clustered));
    }
  }
  // The mma family: no clusters either.
  const KernelSpec mma = with_heuristic_tile(moe_spec(OpKind::dsd, false, false, DType::bf16, 128));
  const std::vector<TileConfig> mma_space = search_space(mma);
  CHECK(std::none_of(mma_space.begin(), mma_space.end(), clustered));
}

TEST_CASE("the schedule tiles compiled and run on the GPU include cluster tiles for dsd, valid everywhere") {
  int along_n = 0, along_m = 0;
  for (const KernelSpec& s : test::wgmma_schedule_grid()) {
    CAPTURE(s);
    CHECK_NOTHROW(validate(s));
    along_n += s.tile.cluster != 1;
    along_m += s.tile.cluster_m != 1;
    if (clustered(s.tile)) CHECK(s.op == OpKind::dsd);
  }
  // 3 cluster tiles along N and 3 along M over 2 block sizes, 5 transpose x dtype each.
  CHECK(along_n == 3 * 5);
  CHECK(along_m == 3 * 5);
}

}  // TEST_SUITE
