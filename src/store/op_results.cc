// Operation ids (Tonce, musclefs(8) PROTOCOL): the op_results table, which
// keeps the reply to each request a client sent with an id, so that the
// request, resent after a server restart, is answered instead of run
// twice. A row goes into the open transaction with the request's own
// changes: the commit that keeps them keeps it, and a crash before that
// loses both (the resent request then runs again, as it should).
// Writer only: on the store worker, like every change.
#include "store/store.h"

#include <sqlite3.h>

#include <vector>

#include "common/log.h"
#include "store/sqlite.h"
#include "store/statements.h"

namespace muscle::store {

Result<std::string> Store::Once(std::string_view identity, uint64_t op,
                                const std::function<std::string()>& run, bool* ran) {
  OpScope scope(this);
  *ran = false;
  MUSCLE_RETURN_IF_ERROR(Begin());
  {
    Stmt& q = st_->get_op;
    Stmt::Scope reset(q);
    q.BindText(1, identity).Bind(2, int64_t(op));
    if (q.Step()) return std::string(q.Blob(0));
    if (q.failed()) return q.Error("look up an operation id");
  }
  std::string reply = run();
  *ran = true;
  // A failure that cost the transaction took run's changes with it:
  // nothing to record (the request runs again when resent).
  if (!in_txn_ || txn_lost_ || sqlite3_get_autocommit(db_.raw())) return reply;
  Stmt& ins = st_->put_op;
  Stmt::Scope reset(ins);
  int64_t now = NowNs();
  ins.BindText(1, identity).Bind(2, int64_t(op)).Bind(3, reply).Bind(4, now);
  if (Status s = ins.Run(); !s.ok()) {
    // Changes without their record would run again when resent: give up
    // the transaction, as a failed commit does.
    ForgetUncommitted(s);
    return s;
  }
  RedoOpResult(identity, op, reply, now);
  return reply;
}

// Rows past op_retention (see by_age), and each identity's oldest beyond
// ops_per_identity (its requests in flight are its newest ones). The age
// goes by the index on `at`; the count per identity by the primary key.
Status Store::PruneOpResults() {
  int64_t before = NowNs() - std::chrono::duration_cast<std::chrono::nanoseconds>(op_retention).count();
  // None by age in the first op_retention after the store opened: the
  // requests a restart left unanswered come back after the downtime,
  // which the rows' wall-clock age includes.
  bool by_age = std::chrono::steady_clock::now() - opened_at_ >= op_retention;
  return Atomically([&]() -> Status {
    if (by_age) {
      Stmt old(db_, "DELETE FROM op_results WHERE at < ?");
      old.Bind(1, before);
      MUSCLE_RETURN_IF_ERROR(old.Run());
    }
    std::vector<std::string> crowded;
    {
      Stmt q(db_, "SELECT identity FROM op_results GROUP BY identity HAVING count(*) > ?");
      q.Bind(1, ops_per_identity);
      while (q.Step()) crowded.emplace_back(q.Blob(0));
      if (q.failed()) return q.Error("count operation ids");
    }
    for (const std::string& identity : crowded) {
      Stmt cut(db_,
               "DELETE FROM op_results WHERE identity=?1 AND op IN (SELECT op FROM op_results "
               "WHERE identity=?1 ORDER BY at DESC, op DESC LIMIT -1 OFFSET ?2)");
      cut.BindText(1, identity).Bind(2, ops_per_identity);
      MUSCLE_RETURN_IF_ERROR(cut.Run());
    }
    return Status::Ok();
  });
}

}  // namespace muscle::store
