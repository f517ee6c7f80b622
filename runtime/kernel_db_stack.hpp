// The layered kernel database a runtime reads and writes: a writable user cache over any
// number of read-only databases (a team's shipped kernels, the one inside the package).
//
// Lookup order: the user cache, then MOEJIT_KERNEL_DB's files in the order listed, then
// the package's database. Keys are complete, so a hit in any layer is a correct kernel;
// the order only decides which layer serves it. New kernels go to the user cache.
//
// Faults never reach the caller as errors: an unreadable, corrupted, newer-schema or
// read-only database, a full disk or a lock held too long each produce one warning, and
// the runtime goes on compiling and keeping kernels in memory. A row that fails its check
// is never used. A user cache whose pages are damaged is moved aside, and its intact
// kernels are copied into a fresh cache in its place. A user cache that cannot be written
// (a read-only mount, a shared pre-warmed directory) still serves its kernels.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "compiler/compiled_kernel.hpp"
#include "runtime/kernel_db.hpp"
#include "runtime/kernel_key.hpp"

namespace moejit {

using WarningHandler = std::function<void(const std::string&)>;

struct KernelDbConfig {
  std::string cache_path;                      // the writable user cache; empty: none
  std::vector<std::string> read_only_paths;    // searched after the cache, in this order
  std::int64_t cache_max_bytes = 4ll << 30;    // LRU eviction above this size
  int busy_timeout_ms = 60000;
  // SQLite's quick_check reads every page: it runs at every opening of a cache up to this
  // size, where it costs a fraction of one kernel's compile. Damage in a larger cache is
  // found when a read hits it, and by `moejit db verify`.
  std::int64_t quick_check_max_bytes = 256ll << 20;

  // MOEJIT_CACHE_DIR (or $XDG_CACHE_HOME/moejit, or ~/.cache/moejit; "none" disables the
  // cache) holds kernels.sqlite; MOEJIT_KERNEL_DB is a ':'-separated list of read-only
  // databases; MOEJIT_CACHE_MAX_MB bounds the cache. `packaged` (the database shipped in
  // the package, if any) goes last.
  static KernelDbConfig from_environment(const std::vector<std::string>& packaged = {});
};

// A cross-process lock on one byte of `<cache>.lock` (an open-file-description lock):
// the byte a key hash picks guards compiling that kernel; kRecoveryByte guards replacing a
// damaged cache. Released when destroyed, or by the kernel when the process dies.
class CacheLock {
 public:
  static constexpr long kKeyBytes = 1l << 20;      // key hashes pick a byte below this
  static constexpr long kRecoveryByte = kKeyBytes;

  CacheLock() = default;
  CacheLock(const std::string& lock_path, long byte);   // waits for the lock
  static CacheLock for_key(const std::string& lock_path, const std::string& key_hash);
  ~CacheLock();
  CacheLock(CacheLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  CacheLock& operator=(CacheLock&&) = delete;
  bool held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

class KernelDbStack {
 public:
  KernelDbStack(KernelDbConfig config, WarningHandler handler);

  std::optional<CompiledKernel> find(const KernelKey& key);
  void insert(const KernelKey& key, const CompiledKernel& kernel, const std::string& origin = "compile");
  // Taken between a miss and the insert of the kernel compiled for it: processes that
  // start together and miss the same kernel then compile it once, the others wait and
  // find it. Not held (and not needed) without a writable cache.
  CacheLock lock_compile(const KernelKey& key);

  // Tuning results for a problem across the layers; for a bucket tuned in several layers
  // the first layer's result wins (the lookup order above).
  std::vector<TuningEntry> tunings_for(const std::string& problem, const std::string& gpu_name,
                                       const std::string& template_hash,
                                       const std::string& moejit_version);
  // Stores a tuning result in the user cache; false (with a warning) if it cannot.
  bool put_tuning(const TuningEntry& entry);

  const KernelDbConfig& config() const { return config_; }
  // The databases actually open, in lookup order (for `moejit doctor` and tests).
  std::vector<std::string> open_paths() const;
  bool cache_writable() const;

 private:
  // The callers below hold mutex_.
  void open_cache();
  bool open_cache_file();
  void open_cache_read_only(const std::string& why);
  // Moves the damaged user cache aside and starts a fresh one holding what was readable;
  // false if the cache is gone afterwards.
  bool recover_cache(const std::string& what);
  std::optional<CompiledKernel> find_in_cache(const KernelKey& key);
  std::string out_of_space_advice(const sqlite::Error& e, const std::string& cause);
  void warn(const std::string& message);

  KernelDbConfig config_;
  WarningHandler warn_;
  mutable std::mutex mutex_;
  std::unique_ptr<KernelDb> cache_;
  bool cache_writes_ok_ = false;
  std::string pending_write_warning_;   // for the first kernel a serving, unwritable cache cannot store
  bool cache_recovered_ = false;      // at most once per process
  std::pair<unsigned long, unsigned long> cache_file_id_{0, 0};   // device and inode of the open cache
  std::vector<std::unique_ptr<KernelDb>> read_only_;
  std::vector<std::string> damaged_layers_;   // read-only layers already warned about
};

}  // namespace moejit
