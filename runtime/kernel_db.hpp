// One kernel database file (SQLite): compiled kernels under their complete keys, and the
// autotuner's results. Many processes may read and write one file at once: WAL journal,
// a busy timeout, and short IMMEDIATE transactions; SQLite makes every write atomic, so a
// process killed mid-write leaves the file valid. Every row read is checked
// (runtime/kernel_db_record.hpp) before it is used.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "compiler/compiled_kernel.hpp"
#include "runtime/kernel_db_record.hpp"
#include "runtime/kernel_key.hpp"
#include "runtime/sqlite.hpp"

namespace moejit {

// A database this moejit cannot use: written by a newer schema, or not a kernel database.
class KernelDbError : public std::runtime_error {
 public:
  enum class Reason { newer_schema, not_a_kernel_db };
  KernelDbError(Reason reason, const std::string& message) : std::runtime_error(message), reason_(reason) {}
  Reason reason() const { return reason_; }

 private:
  Reason reason_;
};

// A stored kernel without its artifacts: for listing, pruning and export filters.
struct KernelEntry {
  std::string key_hash;
  KernelKey key;
  std::string tile;
  std::string lowered_name;
  ResourceUsage resources;
  int threads = 0;
  int dynamic_shared_bytes = 0;
  double compile_ms = 0;
  double created_at = 0;      // seconds since the epoch
  double last_used_at = 0;
  std::int64_t size_bytes = 0;
  std::string origin;         // what made it: compile, tune or bake
};

// The autotuner's result for one problem (a spec without its tile) on one GPU and token
// bucket: the winner and every candidate's time.
struct TuningEntry {
  std::string problem;          // spec text with the tile left out
  std::string target;
  std::string gpu_name;
  std::int64_t token_bucket = 0;
  std::string best_tile;
  double best_ms = 0;
  std::string candidates_json;  // [{"tile": "...", "ms": ...}, ...]
  double tuned_at = 0;
  std::string template_hash;
  std::string nvrtc_version;
  std::string moejit_version;
};

struct VerifyReport {
  bool integrity_ok = true;          // PRAGMA integrity_check
  std::string integrity_message;
  std::int64_t kernels = 0;          // rows found (readable or not)
  std::vector<std::string> damaged;  // key hashes of rows that fail their check
  std::vector<std::string> reasons;  // why, one per damaged row
  std::int64_t unreadable = 0;       // rows SQLite could not read back (damaged pages)
};

// What copying the readable, intact rows of a damaged file into a fresh one achieved.
struct SalvageReport {
  int copied = 0;        // kernels now in the destination
  int dropped = 0;       // read but failing their check
  int unreadable = 0;    // rows (or runs of rows) SQLite could not read
  int tunings = 0;       // tuning results copied
};

class KernelDb {
 public:
  // Schema 1 had the kernels table only; schema 2 added the tunings table; schema 3 the
  // record hash over every field of a kernel's row; schema 4 keys rows by their binary parts
  // (KernelKey) and records where each kernel came from.
  static constexpr int kSchemaVersion = 4;

  // Opens (and for a writable database creates or migrates) the file. A read-only opening
  // falls back to SQLite's immutable mode where the file cannot be read otherwise (a WAL
  // database on a read-only mount). Throws KernelDbError for a newer schema or a file that
  // is not a kernel database, and sqlite::Error when SQLite cannot open it.
  KernelDb(const std::string& path, bool read_only, int busy_timeout_ms = 60000);

  const std::string& path() const { return db_->path(); }
  bool read_only() const { return read_only_; }
  bool immutable() const { return db_->mode() == sqlite::OpenMode::immutable; }
  int schema_version() const { return schema_version_; }

  // The kernel stored under `key`, if every key part matches and its row passes its check
  // (kernel_db_record.hpp). A row that fails is removed (writable databases) and why is
  // put in `rejected`. A hit refreshes its last-use time (writable databases), which LRU
  // eviction reads. Throws sqlite::Error where SQLite cannot read the row.
  std::optional<CompiledKernel> find(const KernelKey& key, std::string* rejected = nullptr);
  // Stores a kernel; false if one with the same key is already there (kept as it is).
  bool insert(const KernelKey& key, const CompiledKernel& kernel, const std::string& origin = "compile");

  std::vector<KernelEntry> entries();
  // A stored kernel by key hash (for `moejit db show`), with its key; nothing if absent or
  // failing its check (why goes to `rejected`).
  std::optional<std::pair<KernelKey, CompiledKernel>> load(const std::string& key_hash,
                                                           std::string* rejected = nullptr);
  bool remove(const std::string& key_hash);
  bool contains(const std::string& key_hash);
  std::int64_t total_bytes();
  // Removes least-recently-used kernels until at most `max_bytes` remain; returns how many.
  int evict_to(std::int64_t max_bytes);
  // Removes kernels not used for `max_age_seconds`; returns how many.
  int prune_older_than(double max_age_seconds);
  // SQLite's integrity_check over every page, then every row's check.
  VerifyReport verify();
  // SQLite's quick_check (the page structure, without cross-checking indexes): "ok", or
  // what is wrong.
  std::string quick_check();
  // Copies every row of this (damaged) database that SQLite can still read and that passes
  // its check, and its tuning results, into `destination`; never throws for damage here.
  SalvageReport salvage_into(KernelDb& destination);

  void put_tuning(const TuningEntry& entry);   // replaces an older result for the same problem
  std::vector<TuningEntry> tunings();
  // The results for one problem on one GPU kind, every bucket, tuned with these versions.
  std::vector<TuningEntry> tunings_for(const std::string& problem, const std::string& gpu_name,
                                       const std::string& template_hash,
                                       const std::string& moejit_version);

  // Copies the kernels (and tuning results of the same targets) that `keep` selects into
  // `destination`; returns how many kernels were new there. Export and import both use it.
  int copy_into(KernelDb& destination, const std::function<bool(const KernelEntry&)>& keep);

 private:
  void open_read_only(const std::string& path, int busy_timeout_ms);
  void require_empty();
  void enable_wal(int busy_timeout_ms);
  void create_or_migrate();
  void add_record_hashes();
  void rekey();
  std::string origin_column() const;
  int read_schema_version();
  std::string row_query(const char* where) const;
  std::optional<StoredKernel> read_row(const std::string& key_hash);
  void drop(const std::string& key_hash);

  std::unique_ptr<sqlite::Connection> db_;
  bool read_only_;
  int schema_version_ = 0;
};

double unix_now();

}  // namespace moejit
