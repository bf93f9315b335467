// A thin RAII layer over the SQLite C API: a connection and prepared
// statements that are prepared once and reset after each use.
//
// Not thread-safe: a Db and its Stmts belong to one thread at a time (the
// store worker thread in the server). Stmt objects must be destroyed before
// the Db that prepared them.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace muscle::store {

class Db {
 public:
  Db() = default;
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  // Opens (creating if needed) the database at `path`; ":memory:" works.
  Status Open(const std::string& path, bool read_only = false);
  // Runs one or more statements that return no rows.
  Status Exec(const char* sql);
  sqlite3* raw() const { return db_; }
  // Converts the last SQLite error into a Status (errno EIO, or ENOSPC for
  // a full disk) with SQLite's message.
  Status Error(const char* what) const;

 private:
  sqlite3* db_ = nullptr;
};

class Stmt {
 public:
  Stmt() = default;
  Stmt(Db& db, const char* sql) { Prepare(db, sql); }
  ~Stmt();
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  void Prepare(Db& db, const char* sql);
  bool prepared() const { return stmt_ != nullptr; }

  // Binding is 1-based like SQLite's API. Text and blobs are copied by
  // SQLite (SQLITE_TRANSIENT) unless `static_data` says the caller keeps
  // them alive until Reset().
  Stmt& Bind(int i, int64_t v);
  Stmt& Bind(int i, std::string_view blob, bool static_data = false);
  Stmt& BindText(int i, std::string_view text);
  Stmt& BindNull(int i);

  // Returns true for a row, false when done; on error returns false and
  // failed() becomes true.
  bool Step();
  // Steps a statement that returns no rows; resets it afterwards.
  Status Run();
  bool failed() const { return failed_; }
  Status Error(const char* what) const;

  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string_view Blob(int col) const;

  // Makes the statement ready for new bindings. Always call before reuse;
  // the Scope helper does it automatically.
  void Reset();

  // Resets the statement when leaving a scope.
  struct Scope {
    explicit Scope(Stmt& s) : s_(s) {}
    ~Scope() { s_.Reset(); }
    Stmt& s_;
  };

 private:
  sqlite3_stmt* stmt_ = nullptr;
  sqlite3* db_ = nullptr;
  bool failed_ = false;
};

}  // namespace muscle::store
