#include "runtime/kernel_db.hpp"

#include <sqlite3.h>

#include <chrono>
#include <thread>
#include <set>

#include <fmt/format.h>

#include "compiler/hash.hpp"
#include "compiler/kernel_spec.hpp"

namespace moejit {
namespace {

constexpr const char* kApplicationId = "moejit-kernel-db";

// Each step brings the schema from version i to i + 1.
constexpr const char* kMigrations[] = {
    // 0 -> 1: the kernels table.
    R"(CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
       CREATE TABLE IF NOT EXISTS kernels(
         key_hash TEXT PRIMARY KEY,
         spec_text TEXT NOT NULL, target TEXT NOT NULL, template_hash TEXT NOT NULL,
         nvrtc_version TEXT NOT NULL, compile_options TEXT NOT NULL, moejit_version TEXT NOT NULL,
         tile TEXT NOT NULL, lowered_name TEXT NOT NULL,
         cubin BLOB NOT NULL, cubin_hash TEXT NOT NULL, source TEXT NOT NULL, ptx TEXT NOT NULL,
         log TEXT NOT NULL,
         registers INTEGER NOT NULL, static_shared_bytes INTEGER NOT NULL, stack_bytes INTEGER NOT NULL,
         spill_store_bytes INTEGER NOT NULL, spill_load_bytes INTEGER NOT NULL,
         threads INTEGER NOT NULL, dynamic_shared_bytes INTEGER NOT NULL, compile_ms REAL NOT NULL,
         created_at REAL NOT NULL, last_used_at REAL NOT NULL, size_bytes INTEGER NOT NULL);
       CREATE INDEX IF NOT EXISTS kernels_last_used ON kernels(last_used_at);
       INSERT OR IGNORE INTO meta(key, value) VALUES('application', 'moejit-kernel-db');)",
    // 1 -> 2: autotuning results.
    R"(CREATE TABLE IF NOT EXISTS tunings(
         problem TEXT NOT NULL, target TEXT NOT NULL, gpu_name TEXT NOT NULL, token_bucket INTEGER NOT NULL,
         best_tile TEXT NOT NULL, best_ms REAL NOT NULL, candidates_json TEXT NOT NULL, tuned_at REAL NOT NULL,
         template_hash TEXT NOT NULL, nvrtc_version TEXT NOT NULL, moejit_version TEXT NOT NULL,
         PRIMARY KEY(problem, target, gpu_name, token_bucket, template_hash, nvrtc_version, moejit_version));)",
    // 2 -> 3: the record hash; add_record_hashes() fills it for the rows already there.
    R"(ALTER TABLE kernels ADD COLUMN record_hash TEXT NOT NULL DEFAULT '';)",
    // 3 -> 4: the key hash covers the binary parts only (KernelKey), rekey() recomputes it;
    // where each kernel came from: compile, tune or bake.
    R"(ALTER TABLE kernels ADD COLUMN origin TEXT NOT NULL DEFAULT 'compile';)",
};
static_assert(std::size(kMigrations) == KernelDb::kSchemaVersion);

constexpr const char* kKernelColumns =
    "key_hash, spec_text, target, template_hash, nvrtc_version, compile_options, moejit_version, tile, "
    "lowered_name, registers, static_shared_bytes, stack_bytes, spill_store_bytes, spill_load_bytes, threads, "
    "dynamic_shared_bytes, compile_ms, created_at, last_used_at, size_bytes";

KernelEntry read_entry(const sqlite::Statement& s) {
  KernelEntry e;
  e.key_hash = s.text(0);
  e.key = KernelKey{s.text(1), s.text(2), s.text(3), s.text(4), s.text(5), s.text(6)};
  e.tile = s.text(7);
  e.lowered_name = s.text(8);
  e.resources = ResourceUsage{static_cast<int>(s.integer(9)), static_cast<int>(s.integer(10)),
                              static_cast<int>(s.integer(11)), static_cast<int>(s.integer(12)),
                              static_cast<int>(s.integer(13))};
  e.threads = static_cast<int>(s.integer(14));
  e.dynamic_shared_bytes = static_cast<int>(s.integer(15));
  e.compile_ms = s.real(16);
  e.created_at = s.real(17);
  e.last_used_at = s.real(18);
  e.size_bytes = s.integer(19);
  return e;
}

std::string cubin_hash(const std::string& cubin) { return hex64(fnv1a64(cubin)); }

// SQLite's check messages span lines; warnings and reports want one.
std::string one_line(std::string text) {
  for (char& c : text) c = c == '\n' ? ' ' : c;
  return text;
}

// The row's columns after kKernelColumns, in row_query's order.
constexpr int kCubinColumn = 20;

StoredKernel read_stored(const sqlite::Statement& s) {
  const KernelEntry e = read_entry(s);
  StoredKernel row;
  row.key_hash = e.key_hash;
  row.key = e.key;
  row.tile = e.tile;
  CompiledKernel& k = row.kernel;
  k.cubin = s.blob(kCubinColumn);
  row.cubin_hash = s.text(kCubinColumn + 1);
  k.source = s.text(kCubinColumn + 2);
  k.ptx = s.text(kCubinColumn + 3);
  k.log = s.text(kCubinColumn + 4);
  row.record_hash = s.text(kCubinColumn + 5);
  row.origin = s.text(kCubinColumn + 6);
  k.lowered_name = e.lowered_name;
  k.resources = e.resources;
  k.threads = e.threads;
  k.dynamic_shared_bytes = e.dynamic_shared_bytes;
  k.compile_ms = e.compile_ms;
  const std::string& options = e.key.compile_options;
  for (std::size_t start = 0; start < options.size();) {
    std::size_t end = options.find('\n', start);
    if (end == std::string::npos) end = options.size();
    k.options.push_back(options.substr(start, end - start));
    start = end + 1;
  }
  return row;
}

// Whether an error reading a read-only file means it needs immutable mode: a WAL file whose
// -shm cannot be created or grown beside it (a read-only directory or mount, a full disk, a
// file size limit).
bool needs_immutable(const sqlite::Error& e) {
  return e.code() == SQLITE_CANTOPEN || e.code() == SQLITE_READONLY || e.code() == SQLITE_IOERR ||
         e.out_of_space() || e.read_only();
}

}  // namespace

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

KernelDb::KernelDb(const std::string& path, bool read_only, int busy_timeout_ms) : read_only_(read_only) {
  try {
    if (read_only_) {
      open_read_only(path, busy_timeout_ms);
    } else {
      db_ = std::make_unique<sqlite::Connection>(path, sqlite::OpenMode::read_write, busy_timeout_ms);
      // Refuse another program's file (or a newer schema) before changing its journal mode.
      // One read transaction: version and tables from the same snapshot, even while another
      // process is creating the schema.
      {
        sqlite::Transaction snapshot(*db_, /*write=*/false);
        schema_version_ = read_schema_version();
        if (schema_version_ == 0) require_empty();
        snapshot.commit();
      }
      if (schema_version_ <= kSchemaVersion) {
        enable_wal(busy_timeout_ms);
        create_or_migrate();
      }
    }
  } catch (const sqlite::Error& e) {
    if (e.corrupt()) throw KernelDbError(KernelDbError::Reason::not_a_kernel_db,
                                              fmt::format("{} is not a usable kernel database: {}", path, e.what()));
    throw;
  }
  if (schema_version_ > kSchemaVersion) {
    throw KernelDbError(KernelDbError::Reason::newer_schema, fmt::format(
        "{} has kernel database schema {}, newer than this moejit understands ({}): it was written by a newer "
        "moejit. Upgrade moejit, or point MOEJIT_CACHE_DIR / MOEJIT_KERNEL_DB elsewhere.",
        path, schema_version_, kSchemaVersion));
  }
  if (read_only_ && schema_version_ < 1) {
    throw KernelDbError(KernelDbError::Reason::not_a_kernel_db,
                        fmt::format("{} is not a moejit kernel database", path));
  }
}

void KernelDb::open_read_only(const std::string& path, int busy_timeout_ms) {
  db_ = std::make_unique<sqlite::Connection>(path, sqlite::OpenMode::read_only, busy_timeout_ms);
  try {
    schema_version_ = read_schema_version();
  } catch (const sqlite::Error& e) {
    if (!needs_immutable(e)) throw;
    db_ = std::make_unique<sqlite::Connection>(path, sqlite::OpenMode::immutable, busy_timeout_ms);
    schema_version_ = read_schema_version();
  }
}

int KernelDb::read_schema_version() {
  sqlite::Statement s = db_->prepare("PRAGMA user_version");
  s.step();
  const int version = static_cast<int>(s.integer(0));
  if (version > 0) {
    sqlite::Statement app = db_->prepare("SELECT value FROM meta WHERE key = 'application'");
    if (!app.step() || app.text(0) != kApplicationId) {
      throw KernelDbError(KernelDbError::Reason::not_a_kernel_db,
                          fmt::format("{} is an SQLite file but not a moejit kernel database", path()));
    }
  }
  return version;
}

void KernelDb::require_empty() {
  // A fresh file has no tables; an SQLite file of some other program has some.
  sqlite::Statement tables = db_->prepare("SELECT count(*) FROM sqlite_master");
  tables.step();
  if (tables.integer(0) != 0) {
    throw KernelDbError(KernelDbError::Reason::not_a_kernel_db,
                        fmt::format("{} is an SQLite file but not a moejit kernel database", path()));
  }
}

void KernelDb::enable_wal(int busy_timeout_ms) {
  // WAL lets readers proceed while one process writes. Changing the journal mode needs
  // the file to itself and SQLite does not apply the busy timeout to it, so a process
  // opening a new cache while another writes it retries here.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(busy_timeout_ms);
  for (;;) {
    try {
      db_->exec("PRAGMA journal_mode=WAL");
      break;
    } catch (const sqlite::Error& e) {
      if (!e.busy() || std::chrono::steady_clock::now() > deadline) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  // NORMAL is durable enough for a cache: a power cut can lose the last kernels, never
  // corrupt the file.
  db_->exec("PRAGMA synchronous=NORMAL");
}

void KernelDb::create_or_migrate() {
  sqlite::Transaction tx(*db_);
  schema_version_ = read_schema_version();   // again: another process may have migrated
  if (schema_version_ == 0) require_empty();
  if (schema_version_ > kSchemaVersion) return;   // refused by the constructor
  const int from = schema_version_;
  for (int v = from; v < kSchemaVersion; ++v) db_->exec(kMigrations[v]);
  if (from != kSchemaVersion) db_->exec(fmt::format("PRAGMA user_version = {}", kSchemaVersion));
  schema_version_ = kSchemaVersion;
  if (from >= 1 && from < 4) rekey();
  if (from >= 1 && from < 3) add_record_hashes();
  tx.commit();
}

void KernelDb::rekey() {
  // Rows keyed by every part, the NVRTC version included: each gets the key of its binary
  // parts. Rows that differ only in their NVRTC are the same binary: the most recently used
  // one stays.
  struct Row {
    std::string old_hash, new_hash;
  };
  std::vector<Row> rows;
  sqlite::Statement s = db_->prepare(
      "SELECT key_hash, spec_text, target, template_hash, nvrtc_version, compile_options, moejit_version "
      "FROM kernels ORDER BY last_used_at DESC");
  while (s.step()) {
    const KernelKey key{s.text(1), s.text(2), s.text(3), s.text(4), s.text(5), s.text(6)};
    rows.push_back({s.text(0), key.hash_hex()});
  }
  std::set<std::string> taken;
  for (const Row& row : rows) {
    if (row.old_hash == row.new_hash) {
      taken.insert(row.new_hash);
      continue;
    }
    if (!taken.insert(row.new_hash).second) {
      remove(row.old_hash);
      continue;
    }
    sqlite::Statement set = db_->prepare("UPDATE kernels SET key_hash = ? WHERE key_hash = ?");
    set.bind(1, row.new_hash).bind(2, row.old_hash).run();
  }
}

void KernelDb::add_record_hashes() {
  // Rows of schema 2 had only their CUBIN hashed: each that passes the older check and the
  // recomputed fields gets its record hash, the others go (and are compiled again).
  std::vector<std::string> hashes;
  sqlite::Statement s = db_->prepare("SELECT key_hash FROM kernels WHERE record_hash = ''");
  while (s.step()) hashes.push_back(s.text(0));
  for (const std::string& hash : hashes) {
    std::optional<StoredKernel> row = read_row(hash);
    if (!row) continue;
    if (record_problem(*row)) {
      remove(hash);
      continue;
    }
    sqlite::Statement set = db_->prepare("UPDATE kernels SET record_hash = ? WHERE key_hash = ?");
    set.bind(1, record_hash(row->key, row->tile, row->kernel)).bind(2, hash).run();
  }
}

std::string KernelDb::row_query(const char* where) const {
  return fmt::format("SELECT {}, cubin, cubin_hash, source, ptx, log, {}, {} FROM kernels {}", kKernelColumns,
                     schema_version_ >= 3 ? "record_hash" : "''", origin_column(), where);
}

std::optional<StoredKernel> KernelDb::read_row(const std::string& key_hash) {
  sqlite::Statement s = db_->prepare(row_query("WHERE key_hash = ?"));
  s.bind(1, key_hash);
  if (!s.step()) return std::nullopt;
  return read_stored(s);
}

void KernelDb::drop(const std::string& key_hash) {
  if (read_only_) return;
  try {
    remove(key_hash);
  } catch (const sqlite::Error& e) {
    // Could not write: the caller compiles anyway, and the row is checked again next time.
    // Damaged pages under the row are the caller's to recover from.
    if (e.corrupt()) throw;
  }
}

std::optional<CompiledKernel> KernelDb::find(const KernelKey& key, std::string* rejected) {
  std::string hash = key.hash_hex();
  if (schema_version_ < 4) {
    // A read-only file of an older schema (a writable one was rekeyed when opened): its
    // rows are keyed by every part, the NVRTC version included, so look them up by the
    // binary parts.
    sqlite::Statement s = db_->prepare(
        "SELECT key_hash FROM kernels WHERE spec_text = ? AND target = ? AND template_hash = ? AND "
        "compile_options = ? AND moejit_version = ? ORDER BY last_used_at DESC LIMIT 1");
    s.bind(1, key.spec_text).bind(2, key.target).bind(3, key.template_hash).bind(4, key.compile_options);
    s.bind(5, key.moejit_version);
    if (!s.step()) return std::nullopt;
    hash = s.text(0);
  }
  std::optional<StoredKernel> row = read_row(hash);
  if (!row) return std::nullopt;
  if (auto problem = record_problem(*row)) {
    // Dropped, so the kernel compiled in its place can be stored instead of being compiled
    // again in every process.
    drop(hash);
    if (rejected) *rejected = std::move(*problem);
    return std::nullopt;
  }
  if (!row->key.same_binary(key)) return std::nullopt;   // an intact row of another key: a hash collision
  if (!read_only_) {
    try {
      sqlite::Statement touch = db_->prepare("UPDATE kernels SET last_used_at = ? WHERE key_hash = ?");
      touch.bind(1, unix_now()).bind(2, hash).run();
    } catch (const sqlite::Error& e) {
      // Only the LRU order suffers (a full disk, a lock held too long): still a hit. Damage
      // is not ignored.
      if (e.corrupt()) throw;
    }
  }
  return std::move(row->kernel);
}

bool KernelDb::contains(const std::string& key_hash) {
  sqlite::Statement s = db_->prepare("SELECT 1 FROM kernels WHERE key_hash = ?");
  s.bind(1, key_hash);
  return s.step();
}

std::optional<std::pair<KernelKey, CompiledKernel>> KernelDb::load(const std::string& key_hash,
                                                                   std::string* rejected) {
  std::optional<StoredKernel> row = read_row(key_hash);
  if (!row) return std::nullopt;
  if (auto problem = record_problem(*row)) {
    if (rejected) *rejected = std::move(*problem);
    return std::nullopt;
  }
  return std::make_pair(std::move(row->key), std::move(row->kernel));
}

std::string KernelDb::origin_column() const { return schema_version_ >= 4 ? "origin" : "'compile'"; }

bool KernelDb::insert(const KernelKey& key, const CompiledKernel& k, const std::string& origin) {
  const double now = unix_now();
  const std::int64_t size =
      static_cast<std::int64_t>(k.cubin.size() + k.source.size() + k.ptx.size() + k.log.size());
  sqlite::Transaction tx(*db_);
  sqlite::Statement s = db_->prepare(
      "INSERT OR IGNORE INTO kernels(key_hash, spec_text, target, template_hash, nvrtc_version, compile_options, "
      "moejit_version, tile, lowered_name, cubin, cubin_hash, source, ptx, log, registers, static_shared_bytes, "
      "stack_bytes, spill_store_bytes, spill_load_bytes, threads, dynamic_shared_bytes, compile_ms, created_at, "
      "last_used_at, size_bytes, record_hash, origin) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
  s.bind(1, key.hash_hex()).bind(2, key.spec_text).bind(3, key.target).bind(4, key.template_hash);
  s.bind(5, key.nvrtc_version).bind(6, key.compile_options).bind(7, key.moejit_version);
  s.bind(8, k.spec.tile.text()).bind(9, k.lowered_name).bind_blob(10, k.cubin).bind(11, cubin_hash(k.cubin));
  s.bind(12, k.source).bind(13, k.ptx).bind(14, k.log);
  s.bind(15, std::int64_t{k.resources.registers}).bind(16, std::int64_t{k.resources.static_shared_bytes});
  s.bind(17, std::int64_t{k.resources.stack_bytes}).bind(18, std::int64_t{k.resources.spill_store_bytes});
  s.bind(19, std::int64_t{k.resources.spill_load_bytes}).bind(20, std::int64_t{k.threads});
  s.bind(21, std::int64_t{k.dynamic_shared_bytes}).bind(22, k.compile_ms).bind(23, now).bind(24, now);
  s.bind(25, size).bind(26, record_hash(key, k.spec.tile.text(), k)).bind(27, origin);
  s.run();
  const bool inserted = db_->changes() > 0;
  tx.commit();
  return inserted;
}

std::vector<KernelEntry> KernelDb::entries() {
  std::vector<KernelEntry> out;
  sqlite::Statement s =
      db_->prepare(fmt::format("SELECT {}, {} FROM kernels ORDER BY spec_text", kKernelColumns, origin_column()));
  while (s.step()) {
    out.push_back(read_entry(s));
    out.back().origin = s.text(kCubinColumn);
  }
  return out;
}

bool KernelDb::remove(const std::string& key_hash) {
  sqlite::Statement s = db_->prepare("DELETE FROM kernels WHERE key_hash = ?");
  s.bind(1, key_hash).run();
  return db_->changes() > 0;
}

std::int64_t KernelDb::total_bytes() {
  sqlite::Statement s = db_->prepare("SELECT coalesce(sum(size_bytes), 0) FROM kernels");
  s.step();
  return s.integer(0);
}

int KernelDb::evict_to(std::int64_t max_bytes) {
  sqlite::Transaction tx(*db_);
  std::int64_t total = total_bytes();
  int removed = 0;
  if (total > max_bytes) {
    std::vector<std::pair<std::string, std::int64_t>> victims;
    sqlite::Statement s = db_->prepare("SELECT key_hash, size_bytes FROM kernels ORDER BY last_used_at ASC");
    while (total > max_bytes && s.step()) {
      victims.emplace_back(s.text(0), s.integer(1));
      total -= s.integer(1);
    }
    for (const auto& [hash, size] : victims) removed += remove(hash) ? 1 : 0;
  }
  tx.commit();
  return removed;
}

int KernelDb::prune_older_than(double max_age_seconds) {
  sqlite::Statement s = db_->prepare("DELETE FROM kernels WHERE last_used_at < ?");
  s.bind(1, unix_now() - max_age_seconds).run();
  return static_cast<int>(db_->changes());
}

VerifyReport KernelDb::verify() {
  VerifyReport report;
  try {
    sqlite::Statement check = db_->prepare("PRAGMA integrity_check");
    std::string message;
    while (check.step()) message += (message.empty() ? "" : "; ") + one_line(check.text(0));
    report.integrity_ok = message == "ok";
    report.integrity_message = message;
  } catch (const sqlite::Error& e) {
    report.integrity_ok = false;
    report.integrity_message = e.what();
  }
  // Every row by rowid, each read on its own: one damaged row does not hide the others.
  std::vector<std::int64_t> rowids;
  try {
    sqlite::Statement s = db_->prepare("SELECT rowid FROM kernels NOT INDEXED");
    while (s.step()) rowids.push_back(s.integer(0));
  } catch (const sqlite::Error& e) {
    report.integrity_ok = false;
    ++report.unreadable;
    if (report.integrity_message == "ok") report.integrity_message = e.what();
  }
  for (const std::int64_t rowid : rowids) {
    ++report.kernels;
    try {
      sqlite::Statement s = db_->prepare(row_query("WHERE rowid = ?"));
      s.bind(1, rowid);
      if (!s.step()) continue;
      StoredKernel row = read_stored(s);
      if (auto problem = record_problem(row)) {
        report.damaged.push_back(row.key_hash);
        report.reasons.push_back(*problem);
      }
    } catch (const sqlite::Error&) {
      ++report.unreadable;
    }
  }
  return report;
}

std::string KernelDb::quick_check() {
  try {
    sqlite::Statement check = db_->prepare("PRAGMA quick_check");
    std::string message;
    while (check.step()) message += (message.empty() ? "" : "; ") + one_line(check.text(0));
    return message;
  } catch (const sqlite::Error& e) {
    return e.what();
  }
}

SalvageReport KernelDb::salvage_into(KernelDb& destination) {
  SalvageReport report;
  // Row ids from the table and from its key index: a damaged page cuts either scan short,
  // and the other may still reach the rows behind it.
  std::set<std::int64_t> rowids;
  for (const char* scan : {"SELECT rowid FROM kernels NOT INDEXED", "SELECT rowid FROM kernels ORDER BY key_hash",
                           "SELECT rowid FROM kernels NOT INDEXED ORDER BY rowid DESC"}) {
    try {
      sqlite::Statement s = db_->prepare(scan);
      while (s.step()) rowids.insert(s.integer(0));
    } catch (const sqlite::Error&) {
      ++report.unreadable;
    }
  }
  for (const std::int64_t rowid : rowids) {
    std::optional<StoredKernel> row;
    try {
      sqlite::Statement s = db_->prepare(row_query("WHERE rowid = ?"));
      s.bind(1, rowid);
      if (s.step()) row = read_stored(s);
    } catch (const sqlite::Error&) {
      ++report.unreadable;
      continue;
    }
    if (!row) continue;
    if (record_problem(*row)) {
      ++report.dropped;
      continue;
    }
    destination.insert(row->key, row->kernel);
    ++report.copied;
  }
  try {
    for (const TuningEntry& t : tunings()) {
      destination.put_tuning(t);
      ++report.tunings;
    }
  } catch (const sqlite::Error&) {
    ++report.unreadable;
  }
  return report;
}

void KernelDb::put_tuning(const TuningEntry& t) {
  sqlite::Transaction tx(*db_);
  sqlite::Statement s = db_->prepare(
      "INSERT OR REPLACE INTO tunings(problem, target, gpu_name, token_bucket, best_tile, best_ms, candidates_json, "
      "tuned_at, template_hash, nvrtc_version, moejit_version) VALUES(?,?,?,?,?,?,?,?,?,?,?)");
  s.bind(1, t.problem).bind(2, t.target).bind(3, t.gpu_name).bind(4, t.token_bucket).bind(5, t.best_tile);
  s.bind(6, t.best_ms).bind(7, t.candidates_json).bind(8, t.tuned_at).bind(9, t.template_hash);
  s.bind(10, t.nvrtc_version).bind(11, t.moejit_version);
  s.run();
  tx.commit();
}

std::vector<TuningEntry> KernelDb::tunings() {
  std::vector<TuningEntry> out;
  if (schema_version_ < 2) return out;
  sqlite::Statement s = db_->prepare(
      "SELECT problem, target, gpu_name, token_bucket, best_tile, best_ms, candidates_json, tuned_at, "
      "template_hash, nvrtc_version, moejit_version FROM tunings ORDER BY problem, token_bucket");
  while (s.step()) {
    out.push_back(TuningEntry{s.text(0), s.text(1), s.text(2), s.integer(3), s.text(4), s.real(5), s.text(6),
                              s.real(7), s.text(8), s.text(9), s.text(10)});
  }
  return out;
}

std::vector<TuningEntry> KernelDb::tunings_for(const std::string& problem, const std::string& gpu_name,
                                               const std::string& template_hash,
                                               const std::string& moejit_version) {
  std::vector<TuningEntry> out;
  if (schema_version_ < 2) return out;
  sqlite::Statement s = db_->prepare(
      "SELECT problem, target, gpu_name, token_bucket, best_tile, best_ms, candidates_json, tuned_at, "
      "template_hash, nvrtc_version, moejit_version FROM tunings WHERE problem = ? AND gpu_name = ? AND "
      "template_hash = ? AND moejit_version = ? ORDER BY token_bucket, tuned_at DESC");
  s.bind(1, problem).bind(2, gpu_name).bind(3, template_hash).bind(4, moejit_version);
  while (s.step()) {
    out.push_back(TuningEntry{s.text(0), s.text(1), s.text(2), s.integer(3), s.text(4), s.real(5), s.text(6),
                              s.real(7), s.text(8), s.text(9), s.text(10)});
  }
  return out;
}

int KernelDb::copy_into(KernelDb& destination, const std::function<bool(const KernelEntry&)>& keep) {
  int added = 0;
  std::set<std::string> targets;
  for (const KernelEntry& e : entries()) {
    if (!keep(e)) continue;
    auto loaded = load(e.key_hash);
    if (!loaded) continue;   // damaged entries are not copied
    targets.insert(e.key.target);
    added += destination.insert(loaded->first, loaded->second, e.origin) ? 1 : 0;
  }
  for (const TuningEntry& t : tunings()) {
    if (targets.contains(t.target)) destination.put_tuning(t);
  }
  return added;
}

}  // namespace moejit
