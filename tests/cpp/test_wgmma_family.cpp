// The wgmma family's host side, no GPU needed: validation, heuristics and search space,
// generated source, launch geometry and the TMA operand layout. (Its kernels are
// compiled by test_nvrtc_compile.cpp; that they compute the right thing only a GPU can
// tell: tests/python/test_ops_gpu.py and tests/python/test_hopper_gpu.py.)
#include <algorithm>
#include <string>
#include <tuple>

#include <doctest/doctest.h>

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

KernelSpec wgmma_spec(OpKind op, bool ta, bool tb, int block = 128, TileConfig tile = {128, 128, 64, 4, 8, 1}) {
  KernelSpec s = moe_spec(op, ta, tb, DType::bf16, block);
  s.family = KernelFamily::wgmma;
  s.tile = tile;
  return s;
}

std::string rejected_field(const KernelSpec& spec) { return spec_error_of([&] { validate(spec); }).field; }

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_SUITE("wgmma") {

TEST_CASE("the family's name round-trips through the spec text") {
  const KernelSpec s = wgmma_spec(OpKind::sdd, false, true);
  CHECK(contains(s.text(), " family=wgmma "));
  CHECK(parse_kernel_spec(s.text()) == s);
  CHECK(s.problem_text() == moe_spec(OpKind::sdd, false, true, DType::bf16, 128).problem_text());
}

TEST_CASE("every op and transpose is implemented at both block sizes") {
  for (const KernelSpec& s : test::wgmma_spec_grid()) {
    CAPTURE(s);
    CHECK(s.family == KernelFamily::wgmma);
    CHECK_NOTHROW(validate(s));
  }
}

TEST_CASE("wgmma exists on sm_90a only") {
  for (Target t : {Target{8, 0, false}, Target{9, 0, false}, Target{10, 0, true}, Target{12, 0, false}}) {
    CAPTURE(t);
    KernelSpec s = wgmma_spec(OpKind::sdd, false, true);
    s.target = t;
    const auto thrown = spec_error_of([&] { validate(s); });
    CHECK(thrown.field == "target");
    CHECK(contains(thrown.what, "sm_90a for family=wgmma"));
    CHECK(contains(thrown.what, "family=mma"));
  }
}

TEST_CASE("the kernel's layout fixes tile_k, tile_m, tile_n and the warp grid") {
  KernelSpec s = wgmma_spec(OpKind::dsd, false, false);
  CHECK(rejected_field(s) == "<nothing thrown>");
  s.tile.tile_k = 32;
  CHECK(rejected_field(s) == "tile_k");
  s = wgmma_spec(OpKind::dsd, false, false, 128, {32, 128, 64, 4, 2, 1});
  CHECK(rejected_field(s) == "tile_m");
  s = wgmma_spec(OpKind::dsd, false, false, 128, {128, 32, 64, 4, 8, 1});
  CHECK(rejected_field(s) == "tile_n");
  s = wgmma_spec(OpKind::dsd, false, false, 128, {128, 128, 64, 4, 2, 2});
  const auto thrown = spec_error_of([&] { validate(s); });
  CHECK(thrown.field == "warps");
  CHECK(contains(thrown.what, "8x1 for family=wgmma with tile_m=128"));
  s = wgmma_spec(OpKind::dsd, false, false, 128, {64, 128, 64, 4, 8, 1});
  CHECK(rejected_field(s) == "warps");
  // 5 stages of 128x256 (48 KB each) and the C buffer (128 rows x two 64-column chunks,
  // 32 KB) exceed 227 KB; 4 fit.
  s = wgmma_spec(OpKind::dsd, false, false, 128, {128, 256, 64, 5, 8, 1});
  CHECK(s.shared_bytes() == 1024 + 5 * 49152 + 32768 + 80);
  CHECK(rejected_field(s) == "tile");
  s.tile.stages = 4;
  CHECK(s.shared_bytes() == 1024 + 4 * 49152 + 32768 + 64);
  CHECK(rejected_field(s) == "<nothing thrown>");
  // The block structure still applies: sdd's tile divides the block, or pairs two blocks
  // of a block column (tile_m = 2 x block, tile_n = block).
  s = wgmma_spec(OpKind::sdd, false, true, 64, {128, 128, 64, 4, 8, 1});
  CHECK(rejected_field(s) == "tile_n");
  s = wgmma_spec(OpKind::sdd, false, true, 64, {256, 64, 64, 4, 8, 1});
  CHECK(rejected_field(s) == "tile_m");
  s = wgmma_spec(OpKind::sdd, false, true, 64, {128, 64, 64, 4, 8, 1});
  CHECK(rejected_field(s) == "<nothing thrown>");
}

TEST_CASE("pingpong: the tile text's suffix, two consumer warpgroups, whole tiles of 64 or 128 rows") {
  const TileConfig pp{128, 128, 64, 5, 8, 1, true};
  CHECK(pp.text() == "128x128x64.s5.w8x1.pingpong");
  CHECK(parse_tile_config("128x128x64.s5.w8x1.pingpong") == pp);
  CHECK(parse_tile_config("128x128x64.s5.w8x1") == TileConfig{128, 128, 64, 5, 8, 1});
  CHECK(spec_error_of([] { parse_tile_config("128x128x64.s5.w8x1.pingpongx"); }).field == "tile");
  CHECK(spec_error_of([] { parse_tile_config("128x128x64.s5.w8x1.pp"); }).field == "tile");
  KernelSpec s = wgmma_spec(OpKind::dsd, true, false, 128, pp);
  CHECK(parse_kernel_spec(s.text()) == s);
  CHECK(contains(s.text(), " tile=128x128x64.s5.w8x1.pingpong "));
  CHECK(rejected_field(s) == "<nothing thrown>");
  // A C buffer per consumer warpgroup: 5 stages of 32 KB and 2 x 32 KB.
  CHECK(s.shared_bytes() == 1024 + 5 * 32768 + 2 * 32768 + 80);
  CHECK(s.threads() == 384);
  CHECK(wgmma_warpgroup_rows(s.tile) == 128);
  s.tile = TileConfig{64, 256, 64, 4, 8, 1, true};
  CHECK(rejected_field(s) == "<nothing thrown>");
  CHECK(s.shared_bytes() == 1024 + 4 * 40960 + 2 * 16384 + 64);   // 2 x (64 rows x 2 chunks)
  s.tile = TileConfig{128, 256, 64, 2, 8, 1, true};   // 256 accumulators per thread
  CHECK(rejected_field(s) == "tile");
  s.tile = TileConfig{64, 128, 64, 4, 4, 1, true};    // one consumer warpgroup cannot take turns
  CHECK(rejected_field(s) == "warps");
  s = wgmma_spec(OpKind::dds, false, true, 128, {256, 128, 64, 3, 8, 1, true});
  CHECK(rejected_field(s) == "tile_m");
  // The mma family has no such schedule.
  KernelSpec m = moe_spec(OpKind::dsd, false, false, DType::bf16, 128);
  m.tile.pingpong = true;
  CHECK(rejected_field(m) == "tile");
}

TEST_CASE("sdd pairs of blocks: 2 x block rows in two consumer warpgroups of one block each") {
  KernelSpec s = wgmma_spec(OpKind::sdd, false, true, 128, {256, 128, 64, 3, 8, 1});
  CHECK(rejected_field(s) == "<nothing thrown>");
  CHECK(sdd_block_pairs(s));
  CHECK(wgmma_warpgroup_rows(s.tile) == 128);
  CHECK(s.shared_bytes() == 1024 + 3 * 49152 + 65536 + 48);
  s.tile.stages = 4;
  CHECK(rejected_field(s) == "tile");   // 4 x 48 KB + 64 KB > 227 KB
  s.tile = TileConfig{256, 128, 64, 3, 8, 1, true};
  CHECK(rejected_field(s) == "tile_m");
  s.tile = TileConfig{256, 64, 64, 3, 8, 1};
  CHECK(rejected_field(s) == "tile_n");
  // Only sdd pairs blocks; dsd's tile still divides the block, dds's 256 rows are dense.
  CHECK(rejected_field(wgmma_spec(OpKind::dsd, false, false, 128, {256, 128, 64, 3, 8, 1})) == "tile_m");
  const KernelSpec dds = wgmma_spec(OpKind::dds, false, true, 128, {256, 128, 64, 3, 8, 1});
  CHECK(rejected_field(dds) == "<nothing thrown>");
  CHECK_FALSE(sdd_block_pairs(dds));
  CHECK_FALSE(sdd_block_pairs(wgmma_spec(OpKind::sdd, false, true)));
  // Launch: an upper bound of the pairs (each nonempty column may end in a single block).
  const KernelSpec pair = wgmma_spec(OpKind::sdd, false, true, 128, {256, 128, 64, 3, 8, 1});
  CHECK(launch_geometry(pair, SparseShape{10, 4, 896}).grid_x == (10 + 10 + 1) / 2);
  CHECK(launch_geometry(pair, SparseShape{1000, 40, 896}).grid_x == (1000 + 896 + 1) / 2);
  CHECK(launch_geometry(pair, SparseShape{0, 0, 896}).grid_x == 0);
  // TMA: each block's A rows are a box of their own, B and C as for one block.
  const TmaLayout l = tma_layout(pair, SparseShape{12, 6, 896}, 4096, 4096, 128);
  CHECK(l.a == TmaTensor{6 * 128, 4096, 4096 * 2, 64, 128});
  CHECK(l.b == TmaTensor{114688, 4096, 4096 * 2, 64, 128});
  CHECK(l.c == TmaTensor{12 * 128, 128, 128 * 2, 64, 64});
  // Block 64: a 128x64 tile, one 64-row warpgroup per block.
  const KernelSpec b64 = wgmma_spec(OpKind::sdd, true, false, 64, {128, 64, 64, 6, 8, 1});
  CHECK(rejected_field(b64) == "<nothing thrown>");
  CHECK(sdd_block_pairs(b64));
  CHECK(wgmma_warpgroup_rows(b64.tile) == 64);
}

TEST_CASE("sdd pairs of one block row: 2 x block columns, both warpgroups across both blocks") {
  KernelSpec s = wgmma_spec(OpKind::sdd, false, true, 128, {128, 256, 64, 4, 8, 1});
  CHECK(rejected_field(s) == "<nothing thrown>");
  CHECK(sdd_row_pairs(s));
  CHECK_FALSE(sdd_block_pairs(s));
  CHECK(wgmma_warpgroup_rows(s.tile) == 64);
  CHECK(s.shared_bytes() == 1024 + 4 * 49152 + 32768 + 64);   // as dsd's 128x256 tile
  s.tile = TileConfig{128, 256, 64, 4, 8, 1, true};
  CHECK(rejected_field(s) == "tile");     // pingpong: 256 accumulators per thread
  CHECK(rejected_field(wgmma_spec(OpKind::sdd, false, true, 64, {64, 128, 64, 4, 8, 1, true})) == "tile_n");
  s.tile = TileConfig{64, 256, 64, 4, 4, 1};
  CHECK(rejected_field(s) == "tile_m");   // the whole block's rows
  CHECK_FALSE(sdd_row_pairs(wgmma_spec(OpKind::dsd, false, false, 128, {128, 256, 64, 4, 8, 1})));
  CHECK_FALSE(sdd_row_pairs(wgmma_spec(OpKind::sdd, false, true)));
  // Launch: an upper bound of the pairs that hold work (each nonempty row may end in a
  // single block); the kernel's empty slots take none.
  const KernelSpec pair = wgmma_spec(OpKind::sdd, false, true, 128, {128, 256, 64, 4, 8, 1});
  CHECK(launch_geometry(pair, SparseShape{10, 40, 896}).grid_x == (10 + 10 + 1) / 2);
  CHECK(launch_geometry(pair, SparseShape{1000, 40, 896}).grid_x == (1000 + 40 + 1) / 2);
  CHECK(launch_geometry(pair, SparseShape{0, 0, 896}).grid_x == 0);
  // The walk's slots (the most pairs per row, at most ceil(block_cols / 2), times the
  // rows) must fit the kernel's int.
  CHECK(spec_error_of([&] { launch_geometry(pair, SparseShape{1000, 1 << 23, 896}); }).field == "topology");
  // TMA: each block's B columns are a box of their own (K-major here: 128 rows of w1),
  // A as for one block row, C as for one block.
  const TmaLayout l = tma_layout(pair, SparseShape{12, 6, 896}, 4096, 4096, 128);
  CHECK(l.a == TmaTensor{6 * 128, 4096, 4096 * 2, 64, 128});
  CHECK(l.b == TmaTensor{114688, 4096, 4096 * 2, 64, 128});
  CHECK(l.c == TmaTensor{12 * 128, 128, 128 * 2, 64, 64});
  // Block 64: a 64x128 tile of one consumer warpgroup.
  const KernelSpec b64 = wgmma_spec(OpKind::sdd, true, false, 64, {64, 128, 64, 6, 4, 1});
  CHECK(rejected_field(b64) == "<nothing thrown>");
  CHECK(sdd_row_pairs(b64));
  CHECK(b64.threads() == 256);
}

TEST_CASE("generated source passes the schedule to the template and checks its layout") {
  const GeneratedSource pp = generate_source(wgmma_spec(OpKind::dsd, true, false, 128, {128, 128, 64, 5, 8, 1, true}));
  CHECK(contains(pp.name_expression, ", 128, 128, 64, 5, 8, 1, true, 1>"));
  CHECK(contains(pp.source, "moejit::Sm90Layout<128, 128, 64, 5, 2, true>"));
  CHECK(contains(pp.source, "kSharedBytes == 230480"));
  const GeneratedSource pair = generate_source(wgmma_spec(OpKind::sdd, false, true, 128, {256, 128, 64, 3, 8, 1}));
  CHECK(contains(pair.name_expression, ", 256, 128, 64, 3, 8, 1, false, 1>"));
  CHECK(contains(pair.source, "moejit::Sm90Layout<256, 128, 64, 3, 2, false>"));
}

TEST_CASE("the search space of the layer's wgmma problems holds the pingpong schedule, not sdd pairs") {
  for (auto [op, ta, tb] : {std::tuple{OpKind::sdd, false, true}, std::tuple{OpKind::dsd, false, false},
                            std::tuple{OpKind::dsd, true, false}}) {
    for (int block : {128, 64}) {
      const KernelSpec problem = with_heuristic_implementation(moe_spec(op, ta, tb, DType::bf16, block));
      CAPTURE(problem);
      const std::vector<TileConfig> space = search_space(problem);
      CHECK(std::count_if(space.begin(), space.end(), [](const TileConfig& t) { return t.pingpong; }) >= 3);
      KernelSpec candidate = problem;
      int pairs = 0;
      for (const TileConfig& t : space) {
        candidate.tile = t;
        pairs += sdd_block_pairs(candidate);
      }
      CHECK(pairs == 0);   // slower, and a narrower live-count contract (search_space.cpp)
    }
  }
  const KernelSpec sdd = with_heuristic_implementation(moe_spec(OpKind::sdd, false, true, DType::bf16, 128));
  const std::vector<TileConfig> space = search_space(sdd);
  CHECK(std::find(space.begin(), space.end(), TileConfig{256, 128, 64, 3, 8, 1}) == space.end());
  // Pairs of one block row are candidates: the topology's row-major order is all they need.
  CHECK(std::find(space.begin(), space.end(), TileConfig{128, 256, 64, 4, 8, 1}) != space.end());
  const KernelSpec sdd64 = with_heuristic_implementation(moe_spec(OpKind::sdd, false, true, DType::bf16, 64));
  const std::vector<TileConfig> space64 = search_space(sdd64);
  CHECK(std::find(space64.begin(), space64.end(), TileConfig{64, 128, 64, 6, 4, 1}) != space64.end());
  CHECK(std::find(space.begin(), space.end(), TileConfig{128, 128, 64, 5, 8, 1, true}) != space.end());
  const KernelSpec dsd_t = with_heuristic_implementation(moe_spec(OpKind::dsd, true, false, DType::bf16, 128));
  const std::vector<TileConfig> dsd_space = search_space(dsd_t);
  CHECK(std::find(dsd_space.begin(), dsd_space.end(), TileConfig{64, 256, 64, 4, 8, 1, true}) != dsd_space.end());
  CHECK(std::find(dsd_space.begin(), dsd_space.end(), TileConfig{128, 128, 64, 5, 8, 1, true}) != dsd_space.end());
}

TEST_CASE("threads and shared memory: a producer warpgroup on top, stages, C buffer, barriers") {
  const KernelSpec s = wgmma_spec(OpKind::sdd, false, true);
  CHECK(s.threads() == 384);
  CHECK(s.shared_bytes() == 1024 + 4 * 32768 + 32768 + 64);   // = 164928
  const KernelSpec m = moe_spec(OpKind::sdd, false, true, DType::bf16, 128);
  CHECK(m.threads() == m.tile.threads());
  CHECK(m.shared_bytes() == m.tile.shared_bytes(m.dtype));
  const WgmmaRegisters r = wgmma_registers(s.tile);
  CHECK(r.launch == 168);
  CHECK(r.producer == 40);
  CHECK(r.consumer == 232);
  CHECK(r.producer * 128 + r.consumer * 256 <= r.launch * 384);
  const WgmmaRegisters one = wgmma_registers(TileConfig{64, 256, 64, 4, 4, 1});
  CHECK(one.launch == 240);
  CHECK(one.consumer == 240);
}

TEST_CASE("generated source instantiates bsr_gemm_sm90 with a __grid_constant__ parameter") {
  const GeneratedSource g = generate_source(wgmma_spec(OpKind::dsd, true, false));
  CHECK(g.template_header == "moejit/bsr_gemm_sm90.cuh");
  CHECK(g.name_expression.rfind("moejit::bsr_gemm_sm90<moejit::OpKind::dsd, true, false, moejit::bf16_t, 128,", 0) == 0);
  CHECK(contains(g.source, "#include \"moejit/bsr_gemm_sm90.cuh\""));
  CHECK(contains(g.source, "(const __grid_constant__ moejit::BsrGemmSm90Params);"));
  // The host's launch numbers are asserted against the template's at compile time.
  CHECK(contains(g.source, "moejit::Sm90Layout<128, 128, 64, 4, 2, false>"));
  CHECK(contains(g.source, "kSharedBytes == 164928"));
  CHECK(contains(g.source, "kConsumerRegisters == 232"));
}

TEST_CASE("heuristic family: wgmma on sm_90a, mma elsewhere and where no wgmma tile fits") {
  for (const KernelSpec& grid : test::moe_spec_grid(test::sm_90a())) {
    CAPTURE(grid);
    CHECK(heuristic_family(grid) == KernelFamily::wgmma);
    const KernelSpec s = with_heuristic_implementation(grid);
    CHECK(s.family == KernelFamily::wgmma);
    CHECK_NOTHROW(validate(s));
    CHECK(s.tile.tile_k == 64);
    CHECK(s.tile.stages >= 3);
    // 128 rows (two consumer warpgroups) wherever the block allows it.
    CHECK(s.tile.tile_m == (grid.op == OpKind::dds ? 128 : grid.block_size));
  }
  for (Target t : {Target{8, 0, false}, Target{9, 0, false}, Target{10, 0, true}}) {
    const KernelSpec s = moe_spec(OpKind::dsd, false, false, DType::bf16, 128, t);
    CHECK(heuristic_family(s) == KernelFamily::mma);
  }
  // n = 4096 + 32: no 64-wide wgmma tile divides it, a 32-wide mma tile does.
  const KernelSpec odd = moe_spec(OpKind::dsd, false, false, DType::bf16, 128, test::sm_90a(), 4096 + 32);
  CHECK(heuristic_family(odd) == KernelFamily::mma);
  CHECK_NOTHROW(validate(with_heuristic_implementation(odd)));
}

TEST_CASE("heuristic wgmma tiles for the layer's kernels on H200") {
  KernelSpec sdd = moe_spec(OpKind::sdd, false, true, DType::bf16, 128);
  CHECK(with_heuristic_implementation(sdd).tile == TileConfig{128, 256, 64, 4, 8, 1});   // a row pair
  KernelSpec sdd64 = moe_spec(OpKind::sdd, false, true, DType::bf16, 64);
  CHECK(with_heuristic_implementation(sdd64).tile == TileConfig{64, 64, 64, 5, 4, 1});
  KernelSpec dsd = moe_spec(OpKind::dsd, false, false, DType::bf16, 128);
  CHECK(with_heuristic_implementation(dsd).tile == TileConfig{128, 256, 64, 4, 8, 1});
  KernelSpec dsd_t = moe_spec(OpKind::dsd, true, false, DType::fp16, 64);
  CHECK(with_heuristic_implementation(dsd_t).tile == TileConfig{64, 256, 64, 5, 4, 1});
}

TEST_CASE("the search space of a wgmma problem holds wgmma tiles only, heuristic first") {
  const KernelSpec problem = with_heuristic_implementation(moe_spec(OpKind::dsd, false, false, DType::bf16, 128));
  const std::vector<TileConfig> space = search_space(problem);
  REQUIRE(!space.empty());
  CHECK(space.front() == problem.tile);
  CHECK(space.size() >= 15);
  CHECK(space.size() <= 46);   // cooperative, pingpong and (dsd) two cluster tiles
  KernelSpec candidate = problem;
  for (const TileConfig& t : space) {
    CAPTURE(t);
    candidate.tile = t;
    CHECK_NOTHROW(validate(candidate));
  }
  // The mma problem's space is unchanged by the new family.
  const KernelSpec mma = with_heuristic_tile(moe_spec(OpKind::dsd, false, false, DType::bf16, 128));
  for (const TileConfig& t : search_space(mma)) {
    const bool wgmma_shaped = t.tile_k == 64 && t.warps_n == 1 && t.warps_m == 8;
    CHECK_FALSE(wgmma_shaped);
  }
}

TEST_CASE("launch geometry: same tiles as mma, the family's threads and shared memory") {
  const KernelSpec s = wgmma_spec(OpKind::sdd, false, true);
  const LaunchGeometry g = launch_geometry(s, SparseShape{10, 4, 896});
  CHECK(g.grid_x == 10);
  CHECK(g.threads == 384);
  CHECK(g.shared_bytes == s.shared_bytes());
  const KernelSpec d = wgmma_spec(OpKind::dsd, false, false, 128, {128, 256, 64, 3, 8, 1});
  CHECK(launch_geometry(d, SparseShape{10, 4, 896}).grid_x == 4 * (4096 / 256));
}

TEST_CASE("TMA layout: K-major operands are one box, MN-major ones one box of 64-column chunks, C 64x64") {
  const SparseShape sparse{12, 6, 896};   // 6 token blocks, 896 ffn blocks
  SUBCASE("sdd nt: x [T, H] and w1 [E*F, H], both K-major; C the blocks") {
    const TmaLayout l = tma_layout(wgmma_spec(OpKind::sdd, false, true), sparse, 4096, 4096, 128);
    CHECK(l.a == TmaTensor{6 * 128, 4096, 4096 * 2, 64, 128});
    CHECK(l.b == TmaTensor{114688, 4096, 4096 * 2, 64, 128});
    CHECK(l.c == TmaTensor{12 * 128, 128, 128 * 2, 64, 64});
  }
  SUBCASE("dsd nn: A the blocks (K-major), B [E*F, H] N-major, C [T, H]") {
    const KernelSpec s = wgmma_spec(OpKind::dsd, false, false, 128, {128, 256, 64, 3, 8, 1});
    const TmaLayout l = tma_layout(s, sparse, 0, 4096, 4096);
    CHECK(l.a == TmaTensor{12 * 128, 128, 128 * 2, 64, 128});
    CHECK(l.b == TmaTensor{114688, 4096, 4096 * 2, 64, 64, 4});   // the tile's four chunks
    CHECK(l.c == TmaTensor{6 * 128, 4096, 4096 * 2, 64, 64});
  }
  SUBCASE("dsd tn: A^T the blocks read M-major, B [T, H], C [E*F, H]") {
    const TmaLayout l = tma_layout(wgmma_spec(OpKind::dsd, true, false), sparse, 0, 4096, 4096);
    CHECK(l.a == TmaTensor{12 * 128, 128, 128 * 2, 64, 64, 2});
    CHECK(l.b == TmaTensor{6 * 128, 4096, 4096 * 2, 64, 64, 2});
    CHECK(l.c == TmaTensor{114688, 4096, 4096 * 2, 64, 64});
  }
  SUBCASE("dds tt: A^T stored [K, M] M-major, B^T the blocks read K-major") {
    const TmaLayout l = tma_layout(wgmma_spec(OpKind::dds, true, true), sparse, 4096, 0, 6 * 128);
    CHECK(l.a == TmaTensor{114688, 4096, 4096 * 2, 64, 64, 2});
    CHECK(l.b == TmaTensor{12 * 128, 128, 128 * 2, 64, 128});
    CHECK(l.c == TmaTensor{4096, 6 * 128, 6 * 128 * 2, 64, 64});
  }
  SUBCASE("an empty topology becomes one box, never read") {
    const TmaLayout l = tma_layout(wgmma_spec(OpKind::dsd, true, false), SparseShape{0, 0, 896}, 0, 4096, 4096);
    CHECK(l.a.rows == 64);
    CHECK(l.b.rows == 64);
    CHECK(l.c.rows == 114688);
  }
  SUBCASE("strides TMA cannot address are errors naming the operand") {
    const KernelSpec s = wgmma_spec(OpKind::sdd, false, true);
    CHECK(spec_error_of([&] { tma_layout(s, sparse, 4100, 4096, 128); }).field == "a.ld");
    CHECK(spec_error_of([&] { tma_layout(s, sparse, 4096, 1000, 128); }).field == "b.ld");
    // An MN-major operand is read in whole 64-column chunks: a partial last chunk would
    // read the next row's elements instead of zeros (validate keeps such shapes out).
    KernelSpec nn = wgmma_spec(OpKind::dsd, false, false, 128, {128, 256, 64, 4, 8, 1});
    nn.n = 4104;
    const auto e = spec_error_of([&] { tma_layout(nn, sparse, 0, 4104, 4104); });
    CHECK(e.field == "b.columns");
    CHECK(contains(e.what, "a multiple of 64"));
  }
}

}  // TEST_SUITE
