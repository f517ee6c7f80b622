#include "runtime/kernel_db_stack.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include <fmt/format.h>

namespace moejit {
namespace fs = std::filesystem;

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

using FileId = std::pair<unsigned long, unsigned long>;

FileId file_id(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {0, 0};
  return {static_cast<unsigned long>(st.st_dev), static_cast<unsigned long>(st.st_ino)};
}

std::string directory_of(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

// Why this process cannot write the file or its directory (SQLite needs both for its
// journal), or "" if it can.
std::string why_not_writable(const std::string& path) {
  for (const std::string& p : {path, directory_of(path)}) {
    if (::access(p.c_str(), W_OK) != 0) return fmt::format("{}: {}", p, std::strerror(errno));
  }
  return "";
}

std::string megabytes(double bytes) { return fmt::format("{:.0f} MB", bytes / (1 << 20)); }

}  // namespace

CacheLock::CacheLock(const std::string& lock_path, long byte) {
  fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) return;   // no lock: compiling twice is only slower
  struct flock region {};
  region.l_type = F_WRLCK;
  region.l_whence = SEEK_SET;
  region.l_start = static_cast<off_t>(byte);
  region.l_len = 1;
  int rc;
  do {
    rc = ::fcntl(fd_, F_OFD_SETLKW, &region);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

CacheLock CacheLock::for_key(const std::string& lock_path, const std::string& key_hash) {
  // One byte per key, chosen by its hash: unrelated kernels rarely share a byte, and if
  // they do they only compile one after the other.
  return CacheLock(lock_path, static_cast<long>(std::stoull(key_hash.substr(0, 8), nullptr, 16) % kKeyBytes));
}

CacheLock::~CacheLock() {
  if (fd_ >= 0) ::close(fd_);   // closing the description releases its lock
}

KernelDbConfig KernelDbConfig::from_environment(const std::vector<std::string>& packaged) {
  KernelDbConfig c;
  std::string dir = env("MOEJIT_CACHE_DIR");
  if (dir.empty()) {
    const std::string xdg = env("XDG_CACHE_HOME");
    const std::string home = env("HOME");
    if (!xdg.empty()) dir = xdg + "/moejit";
    else if (!home.empty()) dir = home + "/.cache/moejit";
  }
  if (!dir.empty() && dir != "none") c.cache_path = (fs::path(dir) / "kernels.sqlite").string();
  const std::string list = env("MOEJIT_KERNEL_DB");
  for (std::size_t start = 0; start < list.size();) {
    std::size_t end = list.find(':', start);
    if (end == std::string::npos) end = list.size();
    if (end > start) c.read_only_paths.push_back(list.substr(start, end - start));
    start = end + 1;
  }
  c.read_only_paths.insert(c.read_only_paths.end(), packaged.begin(), packaged.end());
  const std::string max_mb = env("MOEJIT_CACHE_MAX_MB");
  if (!max_mb.empty()) {
    try {
      c.cache_max_bytes = std::stoll(max_mb) << 20;
    } catch (const std::exception&) {
      // Reported by the stack's constructor through the warning handler.
      c.cache_max_bytes = -1;
    }
  }
  return c;
}

KernelDbStack::KernelDbStack(KernelDbConfig config, WarningHandler handler)
    : config_(std::move(config)), warn_(std::move(handler)) {
  if (config_.cache_max_bytes < 0) {
    warn(fmt::format("MOEJIT_CACHE_MAX_MB={}: expected a whole number of megabytes; using 4096",
                     env("MOEJIT_CACHE_MAX_MB")));
    config_.cache_max_bytes = 4ll << 30;
  }
  if (!config_.cache_path.empty()) open_cache();
  for (const std::string& path : config_.read_only_paths) {
    if (!fs::exists(path)) {
      warn(fmt::format("kernel database {} does not exist: skipped", path));
      continue;
    }
    try {
      read_only_.push_back(std::make_unique<KernelDb>(path, true, config_.busy_timeout_ms));
    } catch (const std::exception& e) {
      warn(fmt::format("kernel database {} skipped: {}", path, e.what()));
    }
  }
}

void KernelDbStack::warn(const std::string& message) {
  if (warn_) warn_(message);
}

namespace {

// Why a failed write ran out of room, or "" if it did not.
std::string out_of_space_cause(const sqlite::Error& e, const std::string& path) {
  // SQLite reports ENOSPC as SQLITE_FULL, but a file size limit (EFBIG) or a quota only as an
  // I/O error, and its errno is often gone by then: ask the limits themselves.
  struct rlimit limit {};
  if (e.system_errno() == EFBIG ||
      (e.code() == SQLITE_IOERR && ::getrlimit(RLIMIT_FSIZE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)) {
    return fmt::format("the process's file size limit (ulimit -f: {}) is reached",
                       megabytes(static_cast<double>(limit.rlim_cur)));
  }
  if (e.system_errno() == EDQUOT) return "the disk quota is used up";
  if (e.out_of_space()) {
    struct statvfs disk {};
    if (::statvfs(directory_of(path).c_str(), &disk) == 0) {
      return fmt::format("the disk holding it is full ({} free)",
                         megabytes(static_cast<double>(disk.f_bavail) * static_cast<double>(disk.f_frsize)));
    }
    return "the disk holding it is full";
  }
  return "";
}

}  // namespace

void KernelDbStack::open_cache() {
  std::error_code ec;
  fs::create_directories(fs::path(config_.cache_path).parent_path(), ec);
  if (fs::exists(config_.cache_path, ec)) {
    const std::string why = why_not_writable(config_.cache_path);
    if (!why.empty()) {
      open_cache_read_only(why);
      return;
    }
  }
  open_cache_file();
}

void KernelDbStack::open_cache_read_only(const std::string& why) {
  try {
    cache_ = std::make_unique<KernelDb>(config_.cache_path, true, config_.busy_timeout_ms);
    cache_writes_ok_ = false;
    pending_write_warning_ = fmt::format(
        "kernel cache {} is read-only ({}): its kernels are used, but kernels compiled here are kept in memory only",
        config_.cache_path, why);
  } catch (const std::exception& e) {
    warn(fmt::format("kernel cache {} is read-only ({}) and cannot be read either ({}); compiled kernels are kept "
                     "in memory only",
                     config_.cache_path, why, e.what()));
  }
}

bool KernelDbStack::open_cache_file() {
  const std::string& path = config_.cache_path;
  cache_file_id_ = file_id(path);
  try {
    cache_ = std::make_unique<KernelDb>(path, false, config_.busy_timeout_ms);
  } catch (const KernelDbError& e) {
    // A newer moejit's database is left alone; only a damaged file is replaced.
    if (e.reason() == KernelDbError::Reason::newer_schema) {
      warn(fmt::format("{}; compiled kernels are kept in memory only", e.what()));
      return false;
    }
    return recover_cache(e.what());
  } catch (const sqlite::Error& e) {
    if (e.corrupt()) return recover_cache(e.what());
    std::error_code ec;
    if (e.read_only() && fs::exists(path, ec)) {
      open_cache_read_only(e.what());
      return cache_ != nullptr;
    }
    // No room to set the file up for writing: its kernels still serve, and the first kernel
    // that cannot be stored says what frees space.
    if (const std::string cause = out_of_space_cause(e, path); !cause.empty() && fs::exists(path, ec)) {
      open_cache_read_only(cause);
      if (cache_) pending_write_warning_ = out_of_space_advice(e, cause);
      return cache_ != nullptr;
    }
    warn(fmt::format("kernel cache {} unusable ({}); compiled kernels are kept in memory only", path, e.what()));
    return false;
  } catch (const std::exception& e) {
    warn(fmt::format("kernel cache {} unusable ({}); compiled kernels are kept in memory only", path, e.what()));
    return false;
  }
  cache_file_id_ = file_id(path);
  cache_writes_ok_ = true;
  std::error_code ec;
  const std::uintmax_t size = fs::file_size(path, ec);
  if (!ec && static_cast<std::int64_t>(size) <= config_.quick_check_max_bytes) {
    const std::string check = cache_->quick_check();
    if (check != "ok") return recover_cache(fmt::format("SQLite's quick_check: {}", check));
  }
  return true;
}

bool KernelDbStack::recover_cache(const std::string& what) {
  const std::string& path = config_.cache_path;
  cache_.reset();
  cache_writes_ok_ = false;
  if (cache_recovered_) {
    warn(fmt::format("kernel cache {} is damaged again ({}); compiled kernels are kept in memory only", path, what));
    return false;
  }
  cache_recovered_ = true;
  // One process replaces the file; one that finds it replaced already opens the new one.
  const CacheLock lock(path + ".lock", CacheLock::kRecoveryByte);
  std::error_code ec;
  if (fs::exists(path, ec) && file_id(path) != cache_file_id_) return open_cache_file();
  const std::string aside = path + fmt::format(".corrupt-{}-{}", static_cast<long long>(unix_now()), ::getpid());
  fs::rename(path, aside, ec);
  if (ec) {
    warn(fmt::format("kernel cache {} is damaged ({}) and could not be moved aside ({}); compiled kernels are kept "
                     "in memory only",
                     path, what, ec.message()));
    return false;
  }
  // A WAL holds committed writes not yet in the file: it goes with it, for the salvage.
  const std::string wal = path + "-wal";
  constexpr std::uintmax_t kWalHeaderBytes = 32;   // a WAL this size holds no frame
  if (fs::exists(wal, ec) && fs::file_size(wal, ec) > kWalHeaderBytes && !ec) fs::rename(wal, aside + "-wal", ec);
  else fs::remove(wal, ec);
  fs::remove(path + "-shm", ec);
  if (!open_cache_file()) {
    warn(fmt::format("kernel cache {} was damaged ({}): moved it to {}", path, what, aside));
    return false;
  }
  SalvageReport salvage;
  std::string salvage_error;
  try {
    KernelDb damaged(aside, true, config_.busy_timeout_ms);
    salvage = damaged.salvage_into(*cache_);
  } catch (const std::exception& e) {
    salvage_error = e.what();
  }
  fs::remove(aside + "-shm", ec);
  std::string kept = fmt::format("copied the {} intact kernel{} it still held into a fresh cache", salvage.copied,
                                 salvage.copied == 1 ? "" : "s");
  if (salvage.dropped + salvage.unreadable > 0) {
    kept += fmt::format(" ({} damaged or unreadable, compiled again when needed)", salvage.dropped + salvage.unreadable);
  }
  if (!salvage_error.empty() && salvage.copied == 0) kept = "started an empty cache (nothing in it was readable)";
  warn(fmt::format("kernel cache {} is damaged ({}): moved it to {} and {}", path, what, aside, kept));
  return cache_ != nullptr;
}

std::optional<CompiledKernel> KernelDbStack::find_in_cache(const KernelKey& key) {
  for (int attempt = 0; attempt < 2 && cache_; ++attempt) {
    try {
      std::string rejected;
      auto hit = cache_->find(key, &rejected);
      if (!rejected.empty()) {
        warn(fmt::format("kernel cache {}: the stored kernel {} failed its integrity check ({}); dropped it and "
                         "compiling it again",
                         cache_->path(), key.spec_text, rejected));
      }
      return hit;
    } catch (const sqlite::Error& e) {
      if (e.corrupt() && recover_cache(e.what())) continue;
      if (!e.corrupt()) {
        warn(fmt::format("reading kernel database {} failed ({}): compiling instead", cache_->path(), e.what()));
      }
      return std::nullopt;
    }
  }
  return std::nullopt;
}

std::optional<CompiledKernel> KernelDbStack::find(const KernelKey& key) {
  std::lock_guard lock(mutex_);
  if (cache_) {
    if (auto hit = find_in_cache(key)) return hit;
  }
  for (auto& db : read_only_) {
    try {
      std::string rejected;
      if (auto hit = db->find(key, &rejected)) return hit;
      if (!rejected.empty()) {
        warn(fmt::format("kernel database {}: the stored kernel {} failed its integrity check ({}); not used, "
                         "compiling it instead",
                         db->path(), key.spec_text, rejected));
      }
    } catch (const std::exception& e) {
      // A damaged read-only layer cannot be moved aside: say once what to run on it.
      if (std::find(damaged_layers_.begin(), damaged_layers_.end(), db->path()) != damaged_layers_.end()) continue;
      damaged_layers_.push_back(db->path());
      const auto* sqlite_error = dynamic_cast<const sqlite::Error*>(&e);
      warn(fmt::format("reading kernel database {} failed ({}): compiling instead{}", db->path(), e.what(),
                       sqlite_error && sqlite_error->corrupt()
                           ? fmt::format("; `moejit db verify --db {} --repair` rebuilds what is readable", db->path())
                           : ""));
    }
  }
  return std::nullopt;
}


std::string KernelDbStack::out_of_space_advice(const sqlite::Error& e, const std::string& cause) {
  std::string size;
  try {
    size = fmt::format("the cache holds {} of kernels (MOEJIT_CACHE_MAX_MB={}); ",
                       megabytes(static_cast<double>(cache_->total_bytes())), config_.cache_max_bytes >> 20);
  } catch (const std::exception&) {
  }
  return fmt::format("writing kernel cache {} failed: {} ({}); kernels compiled from now on are kept in memory only, "
                     "and later processes compile them again. To free space: {}lower MOEJIT_CACHE_MAX_MB, run "
                     "`moejit db prune --max-mb N` (or --older-than-days N), or point MOEJIT_CACHE_DIR at a disk "
                     "with room",
                     cache_->path(), cause, e.what(), size);
}

void KernelDbStack::insert(const KernelKey& key, const CompiledKernel& kernel, const std::string& origin) {
  std::lock_guard lock(mutex_);
  if (!cache_) return;
  if (!cache_writes_ok_) {
    if (!pending_write_warning_.empty()) warn(std::exchange(pending_write_warning_, std::string()));
    return;
  }
  for (int attempt = 0; attempt < 2 && cache_ && cache_writes_ok_; ++attempt) {
    try {
      if (cache_->insert(key, kernel, origin)) cache_->evict_to(config_.cache_max_bytes);
      return;
    } catch (const sqlite::Error& e) {
      if (e.corrupt() && attempt == 0 && recover_cache(e.what())) continue;
      if (!cache_) return;
      // A full disk, a read-only file system, a lock held past the timeout: stop writing
      // for the rest of the process rather than warn on every kernel.
      cache_writes_ok_ = false;
      const std::string cause = out_of_space_cause(e, cache_->path());
      warn(!cause.empty() ? out_of_space_advice(e, cause)
                          : fmt::format("writing kernel cache {} failed ({}); further kernels are kept in memory only",
                                        cache_->path(), e.what()));
    } catch (const std::exception& e) {
      cache_writes_ok_ = false;
      warn(fmt::format("writing kernel cache {} failed ({}); further kernels are kept in memory only",
                       cache_->path(), e.what()));
    }
  }
}

CacheLock KernelDbStack::lock_compile(const KernelKey& key) {
  if (!cache_writable()) return CacheLock();
  return CacheLock::for_key(config_.cache_path + ".lock", key.hash_hex());
}

std::vector<TuningEntry> KernelDbStack::tunings_for(const std::string& problem, const std::string& gpu_name,
                                                    const std::string& template_hash,
                                                    const std::string& moejit_version) {
  std::lock_guard lock(mutex_);
  std::vector<TuningEntry> out;
  auto collect = [&](KernelDb& db) {
    try {
      for (TuningEntry& t : db.tunings_for(problem, gpu_name, template_hash, moejit_version)) {
        const bool seen = std::any_of(out.begin(), out.end(),
                                      [&](const TuningEntry& o) { return o.token_bucket == t.token_bucket; });
        if (!seen) out.push_back(std::move(t));
      }
    } catch (const std::exception& e) {
      warn(fmt::format("reading tuning results from {} failed ({}): skipped", db.path(), e.what()));
    }
  };
  if (cache_) collect(*cache_);
  for (auto& db : read_only_) collect(*db);
  return out;
}

bool KernelDbStack::put_tuning(const TuningEntry& entry) {
  std::lock_guard lock(mutex_);
  if (!cache_ || !cache_writes_ok_) {
    warn("no writable kernel cache: the tuning result is not stored");
    return false;
  }
  try {
    cache_->put_tuning(entry);
    return true;
  } catch (const std::exception& e) {
    warn(fmt::format("storing a tuning result in {} failed ({})", cache_->path(), e.what()));
    return false;
  }
}

std::vector<std::string> KernelDbStack::open_paths() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> out;
  if (cache_) out.push_back(cache_->path());
  for (const auto& db : read_only_) out.push_back(db.get()->path());
  return out;
}

bool KernelDbStack::cache_writable() const {
  std::lock_guard lock(mutex_);
  return cache_ && cache_writes_ok_;
}

}  // namespace moejit
