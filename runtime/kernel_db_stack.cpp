#include "runtime/kernel_db_stack.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include <fcntl.h>
#include <unistd.h>
#include <filesystem>
#include <system_error>

#include <fmt/format.h>

namespace moejit {
namespace fs = std::filesystem;

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

}  // namespace

CompileLock::CompileLock(const std::string& lock_path, const std::string& key_hash) {
  fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) return;   // no lock: compiling twice is only slower
  struct flock region {};
  region.l_type = F_WRLCK;
  region.l_whence = SEEK_SET;
  // One byte per key, chosen by its hash: unrelated kernels rarely share a byte, and if
  // they do they only compile one after the other.
  region.l_start = static_cast<off_t>(std::stoull(key_hash.substr(0, 8), nullptr, 16) % (1u << 20));
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

CompileLock::~CompileLock() {
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

void KernelDbStack::open_cache() {
  const fs::path path(config_.cache_path);
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  for (int attempt = 0; attempt < 2; ++attempt) {
    try {
      cache_ = std::make_unique<KernelDb>(path.string(), false, config_.busy_timeout_ms);
      cache_writes_ok_ = true;
      return;
    } catch (const KernelDbError& e) {
      // A newer moejit's database is left alone; only a damaged file is replaced.
      if (e.reason() == KernelDbError::Reason::newer_schema || attempt > 0) {
        warn(fmt::format("{}; compiled kernels are kept in memory only", e.what()));
        return;
      }
      // Damaged beyond use: keep it for inspection and start a fresh cache in its place.
      const fs::path aside =
          path.string() + fmt::format(".corrupt-{}-{}", static_cast<long long>(unix_now()), ::getpid());
      fs::rename(path, aside, ec);
      for (const char* suffix : {"-wal", "-shm"}) fs::remove(path.string() + suffix, ec);
      warn(fmt::format("{}; moved it to {} and started an empty cache", e.what(), aside.string()));
      if (ec) return;
    } catch (const std::exception& e) {
      warn(fmt::format("kernel cache {} unusable ({}); compiled kernels are kept in memory only", path.string(),
                       e.what()));
      return;
    }
  }
}

std::optional<CompiledKernel> KernelDbStack::find(const KernelKey& key) {
  std::lock_guard lock(mutex_);
  auto lookup = [&](KernelDb& db) -> std::optional<CompiledKernel> {
    try {
      return db.find(key);
    } catch (const std::exception& e) {
      warn(fmt::format("reading kernel database {} failed ({}): compiling instead", db.path(), e.what()));
      return std::nullopt;
    }
  };
  if (cache_) {
    if (auto hit = lookup(*cache_)) return hit;
  }
  for (auto& db : read_only_) {
    if (auto hit = lookup(*db)) return hit;
  }
  return std::nullopt;
}

void KernelDbStack::insert(const KernelKey& key, const CompiledKernel& kernel) {
  std::lock_guard lock(mutex_);
  if (!cache_ || !cache_writes_ok_) return;
  try {
    if (cache_->insert(key, kernel)) cache_->evict_to(config_.cache_max_bytes);
  } catch (const std::exception& e) {
    // A full disk, a read-only file system, a lock held past the timeout: stop writing
    // for the rest of the process rather than warn on every kernel.
    cache_writes_ok_ = false;
    warn(fmt::format("writing kernel cache {} failed ({}); further kernels are kept in memory only",
                     cache_->path(), e.what()));
  }
}

CompileLock KernelDbStack::lock_compile(const KernelKey& key) {
  if (!cache_writable()) return CompileLock();
  return CompileLock(config_.cache_path + ".lock", key.hash_hex());
}

std::vector<TuningEntry> KernelDbStack::tunings_for(const std::string& problem, const std::string& gpu_name,
                                                    const std::string& template_hash,
                                                    const std::string& nvrtc_version,
                                                    const std::string& moejit_version) {
  std::lock_guard lock(mutex_);
  std::vector<TuningEntry> out;
  auto collect = [&](KernelDb& db) {
    try {
      for (TuningEntry& t : db.tunings_for(problem, gpu_name, template_hash, nvrtc_version, moejit_version)) {
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
