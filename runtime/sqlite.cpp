#include "runtime/sqlite.hpp"

#include <sqlite3.h>

#include <cerrno>

#include <fmt/format.h>

namespace moejit::sqlite {

bool Error::busy() const { return code_ == SQLITE_BUSY || code_ == SQLITE_LOCKED; }
bool Error::corrupt() const { return code_ == SQLITE_CORRUPT || code_ == SQLITE_NOTADB; }

bool Error::out_of_space() const {
  return code_ == SQLITE_FULL || system_errno_ == ENOSPC || system_errno_ == EDQUOT || system_errno_ == EFBIG;
}

bool Error::read_only() const {
  return code_ == SQLITE_READONLY || system_errno_ == EROFS || system_errno_ == EACCES || system_errno_ == EPERM;
}

namespace {

// A file: URI for `path`, with the characters a URI gives meaning escaped.
std::string file_uri(const std::string& path, const char* query) {
  std::string uri = "file:";
  for (const unsigned char c : path) {
    if (c == '%' || c == '?' || c == '#' || c < 0x20 || c >= 0x7f) uri += fmt::format("%{:02X}", c);
    else uri += static_cast<char>(c);
  }
  return uri + query;
}

}  // namespace

Connection::Connection(const std::string& path, OpenMode mode, int busy_timeout_ms) : path_(path), mode_(mode) {
  int flags = SQLITE_OPEN_NOMUTEX;
  std::string name = path;
  switch (mode) {
    case OpenMode::read_write: flags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE; break;
    case OpenMode::read_only: flags |= SQLITE_OPEN_READONLY; break;
    case OpenMode::immutable:
      flags |= SQLITE_OPEN_READONLY | SQLITE_OPEN_URI;
      name = file_uri(path, "?immutable=1");
      break;
  }
  const int rc = sqlite3_open_v2(name.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    const std::string message = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    const int system_errno = db_ ? sqlite3_system_errno(db_) : 0;
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error(rc & 0xff, fmt::format("cannot open kernel database {}: {}", path, message), system_errno);
  }
  sqlite3_busy_timeout(db_, busy_timeout_ms);
  sqlite3_extended_result_codes(db_, 0);
}

Connection::~Connection() { sqlite3_close_v2(db_); }

bool Connection::opened_read_only() const { return sqlite3_db_readonly(db_, "main") == 1; }

void Connection::fail(int code, std::string_view what) const {
  throw Error(code & 0xff, fmt::format("kernel database {}: {}: {}", path_, what, sqlite3_errmsg(db_)),
              sqlite3_system_errno(db_));
}

void Connection::exec(std::string_view sql) {
  char* message = nullptr;
  const std::string text(sql);
  const int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &message);
  if (rc != SQLITE_OK) {
    const std::string why = message ? message : sqlite3_errstr(rc);
    sqlite3_free(message);
    throw Error(rc & 0xff, fmt::format("kernel database {}: {}", path_, why), sqlite3_system_errno(db_));
  }
}

Statement Connection::prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) fail(rc, fmt::format("preparing `{}`", sql.substr(0, 60)));
  return Statement(*this, stmt);
}

std::int64_t Connection::changes() const { return sqlite3_changes64(db_); }

Transaction::Transaction(Connection& db, bool write) : db_(db) { db_.exec(write ? "BEGIN IMMEDIATE" : "BEGIN"); }

Transaction::~Transaction() {
  if (open_) sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
}

void Transaction::commit() {
  db_.exec("COMMIT");
  open_ = false;
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

Statement& Statement::bind(int index, std::int64_t value) {
  const int rc = sqlite3_bind_int64(stmt_, index, value);
  if (rc != SQLITE_OK) db_->fail(rc, "binding an integer");
  return *this;
}

Statement& Statement::bind(int index, double value) {
  const int rc = sqlite3_bind_double(stmt_, index, value);
  if (rc != SQLITE_OK) db_->fail(rc, "binding a number");
  return *this;
}

Statement& Statement::bind(int index, std::string_view text) {
  const int rc = sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  if (rc != SQLITE_OK) db_->fail(rc, "binding text");
  return *this;
}

Statement& Statement::bind_blob(int index, std::string_view bytes) {
  const int rc = sqlite3_bind_blob64(stmt_, index, bytes.data(), bytes.size(), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) db_->fail(rc, "binding a blob");
  return *this;
}

bool Statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  db_->fail(rc, "executing a statement");
}

void Statement::run() {
  while (step()) {
  }
}

void Statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

std::int64_t Statement::integer(int column) const { return sqlite3_column_int64(stmt_, column); }
double Statement::real(int column) const { return sqlite3_column_double(stmt_, column); }
bool Statement::is_null(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }

std::string Statement::text(int column) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
  return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column))) : std::string();
}

std::string Statement::blob(int column) const {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, column));
  return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column))) : std::string();
}

}  // namespace moejit::sqlite
