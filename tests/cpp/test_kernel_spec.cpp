// KernelSpec: the canonical text form (the cache key's source), its hash, its parser and
// the small value types it is made of (Target, TileConfig, DType, the dynamic extent).
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "compiler/dtype.hpp"
#include "compiler/hash.hpp"
#include "compiler/kernel_spec.hpp"
#include "compiler/spec_error.hpp"
#include "compiler/target.hpp"
#include "compiler/tile_config.hpp"
#include "test_support.hpp"

using namespace moejit;
using moejit::test::spec_error_of;

namespace {

constexpr const char* kSddText =
    "op=sdd trans=nt dtype=bf16 block=128 m=dyn n=114688 k=4096 tile=128x128x32.s4.w2x2 family=mma target=sm_90a";

KernelSpec sdd_spec() {
  KernelSpec s = test::moe_spec(OpKind::sdd, false, true, DType::bf16, 128);
  return s;
}

// The canonical text with one field's value replaced.
// Where the token `key=` starts ("k=" must not match inside "block=").
std::size_t field_at(const std::string& text, const std::string& key) {
  if (text.rfind(key + "=", 0) == 0) return 0;
  const std::size_t at = text.find(" " + key + "=");
  return at == std::string::npos ? at : at + 1;
}

std::string with_field(std::string text, const std::string& key, const std::string& value) {
  const std::size_t at = field_at(text, key);
  REQUIRE(at != std::string::npos);
  const std::size_t begin = at + key.size() + 1;
  std::size_t end = text.find(' ', begin);
  if (end == std::string::npos) end = text.size();
  return text.replace(begin, end - begin, value);
}

std::string without_field(std::string text, const std::string& key) {
  const std::size_t at = field_at(text, key);
  REQUIRE(at != std::string::npos);
  std::size_t end = text.find(' ', at);
  if (end == std::string::npos) return text.substr(0, at == 0 ? 0 : at - 1);
  return text.erase(at, end + 1 - at);
}

std::vector<KernelSpec> many_specs() {
  std::vector<KernelSpec> out;
  const Target targets[] = {{8, 0, false}, {8, 6, false}, {8, 9, false}, {9, 0, false}, {9, 0, true}, {10, 0, true}};
  for (const Target& target : targets) {
    for (const KernelSpec& s : test::moe_spec_grid(target)) out.push_back(s);
  }
  // Unusual but representable values: the parser must not depend on what validate() allows.
  KernelSpec odd = sdd_spec();
  odd.m = 1;
  odd.n = 1LL << 40;
  odd.k = 9223372036854775807LL;
  odd.tile = TileConfig{16, 256, 128, 8, 1, 8};
  out.push_back(odd);
  KernelSpec all_dyn;
  all_dyn.tile = TileConfig{32, 64, 16, 2, 1, 2};
  out.push_back(all_dyn);
  return out;
}

}  // namespace

TEST_SUITE("kernel_spec") {

TEST_CASE("canonical text lists every field in a fixed order") {
  CHECK(sdd_spec().text() == kSddText);

  KernelSpec s = test::moe_spec(OpKind::dsd, true, false, DType::fp16, 64, test::sm_80());
  CHECK(s.text() ==
        "op=dsd trans=tn dtype=fp16 block=64 m=114688 n=4096 k=dyn tile=64x64x32.s4.w2x2 family=mma target=sm_80");
  s = test::moe_spec(OpKind::dds, true, true, DType::bf16, 128, Target{10, 0, true});
  CHECK(s.text() ==
        "op=dds trans=tt dtype=bf16 block=128 m=4096 n=dyn k=114688 tile=128x128x32.s4.w2x2 family=mma target=sm_100a");
}

TEST_CASE("parse_kernel_spec inverts text() for many specs") {
  const std::vector<KernelSpec> specs = many_specs();
  CHECK(specs.size() > 100);
  for (const KernelSpec& s : specs) {
    CAPTURE(s);
    const KernelSpec parsed = parse_kernel_spec(s.text());
    CHECK(parsed == s);
    CHECK(parsed.text() == s.text());
    CHECK(parsed.hash() == s.hash());
  }
}

TEST_CASE("parse_kernel_spec accepts any field order and extra spaces") {
  const KernelSpec expected = parse_kernel_spec(kSddText);
  CHECK(expected == sdd_spec());
  const KernelSpec shuffled = parse_kernel_spec(
      "  target=sm_90a family=mma tile=128x128x32.s4.w2x2   k=4096 n=114688 m=dyn block=128 dtype=bf16 trans=nt op=sdd ");
  CHECK(shuffled == expected);
  CHECK(shuffled.text() == kSddText);
  // Aliases normalise to the canonical names.
  CHECK(parse_kernel_spec(with_field(kSddText, "dtype", "bfloat16")).text() == kSddText);
  CHECK(parse_kernel_spec(with_field(kSddText, "target", "90a")).text() == kSddText);
}

TEST_CASE("the hash is a stable function of the canonical text") {
  const KernelSpec a = sdd_spec();
  const KernelSpec b = a;   // a copy
  CHECK(a.hash() == b.hash());
  CHECK(a.hash() == parse_kernel_spec(a.text()).hash());
  CHECK(a.hash() == fnv1a64(a.text()));
  CHECK(a.hash_hex() == hex64(a.hash()));
  CHECK(a.hash_hex().size() == 16);
  CHECK(a.hash_hex().find_first_not_of("0123456789abcdef") == std::string::npos);
  // The hash is a persistent cache key: it must not change between builds, processes or
  // platforms. Changing this value invalidates every kernel database; do it on purpose.
  CHECK(fnv1a64("") == 0xcbf29ce484222325ull);
  CHECK(fnv1a64("a") == 0xaf63dc4c8601ec8cull);
  CHECK(hex64(0x1234abcdull) == "000000001234abcd");
  static_assert(fnv1a64("moejit") == fnv1a64("moejit"), "fnv1a64 is constexpr");
}

TEST_CASE("the hash changes when any field changes") {
  const KernelSpec base = sdd_spec();
  struct Change {
    const char* field;
    void (*apply)(KernelSpec&);
  };
  const Change changes[] = {
      {"op", [](KernelSpec& s) { s.op = OpKind::dsd; }},
      {"trans_a", [](KernelSpec& s) { s.trans_a = !s.trans_a; }},
      {"trans_b", [](KernelSpec& s) { s.trans_b = !s.trans_b; }},
      {"dtype", [](KernelSpec& s) { s.dtype = DType::fp16; }},
      {"block_size", [](KernelSpec& s) { s.block_size = 64; }},
      {"m", [](KernelSpec& s) { s.m = 4096; }},
      {"n", [](KernelSpec& s) { s.n = 98304; }},
      {"n dyn", [](KernelSpec& s) { s.n = kDynamic; }},
      {"k", [](KernelSpec& s) { s.k = 2048; }},
      {"tile_m", [](KernelSpec& s) { s.tile.tile_m = 64; }},
      {"tile_n", [](KernelSpec& s) { s.tile.tile_n = 64; }},
      {"tile_k", [](KernelSpec& s) { s.tile.tile_k = 64; }},
      {"stages", [](KernelSpec& s) { s.tile.stages = 3; }},
      {"warps_m", [](KernelSpec& s) { s.tile.warps_m = 4; }},
      {"warps_n", [](KernelSpec& s) { s.tile.warps_n = 1; }},
      {"target.major", [](KernelSpec& s) { s.target.major = 10; }},
      {"target.minor", [](KernelSpec& s) { s.target.minor = 9; }},
      {"target.arch_specific", [](KernelSpec& s) { s.target.arch_specific = false; }},
  };
  std::set<std::uint64_t> hashes = {base.hash()};
  std::set<std::string> texts = {base.text()};
  for (const Change& change : changes) {
    const std::string field = change.field;
    CAPTURE(field);
    KernelSpec changed = base;
    change.apply(changed);
    CHECK(changed != base);
    CHECK(changed.text() != base.text());
    CHECK(changed.hash() != base.hash());
    CHECK(changed.hash_hex() != base.hash_hex());
    hashes.insert(changed.hash());
    texts.insert(changed.text());
  }
  // Pairwise distinct too, not only distinct from the base.
  CHECK(hashes.size() == std::size(changes) + 1);
  CHECK(texts.size() == std::size(changes) + 1);

  std::set<std::uint64_t> grid_hashes;
  const std::vector<KernelSpec> specs = many_specs();
  for (const KernelSpec& s : specs) grid_hashes.insert(s.hash());
  CHECK(grid_hashes.size() == specs.size());
}

TEST_CASE("short_name names op, transposes, dtype, block and the static extents") {
  CHECK(sdd_spec().short_name() == "sdd_nt_bf16_b128_n114688_k4096");
  CHECK(test::moe_spec(OpKind::dsd, false, false, DType::bf16, 128).short_name() == "dsd_nn_bf16_b128_n4096_k114688");
  CHECK(test::moe_spec(OpKind::dsd, true, false, DType::fp16, 64).short_name() == "dsd_tn_fp16_b64_m114688_n4096");
  CHECK(test::moe_spec(OpKind::dds, false, true, DType::bf16, 64).short_name() == "dds_nt_bf16_b64_m4096_k114688");
  CHECK(test::moe_spec(OpKind::dds, true, false, DType::fp16, 128).short_name() == "dds_tn_fp16_b128_m4096_n114688");
  // No path separators or spaces: it becomes a file name.
  for (const KernelSpec& s : test::moe_spec_grid()) {
    CHECK(s.short_name().find_first_of("/ =") == std::string::npos);
  }
}

TEST_CASE("parse errors name the offending field") {
  SUBCASE("unknown key") {
    const auto thrown = spec_error_of([] { parse_kernel_spec(std::string(kSddText) + " colour=red"); });
    CHECK(thrown.field == "spec");
    CHECK(thrown.what.find("colour") != std::string::npos);
  }
  SUBCASE("a token that is not key=value") {
    CHECK(spec_error_of([] { parse_kernel_spec(std::string(kSddText) + " oops"); }).field == "spec");
  }
  SUBCASE("missing field") {
    for (const std::string key : {"op", "trans", "dtype", "block", "m", "n", "k", "tile", "family", "target"}) {
      CAPTURE(key);
      const std::string text = without_field(kSddText, key);
      CHECK(field_at(text, key) == std::string::npos);
      const auto thrown = spec_error_of([&] { parse_kernel_spec(text); });
      CHECK(thrown.field == key);
      CHECK(thrown.what.find("missing") != std::string::npos);
    }
    CHECK(spec_error_of([] { parse_kernel_spec(""); }).field == "op");
  }
  SUBCASE("duplicate field") {
    for (const std::string dup : {"op=sdd", "m=dyn", "k=4096", "target=sm_80"}) {
      CAPTURE(dup);
      const std::string key = dup.substr(0, dup.find('='));
      const auto thrown = spec_error_of([&] { parse_kernel_spec(std::string(kSddText) + " " + dup); });
      CHECK(thrown.field == key);
      CHECK(thrown.what.find("twice") != std::string::npos);
    }
  }
  SUBCASE("bad trans") {
    for (const std::string bad : {"nx", "n", "ntt", "NT", "", "t", "yy"}) {
      CAPTURE(bad);
      CHECK(spec_error_of([&] { parse_kernel_spec(with_field(kSddText, "trans", bad)); }).field == "trans");
    }
  }
  SUBCASE("bad extent") {
    for (const std::string key : {"m", "n", "k"}) {
      for (const std::string bad : {"0", "-5", "-1", "12ab", "", "dynamic", "DYN", "1e3", "4096.0", "99999999999999999999"}) {
        CAPTURE(key);
        CAPTURE(bad);
        const auto thrown = spec_error_of([&] { parse_kernel_spec(with_field(kSddText, key, bad)); });
        CHECK(thrown.field == key);
        CHECK(thrown.what.find("positive integer or dyn") != std::string::npos);
      }
    }
  }
  SUBCASE("bad values of the other fields") {
    const std::pair<std::string, std::string> cases[] = {
        {"op", "ssd"},          {"op", "SDD"},       {"dtype", "fp32"},        {"dtype", "fp8"},
        {"block", "12x"},       {"block", ""},       {"block", "big"},         {"tile", "128x128x32"},
        {"tile", "128x128"},    {"tile", "axbxc"},   {"tile", "128x128x32.s4.w2x2x"},
        {"family", "tcgen05"},  {"target", "sm_75"}, {"target", "ampere"},     {"target", "sm_90b"},
    };
    for (const auto& [key, bad] : cases) {
      CAPTURE(key);
      CAPTURE(bad);
      const auto thrown = spec_error_of([&] { parse_kernel_spec(with_field(kSddText, key, bad)); });
      CHECK(thrown.field == key);
    }
  }
}

TEST_CASE("SpecError says field, value and what is allowed") {
  const SpecError e("block", "96", "64 or 128");
  CHECK(e.field() == "block");
  CHECK(std::string(e.what()) == "block=96: expected 64 or 128");
  const std::invalid_argument& base = e;   // catchable as std::invalid_argument
  CHECK(std::string(base.what()) == "block=96: expected 64 or 128");
}

TEST_CASE("dynamic_extent: the sparse operand's rows, for every op and transpose") {
  struct Row {
    OpKind op;
    bool trans_a, trans_b;
    char extent;
  };
  const Row table[] = {
      {OpKind::sdd, false, false, 'm'}, {OpKind::sdd, false, true, 'm'},
      {OpKind::sdd, true, false, 'm'},  {OpKind::sdd, true, true, 'm'},
      {OpKind::dsd, false, false, 'm'}, {OpKind::dsd, false, true, 'm'},
      {OpKind::dsd, true, false, 'k'},  {OpKind::dsd, true, true, 'k'},
      {OpKind::dds, false, false, 'k'}, {OpKind::dds, false, true, 'n'},
      {OpKind::dds, true, false, 'k'},  {OpKind::dds, true, true, 'n'},
  };
  for (const Row& row : table) {
    const std::string op(op_name(row.op));
    CAPTURE(op);
    CAPTURE(row.trans_a);
    CAPTURE(row.trans_b);
    CHECK(dynamic_extent(row.op, row.trans_a, row.trans_b) == row.extent);
  }
  // moe_spec() marks exactly that extent dyn.
  for (const KernelSpec& s : test::moe_spec_grid()) {
    const char dyn = dynamic_extent(s.op, s.trans_a, s.trans_b);
    CAPTURE(s);
    CHECK((s.m == kDynamic) == (dyn == 'm'));
    CHECK((s.n == kDynamic) == (dyn == 'n'));
    CHECK((s.k == kDynamic) == (dyn == 'k'));
  }
}

TEST_CASE("op and family names round-trip") {
  for (OpKind op : test::kOps) CHECK(parse_op(op_name(op)) == op);
  CHECK(op_name(OpKind::dds) == "dds");
  CHECK(family_name(KernelFamily::mma) == "mma");
  CHECK(parse_family("mma") == KernelFamily::mma);
  CHECK(family_name(KernelFamily::wgmma) == "wgmma");
  CHECK(parse_family("wgmma") == KernelFamily::wgmma);
  CHECK(spec_error_of([] { parse_op("gemm"); }).field == "op");
  CHECK(spec_error_of([] { parse_family("WGMMA"); }).field == "family");
  CHECK(spec_error_of([] { parse_family("tcgen05"); }).field == "family");
}

TEST_CASE("dtype names, sizes and template types") {
  CHECK(dtype_name(DType::bf16) == "bf16");
  CHECK(dtype_name(DType::fp16) == "fp16");
  CHECK(parse_dtype("bf16") == DType::bf16);
  CHECK(parse_dtype("bfloat16") == DType::bf16);
  CHECK(parse_dtype("fp16") == DType::fp16);
  CHECK(parse_dtype("float16") == DType::fp16);
  CHECK(parse_dtype("half") == DType::fp16);
  CHECK(dtype_bytes(DType::bf16) == 2);
  CHECK(dtype_bytes(DType::fp16) == 2);
  CHECK(dtype_template_type(DType::bf16) == "moejit::bf16_t");
  CHECK(dtype_template_type(DType::fp16) == "moejit::fp16_t");
  const auto thrown = spec_error_of([] { parse_dtype("float32"); });
  CHECK(thrown.field == "dtype");
  CHECK(thrown.what.find("bf16 or fp16") != std::string::npos);
}

TEST_CASE("parse_target and Target::text") {
  CHECK(parse_target("sm_90a") == Target{9, 0, true});
  CHECK(parse_target("90a") == Target{9, 0, true});
  CHECK(parse_target("sm_90") == Target{9, 0, false});
  CHECK(parse_target("sm_80") == Target{8, 0, false});
  CHECK(parse_target("86") == Target{8, 6, false});
  CHECK(parse_target("sm_89") == Target{8, 9, false});
  CHECK(parse_target("sm_100a") == Target{10, 0, true});
  CHECK(parse_target("sm_120") == Target{12, 0, false});
  for (const std::string text : {"sm_80", "sm_86", "sm_87", "sm_89", "sm_90", "sm_90a", "sm_100", "sm_100a", "sm_120a"}) {
    CAPTURE(text);
    CHECK(parse_target(text).text() == text);
  }
  CHECK(Target{9, 0, true}.compute_capability() == 90);
  CHECK(Target{8, 6, false}.compute_capability() == 86);
  for (const std::string bad : {"sm_75", "sm_70", "75", "sm_", "", "a", "sm_9", "sm_90b", "sm_9x", "hopper", "sm90a", "sm_-90",
                            // no such architecture, and no arch-specific variant before Hopper
                            "sm_99", "sm_85", "sm_80a", "sm_86a"}) {
    CAPTURE(bad);
    CHECK(spec_error_of([&] { parse_target(bad); }).field == "target");
  }
}

TEST_CASE("target_for_device: Hopper gets sm_90a, everything else its plain sm_XY") {
  CHECK(target_for_device(9, 0) == Target{9, 0, true});
  CHECK(target_for_device(9, 0).text() == "sm_90a");
  CHECK(target_for_device(8, 0).text() == "sm_80");
  CHECK(target_for_device(8, 6).text() == "sm_86");
  CHECK(target_for_device(8, 9).text() == "sm_89");
  CHECK(target_for_device(10, 0).text() == "sm_100");
  CHECK(target_for_device(12, 0).text() == "sm_120");
}

TEST_CASE("shared memory and register limits per target") {
  CHECK(Target{8, 0, false}.max_shared_bytes_per_block() == 163 * 1024);
  CHECK(Target{8, 7, false}.max_shared_bytes_per_block() == 163 * 1024);
  CHECK(Target{8, 6, false}.max_shared_bytes_per_block() == 99 * 1024);
  CHECK(Target{8, 9, false}.max_shared_bytes_per_block() == 99 * 1024);
  CHECK(Target{9, 0, true}.max_shared_bytes_per_block() == 227 * 1024);
  CHECK(Target{9, 0, false}.max_shared_bytes_per_block() == 227 * 1024);
  CHECK(Target{10, 0, true}.max_shared_bytes_per_block() == 227 * 1024);
  // Consumer Blackwell has the 99 KB of the consumer Ampere and Ada parts.
  CHECK(Target{12, 0, false}.max_shared_bytes_per_block() == 99 * 1024);
  CHECK(Target{12, 1, true}.max_shared_bytes_per_block() == 99 * 1024);
  CHECK(Target{9, 0, true}.max_registers_per_thread() == 255);
}

TEST_CASE("parse_tile_config and TileConfig arithmetic") {
  const TileConfig t = parse_tile_config("128x64x32.s3.w4x1");
  CHECK(t.tile_m == 128);
  CHECK(t.tile_n == 64);
  CHECK(t.tile_k == 32);
  CHECK(t.stages == 3);
  CHECK(t.warps_m == 4);
  CHECK(t.warps_n == 1);
  CHECK(t.text() == "128x64x32.s3.w4x1");
  CHECK(t.threads() == 128);
  CHECK(t.warp_tile_m() == 32);
  CHECK(t.warp_tile_n() == 64);
  CHECK(t.accumulators_per_thread() == 64);

  const TileConfig def;
  CHECK(def.text() == "128x128x32.s4.w2x2");
  CHECK(parse_tile_config(def.text()) == def);
  // 4 stages of (128x32 + 32x128) 2-byte elements = 64 KiB, more than the epilogue's
  // 128 x (128 + 8) x 2 bytes.
  CHECK(def.shared_bytes(DType::bf16) == 65536);
  CHECK(def.shared_bytes(DType::fp16) == 65536);
  // Two shallow stages: the padded epilogue tile is the larger user.
  const TileConfig shallow{128, 128, 16, 2, 2, 2};
  CHECK(shallow.shared_bytes(DType::bf16) == 128 * 136 * 2);

  for (const std::string text : {"16x16x16.s2.w1x1", "256x128x64.s8.w4x2", "64x64x32.s4.w2x2"}) {
    CAPTURE(text);
    CHECK(parse_tile_config(text).text() == text);
  }
  for (const std::string bad : {"", "128", "128x128x32", "128x128x32.s4", "128x128x32.s4.w2", "128x128x32.s4.w2x2x",
                          "128x128x32.s4.w2x2 ", "128X128X32.S4.W2X2", "axbxc.s1.w1x1"}) {
    CAPTURE(bad);
    CHECK(spec_error_of([&] { parse_tile_config(bad); }).field == "tile");
  }
}

}  // TEST_SUITE

TEST_CASE("parse_kernel_spec is strict about types: each rejection names the field") {
  // The C++ boundary of the strict types the Python binding enforces: text that is not a
  // boolean or an integer in range never becomes a spec.
  const std::string base = kSddText;
  const std::pair<std::string, std::string> cases[] = {
      {"trans=nt", "trans=no"},    {"n=114688", "n=256.5"}, {"n=114688", "n=abc"},
      {"n=114688", "n=1180591620717411303424"}, {"n=114688", "n=-256"}, {"block=128", "block=12x"},
      {"block=128", "block=128.0"}, {"k=4096", "k="},
  };
  for (const auto& [from, to] : cases) {
    std::string text = base;
    text.replace(text.find(from), from.size(), to);
    CAPTURE(text);
    const auto thrown = spec_error_of([&] { parse_kernel_spec(text); });
    const std::string field = to.substr(0, to.find('='));
    CHECK(thrown.field == field);
    CHECK(thrown.what.find(to.substr(to.find('=') + 1)) != std::string::npos);
  }
}
