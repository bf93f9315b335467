#include "store/sqlite.h"

#include <cstdio>
#include <cstdlib>

#include "store/vfs.h"

namespace muscle::store {

Db::~Db() {
  if (db_) sqlite3_close_v2(db_);
}

Status Db::Open(const std::string& path, bool read_only) {
  int flags = read_only ? SQLITE_OPEN_READONLY
                        : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  flags |= SQLITE_OPEN_NOMUTEX;
  if (sqlite3_open_v2(path.c_str(), &db_, flags, vfs::Name()) != SQLITE_OK) {
    Status s = Error(("open " + path).c_str());
    sqlite3_close_v2(db_);
    db_ = nullptr;
    return s;
  }
  sqlite3_extended_result_codes(db_, 1);
  return Status::Ok();
}

Status Db::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    int code = sqlite3_errcode(db_) & 0xff;
    return Status(code == SQLITE_FULL ? ENOSPC : EIO,
                  std::string("sqlite: ") + msg + " in: " + sql);
  }
  return Status::Ok();
}

Status Db::Error(const char* what) const {
  int code = db_ ? (sqlite3_errcode(db_) & 0xff) : SQLITE_CANTOPEN;
  const char* msg = db_ ? sqlite3_errmsg(db_) : "cannot allocate";
  return Status(code == SQLITE_FULL ? ENOSPC : EIO,
                std::string("sqlite: ") + what + ": " + msg);
}

Stmt::~Stmt() {
  if (stmt_) sqlite3_finalize(stmt_);
}

void Stmt::Prepare(Db& db, const char* sql) {
  db_ = db.raw();
  if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_,
                         nullptr) != SQLITE_OK) {
    // A statement that does not prepare is a programming error in the
    // schema or SQL text; nothing sensible can continue.
    fprintf(stderr, "musclefs: cannot prepare SQL: %s\n  %s\n",
            sqlite3_errmsg(db_), sql);
    abort();
  }
}

Stmt& Stmt::Bind(int i, int64_t v) {
  sqlite3_bind_int64(stmt_, i, v);
  return *this;
}

Stmt& Stmt::Bind(int i, std::string_view blob, bool static_data) {
  sqlite3_bind_blob64(stmt_, i, blob.data(), blob.size(),
                      static_data ? SQLITE_STATIC : SQLITE_TRANSIENT);
  return *this;
}

Stmt& Stmt::BindText(int i, std::string_view text) {
  sqlite3_bind_text64(stmt_, i, text.data(), text.size(), SQLITE_TRANSIENT,
                      SQLITE_UTF8);
  return *this;
}

Stmt& Stmt::BindNull(int i) {
  sqlite3_bind_null(stmt_, i);
  return *this;
}

bool Stmt::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc != SQLITE_DONE) failed_ = true;
  return false;
}

Status Stmt::Run() {
  Scope scope(*this);
  Step();
  if (failed_) return Error("step");
  return Status::Ok();
}

Status Stmt::Error(const char* what) const {
  int code = sqlite3_errcode(db_) & 0xff;
  return Status(code == SQLITE_FULL ? ENOSPC : EIO,
                std::string("sqlite: ") + what + ": " + sqlite3_errmsg(db_) +
                    " in: " + sqlite3_sql(stmt_));
}

std::string_view Stmt::Blob(int col) const {
  const void* p = sqlite3_column_blob(stmt_, col);
  int n = sqlite3_column_bytes(stmt_, col);
  return p ? std::string_view(static_cast<const char*>(p), size_t(n))
           : std::string_view();
}

void Stmt::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  failed_ = false;
}

}  // namespace muscle::store
