// A thin RAII layer over the SQLite C API: a connection and prepared statements whose
// errors become exceptions carrying SQLite's result code.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace moejit::sqlite {

class Error : public std::runtime_error {
 public:
  Error(int code, const std::string& message, int system_errno = 0)
      : std::runtime_error(message), code_(code), system_errno_(system_errno) {}
  int code() const { return code_; }       // SQLite's primary result code (SQLITE_FULL, ...)
  int system_errno() const { return system_errno_; }   // the OS error behind an I/O failure, or 0
  bool busy() const;                       // locked by another connection past the timeout
  bool corrupt() const;                    // not a database, or a damaged one
  // No room to write: a full disk or quota (SQLITE_FULL, ENOSPC, EDQUOT) or the process's
  // file size limit (EFBIG).
  bool out_of_space() const;
  // The file or its directory cannot be written (read-only mount or mode).
  bool read_only() const;

 private:
  int code_;
  int system_errno_;
};

// How a connection opens its file. `immutable` promises SQLite that nobody changes the file
// while it is open: no locks and no -shm file, which is what lets a WAL database on a
// read-only mount be read at all.
enum class OpenMode { read_write, read_only, immutable };

class Statement;

class Connection {
 public:
  // Opens `path`; only read_write creates it. The other modes never modify the file.
  Connection(const std::string& path, OpenMode mode, int busy_timeout_ms);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void exec(std::string_view sql);          // one or more statements without results
  Statement prepare(std::string_view sql);
  std::int64_t changes() const;
  const std::string& path() const { return path_; }
  OpenMode mode() const { return mode_; }
  // True when SQLite could open the file for reading only, whatever the mode asked.
  bool opened_read_only() const;
  sqlite3* handle() const { return db_; }

  [[noreturn]] void fail(int code, std::string_view what) const;

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
  OpenMode mode_;
};

// BEGIN IMMEDIATE ... COMMIT; rolls back if destroyed before commit(). IMMEDIATE takes the
// write lock at the start, so two writers wait on the busy timeout instead of deadlocking.
class Transaction {
 public:
  explicit Transaction(Connection& db, bool write = true);
  ~Transaction();
  void commit();

 private:
  Connection& db_;
  bool open_ = true;
};

class Statement {
 public:
  Statement(Connection& db, sqlite3_stmt* stmt) : db_(&db), stmt_(stmt) {}
  Statement(Statement&& other) noexcept : db_(other.db_), stmt_(other.stmt_) { other.stmt_ = nullptr; }
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int index, std::int64_t value);
  Statement& bind(int index, double value);
  Statement& bind(int index, std::string_view text);
  Statement& bind_blob(int index, std::string_view bytes);
  bool step();                              // true while a row is available
  void run();                               // step to completion
  void reset();

  std::int64_t integer(int column) const;
  double real(int column) const;
  std::string text(int column) const;
  std::string blob(int column) const;
  bool is_null(int column) const;

 private:
  Connection* db_;
  sqlite3_stmt* stmt_;
};

}  // namespace moejit::sqlite
