// The kernel database's integrity (runtime/kernel_db*.hpp): every field of a stored row that
// a lookup or a launch reads is checked on read, a cache with damaged pages is moved aside
// with its intact kernels kept, and rows that fail are never handed out. The kernels are
// synthetic (no NVRTC): a CUBIN stand-in of random bytes holding the entry point's name.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "compiler/compiled_kernel.hpp"
#include "runtime/kernel_db.hpp"
#include "runtime/kernel_db_stack.hpp"
#include "runtime/sqlite.hpp"
#include "test_support.hpp"

using namespace moejit;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "moejit-kernel-db-XXXXXX").string();
    path = ::mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const char* name) const { return (path / name).string(); }
};

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(gen() & 0xff);
  return out;
}

KernelSpec spec_of(int i) {
  return test::moe_spec(OpKind::sdd, false, true, DType::bf16, 128, test::sm_90a(), 4096, 128 * (i + 2));
}

KernelKey key_of(const KernelSpec& spec) {
  return KernelKey{spec.text(), spec.target.text(), "templates-v1", "13.0", "-arch=sm_90a\n-O3", "test"};
}

// A kernel the record check accepts: geometry from the spec, resources from its "CUBIN"
// and log, the entry point inside the CUBIN.
CompiledKernel kernel_of(const KernelSpec& spec, int i, std::size_t cubin_bytes = 12000) {
  CompiledKernel k;
  k.spec = spec;
  k.lowered_name = fmt::format("_Z8bsr_gemmILi{}EEvv", i);
  k.cubin = random_bytes(cubin_bytes, static_cast<unsigned>(i)) + k.lowered_name + random_bytes(64, 99u + i);
  k.source = fmt::format("// kernel {}\n#include <moejit/bsr_gemm_sm80.cuh>\n", i);
  k.ptx = fmt::format(".version 8.0\n.entry {}()\n{{ ret; }}\n", k.lowered_name);
  k.log = "";
  k.options = {"-arch=sm_90a", "-O3"};
  k.resources = kernel_resources(k.log, k.cubin);
  k.threads = spec.threads();
  k.dynamic_shared_bytes = spec.shared_bytes();
  k.compile_ms = 12.5;
  return k;
}

void sql(const std::string& path, const std::string& statement) {
  sqlite::Connection db(path, sqlite::OpenMode::read_write, 1000);
  db.exec(statement);
}

KernelDbConfig cache_config(const std::string& path) {
  KernelDbConfig config;
  config.cache_path = path;
  return config;
}

}  // namespace

TEST_CASE("a stored kernel comes back field for field, and passes verify") {
  TempDir dir;
  const KernelSpec spec = spec_of(0);
  const CompiledKernel k = kernel_of(spec, 0);
  KernelDb db(dir.file("kernels.sqlite"), false);
  CHECK(db.schema_version() == KernelDb::kSchemaVersion);
  CHECK(db.insert(key_of(spec), k));
  std::string why;
  auto hit = db.find(key_of(spec), &why);
  REQUIRE(hit);
  CHECK(why.empty());
  CHECK(hit->spec == spec);
  CHECK(hit->cubin == k.cubin);
  CHECK(hit->lowered_name == k.lowered_name);
  CHECK(hit->threads == k.threads);
  CHECK(hit->dynamic_shared_bytes == k.dynamic_shared_bytes);
  CHECK(hit->options == k.options);
  const VerifyReport report = db.verify();
  CHECK(report.integrity_ok);
  CHECK(report.kernels == 1);
  CHECK(report.damaged.empty());
  CHECK(report.unreadable == 0);
}

TEST_CASE("every column a lookup or a launch reads is covered: a tampered row is never used") {
  // Each UPDATE changes one column of the one stored row, as a damaged disk or a hand edit
  // would; the row must fail its check, be reported by verify and never be handed out.
  const std::vector<std::pair<const char*, const char*>> tampering = {
      {"spec_text", "spec_text = replace(spec_text, 'n=256', 'n=384')"},
      {"target", "target = 'sm_80'"},
      {"template_hash", "template_hash = 'templates-v2'"},
      {"nvrtc_version", "nvrtc_version = '12.4'"},
      {"compile_options", "compile_options = '-arch=sm_90a'"},
      {"moejit_version", "moejit_version = 'other'"},
      {"tile", "tile = '64x64x32.s4.w2x2'"},
      {"lowered_name", "lowered_name = '_Z5otherv'"},
      {"cubin", "cubin = cubin || x'00'"},
      {"cubin and its hash", "cubin = x'00', cubin_hash = '0000000000000000'"},
      {"source", "source = 'int main() {}'"},
      {"ptx", "ptx = '.version 1.0'"},
      {"log", "log = 'ptxas info: Used 9 registers'"},
      {"registers", "registers = registers + 1"},
      {"static_shared_bytes", "static_shared_bytes = 1"},
      {"stack_bytes", "stack_bytes = 8"},
      {"spill_store_bytes", "spill_store_bytes = 4"},
      {"spill_load_bytes", "spill_load_bytes = 4"},
      {"threads", "threads = 32"},
      {"dynamic_shared_bytes", "dynamic_shared_bytes = 1"},
      {"threads and dynamic_shared_bytes", "threads = 32, dynamic_shared_bytes = 1"},
      {"record_hash", "record_hash = '0123456789abcdef'"},
      {"record_hash emptied (a schema-2 row)", "record_hash = '', cubin_hash = '0'"},
  };
  for (const auto& [column, update] : tampering) {
    CAPTURE(column);
    TempDir dir;
    const std::string path = dir.file("kernels.sqlite");
    const KernelSpec spec = spec_of(0);
    const KernelKey key = key_of(spec);
    {
      KernelDb db(path, false);
      db.insert(key, kernel_of(spec, 0));
      db.insert(key_of(spec_of(1)), kernel_of(spec_of(1), 1));   // an untouched neighbour
    }
    sql(path, fmt::format("UPDATE kernels SET {} WHERE key_hash = '{}'", update, key.hash_hex()));
    KernelDb db(path, false);
    const VerifyReport report = db.verify();
    REQUIRE(report.damaged.size() == 1);
    CHECK(report.damaged[0] == key.hash_hex());
    CHECK(!report.reasons[0].empty());
    std::string why;
    CHECK_FALSE(db.find(key, &why));
    CHECK_FALSE(db.load(key.hash_hex()));
    // A lookup drops the row it rejects, so the recompiled kernel can take its place.
    CHECK(!why.empty());
    CHECK_FALSE(db.contains(key.hash_hex()));
    CHECK(db.find(key_of(spec_of(1))));
  }
}

TEST_CASE("bookkeeping columns do not reach a launch: changing them keeps the kernel") {
  for (const char* update : {"last_used_at = 1", "created_at = 2", "compile_ms = 3", "size_bytes = 4"}) {
    CAPTURE(update);
    TempDir dir;
    const std::string path = dir.file("kernels.sqlite");
    const KernelSpec spec = spec_of(0);
    KernelDb(path, false).insert(key_of(spec), kernel_of(spec, 0));
    sql(path, fmt::format("UPDATE kernels SET {}", update));
    KernelDb db(path, false);
    CHECK(db.find(key_of(spec)));
    CHECK(db.verify().damaged.empty());
  }
}

TEST_CASE("a read-only opening never writes, and a rejected row stays for verify to report") {
  TempDir dir;
  const std::string path = dir.file("kernels.sqlite");
  const KernelSpec spec = spec_of(0);
  KernelDb(path, false).insert(key_of(spec), kernel_of(spec, 0));
  sql(path, "UPDATE kernels SET threads = 32");
  KernelDb db(path, true);
  CHECK(db.read_only());
  std::string why;
  CHECK_FALSE(db.find(key_of(spec), &why));
  CHECK(why.find("launch geometry") != std::string::npos);
  CHECK(db.contains(key_of(spec).hash_hex()));
}

namespace {

// Overwrites the page-aligned 4 KiB at `fraction` of the file with random bytes: one bad
// sector in the middle of a populated cache.
void damage_page(const std::string& path, double fraction) {
  const auto size = fs::file_size(path);
  const std::uintmax_t offset = static_cast<std::uintmax_t>(static_cast<double>(size) * fraction) / 4096 * 4096;
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(offset));
  const std::string garbage = random_bytes(4096, 7);
  f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
}

}  // namespace

TEST_CASE("a damaged page: the cache is moved aside once, its intact kernels kept, a fresh cache goes on") {
  TempDir dir;
  const std::string path = dir.file("kernels.sqlite");
  constexpr int kKernels = 40;
  {
    KernelDbStack stack(cache_config(path), nullptr);
    for (int i = 0; i < kKernels; ++i) stack.insert(key_of(spec_of(i)), kernel_of(spec_of(i), i));
  }
  damage_page(path, 0.4);
  std::vector<std::string> warnings;
  KernelDbStack stack(cache_config(path), [&](const std::string& w) { warnings.push_back(w); });
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].find("is damaged") != std::string::npos);
  CHECK(warnings[0].find("moved it to " + path + ".corrupt-") != std::string::npos);
  CHECK(warnings[0].find("intact kernel") != std::string::npos);
  CHECK(stack.cache_writable());
  int hits = 0;
  for (int i = 0; i < kKernels; ++i) {
    if (auto hit = stack.find(key_of(spec_of(i)))) {
      ++hits;
      CHECK(hit->cubin == kernel_of(spec_of(i), i).cubin);
    } else {
      stack.insert(key_of(spec_of(i)), kernel_of(spec_of(i), i));   // compiled again, stored again
    }
  }
  // One page holds a part of one or two rows: the rest survive.
  CHECK(hits >= kKernels - 3);
  CHECK(warnings.size() == 1);
  // The aside file is kept for inspection; the fresh cache is whole.
  int aside = 0;
  for (const auto& entry : fs::directory_iterator(dir.path)) {
    aside += entry.path().filename().string().starts_with("kernels.sqlite.corrupt-") ? 1 : 0;
  }
  CHECK(aside >= 1);
  KernelDb fresh(path, true);
  const VerifyReport report = fresh.verify();
  CHECK(report.integrity_ok);
  CHECK(report.kernels == kKernels);
  CHECK(report.damaged.empty());
}

TEST_CASE("damage a read runs into (no quick_check at open) gets the same recovery, and no wrong kernel") {
  // A cache above quick_check_max_bytes: damage shows only where a lookup or a write
  // touches it. Pages at several places, so some fall on the table's structure.
  for (const double fraction : {0.1, 0.4, 0.7, 0.95}) {
    CAPTURE(fraction);
    TempDir dir;
    const std::string path = dir.file("kernels.sqlite");
    constexpr int kKernels = 40;
    KernelDbConfig config = cache_config(path);
    config.quick_check_max_bytes = 0;
    {
      KernelDbStack stack(config, nullptr);
      for (int i = 0; i < kKernels; ++i) stack.insert(key_of(spec_of(i)), kernel_of(spec_of(i), i));
    }
    damage_page(path, fraction);
    std::vector<std::string> warnings;
    KernelDbStack stack(config, [&](const std::string& w) { warnings.push_back(w); });
    int hits = 0;
    for (int i = 0; i < kKernels; ++i) {
      if (auto hit = stack.find(key_of(spec_of(i)))) {
        ++hits;
        CHECK(hit->cubin == kernel_of(spec_of(i), i).cubin);
        CHECK(hit->threads == spec_of(i).threads());
      } else {
        stack.insert(key_of(spec_of(i)), kernel_of(spec_of(i), i));
      }
    }
    CHECK(hits >= kKernels - 3);
    // At most one warning per damaged row, and at most one move aside.
    CHECK(warnings.size() <= 3);
    int moved = 0;
    for (const std::string& w : warnings) moved += w.find("moved it to") != std::string::npos ? 1 : 0;
    CHECK(moved <= 1);
    // Afterwards every kernel is served from the cache.
    KernelDbStack later(config, nullptr);
    for (int i = 0; i < kKernels; ++i) CHECK(later.find(key_of(spec_of(i))));
  }
}

TEST_CASE("salvage copies what SQLite still reads and drops rows that fail their check") {
  TempDir dir;
  const std::string path = dir.file("kernels.sqlite");
  {
    KernelDb db(path, false);
    for (int i = 0; i < 5; ++i) db.insert(key_of(spec_of(i)), kernel_of(spec_of(i), i));
    TuningEntry t;
    t.problem = spec_of(0).problem_text();
    t.target = "sm_90a";
    t.gpu_name = "gpu";
    t.best_tile = spec_of(0).tile.text();
    db.put_tuning(t);
  }
  sql(path, fmt::format("UPDATE kernels SET dynamic_shared_bytes = 1 WHERE key_hash = '{}'",
                        key_of(spec_of(3)).hash_hex()));
  KernelDb damaged(path, true);
  KernelDb fresh(dir.file("fresh.sqlite"), false);
  const SalvageReport report = damaged.salvage_into(fresh);
  CHECK(report.copied == 4);
  CHECK(report.dropped == 1);
  CHECK(report.unreadable == 0);
  CHECK(report.tunings == 1);
  CHECK(fresh.entries().size() == 4);
  CHECK_FALSE(fresh.contains(key_of(spec_of(3)).hash_hex()));
}

TEST_CASE("a file that is not a database is moved aside, and nothing is salvaged from it") {
  TempDir dir;
  const std::string path = dir.file("kernels.sqlite");
  std::ofstream(path, std::ios::binary) << random_bytes(8192, 3);
  std::vector<std::string> warnings;
  KernelDbStack stack(cache_config(path), [&](const std::string& w) { warnings.push_back(w); });
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].find("moved it to") != std::string::npos);
  CHECK(stack.cache_writable());
  stack.insert(key_of(spec_of(0)), kernel_of(spec_of(0), 0));
  CHECK(stack.find(key_of(spec_of(0))));
}
