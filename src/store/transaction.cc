// Transactions and undo: the one open SQLite transaction (Begin, and Sync,
// which flushes the write buffers and commits it), the only path that
// commits (Commit, guarded by the commit hook), what a savepoint's rollback
// undoes outside SQLite (UndoTo, the buffers set aside), and forgetting
// every uncommitted change when SQLite abandons the transaction (the
// rollback hook). The savepoint around each operation is Atomically, in
// statements.h.
// Writer only: on the thread that opens it, then on the store worker;
// SQLite calls the hooks on that thread, inside the statement that fires
// them.
#include "store/store.h"

#include <cstring>

#include "common/log.h"
#include "store/statements.h"

namespace muscle::store {

void Store::InstallHooks() {
  sqlite3_rollback_hook(db_.raw(), [](void* self) { static_cast<Store*>(self)->txn_lost_ = true; }, this);
  // Every change to an inode's entries, data or xattrs also updates its
  // row, so a changed inode row is what makes an inode dirty for readers.
  sqlite3_update_hook(
      db_.raw(),
      [](void* self, int, const char*, const char* table, sqlite3_int64 row) {
        if (strcmp(table, "inodes") == 0) {
          auto* st = static_cast<Store*>(self);
          st->gate_->MarkDirty(uint64_t(row));
          if (st->tracking_changes_) st->changed_.insert(uint64_t(row));
        }
      },
      this);
  // Nothing commits but an explicit Commit(): after SQLite abandons a
  // transaction, statements of the failing operation would otherwise each
  // commit on their own (autocommit) while memory believes them rolled back.
  sqlite3_commit_hook(db_.raw(), [](void* self) { return static_cast<Store*>(self)->committing_ ? 0 : 1; }, this);
}

void Store::AfterFailure(const Status& why) {
  if (in_txn_ && (txn_lost_ || sqlite3_get_autocommit(db_.raw()))) ForgetUncommitted(why);
  txn_lost_ = false;
}

void Store::ForgetUncommitted(const Status& why) {
  if (sqlite3_get_autocommit(db_.raw()) == 0) db_.Exec("ROLLBACK");
  in_txn_ = false;
  savepoint_depth_ = 0;
  txn_lost_ = false;
  punches_.clear();
  changed_.clear();  // the changes are gone with the transaction
  Status p = chunks_->RollBackTo(committed_);
  if (!p.ok()) Log("store: rolling the open pack back failed: %s", p.ToString().c_str());
  size_t files = dirty_.size();
  precut_.Drop(Precut::kAll);
  dirty_.clear();
  dirty_bytes_ = 0;
  set_aside_.clear();
  // The logged changes are gone too (the writes answered ahead of the
  // store and not yet taken stay logged).
  redo_batch_.Clear();
  if (redo_) {
    Status r = redo_->Reset(commit_number_);
    if (!r.ok()) Log("store: cannot start the redo log again (%s)", r.ToString().c_str());
  }
  gate_->Published();  // the committed state is the writer's again
  rollbacks_++;
  Log("store: %s; the changes since the last commit were rolled back "
      "(%zu files had buffered writes); files created since then are gone",
      why.ToString().c_str(), files);
}

void Store::SetAside(uint64_t ino, DirtyFile&& f) {
  precut_.Drop(ino);
  dirty_bytes_ -= f.bytes;
  if (savepoint_depth_ > 0) set_aside_.emplace_back(ino, std::move(f));
}

void Store::UndoTo(const UndoMark& mark) {
  punches_.resize(mark.punches);
  if (chunks_->mark() != mark.chunks) {
    Status p = chunks_->RollBackTo(mark.chunks);
    if (!p.ok()) Log("store: rolling the open pack back failed: %s", p.ToString().c_str());
  }
  while (set_aside_.size() > mark.set_aside) {
    auto& [ino, f] = set_aside_.back();
    // Nothing writes to a file between its flush and the end of the
    // operation, so the slot is free; keep the newer one if it is not.
    if (!dirty_.count(ino)) {
      dirty_bytes_ += f.bytes;
      dirty_.emplace(ino, std::move(f));
    }
    set_aside_.pop_back();
  }
}

void Store::DropSetAside() {
  for (auto& [ino, f] : set_aside_)
    for (auto& [off, buf] : f.ranges)
      if (buf.capacity() >= file_buffer_limit && spare_buffer_.capacity() < file_buffer_limit) {
        buf.clear();
        spare_buffer_.swap(buf);
      }
  set_aside_.clear();
}

Status Store::Commit(const char* sql) {
  committing_ = true;
  Status s = db_.Exec(sql);
  committing_ = false;
  // Readers see the commit from now on (and must not trust reads that
  // raced it); only then may its freed pack space be punched or removed.
  if (s.ok()) gate_->Published();
  return s;
}

Status Store::Begin() {
  // A transaction SQLite abandoned is not silently replaced: the operation
  // fails, and the end of it forgets the lost work (OpScope).
  if (in_txn_ && (txn_lost_ || sqlite3_get_autocommit(db_.raw())))
    return Status(EIO, "the transaction was abandoned after an I/O error");
  if (in_txn_) return Status::Ok();
  MUSCLE_RETURN_IF_ERROR(db_.Exec("BEGIN IMMEDIATE"));
  in_txn_ = true;
  txn_lost_ = false;
  txn_started_ = std::chrono::steady_clock::now();
  return Status::Ok();
}

Status Store::Sync(bool durable) {
  OpScope op(this);
  while (!dirty_.empty()) {
    uint64_t ino = dirty_.begin()->first;
    Status s = Atomically([&]() -> Status { return FlushFile(ino); });
    if (!s.ok()) return s;
  }
  if (!in_txn_) return Status::Ok();
  // synchronous=FULL syncs the WAL at every commit. Commits are batched
  // (one per commit interval or Tfsync), so this costs one fsync per batch
  // and makes every commit, not only Tfsync's, survive power loss.
  // Pack data is synced first: no committed row ever names unsynced data.
  Status s = ApplyInvalidations();
  if (s.ok()) s = SyncChunks();
  if (s.ok() && next_ino_ != persisted_next_ino_) {
    Stmt q(db_, "INSERT OR REPLACE INTO meta(key, value) VALUES('next_ino', ?)");
    q.Bind(1, int64_t(next_ino_));
    s = q.Run();
  }
  // Numbered: the redo log names the commit it follows.
  if (s.ok()) {
    Stmt q(db_, "INSERT OR REPLACE INTO meta(key, value) VALUES('commit', ?)");
    q.Bind(1, int64_t(commit_number_ + 1));
    s = q.Run();
  }
  if (s.ok() && redo_) {
    Status m = redo_->BeginCommit(commit_number_ + 1);
    if (!m.ok()) Log("store: cannot mark the commit in the redo log (%s)", m.ToString().c_str());
  }
  if (s.ok()) s = Commit("COMMIT");
  if (!s.ok()) {
    ForgetUncommitted(s);
    return s;
  }
  commit_number_++;
  if (fault_point) (void)fault_point("committed");  // tests: a kill here
  if (redo_) {
    Status r = redo_->Reset(commit_number_);
    if (!r.ok()) Log("store: cannot start the redo log again (%s)", r.ToString().c_str());
  }
  changed_.clear();  // their invalidations are committed with them
  in_txn_ = false;
  persisted_next_ino_ = next_ino_;
  committed_ = chunks_->mark();
  // The deletes are durable: give the dead chunks' space back.
  for (const Punch& p : punches_) {
    Status ps = chunks_->Punch(p.at, p.length);
    if (!ps.ok()) {
      if (!punch_failed_) Log("store: cannot free space in packs (%s); musclefs gc compacts them", ps.ToString().c_str());
      punch_failed_ = true;
      break;
    }
  }
  punches_.clear();
  // Tfsync (and the tests) return with the space given back; the other
  // commits leave the punching to the pack helper.
  if (durable) {
    Status ps = chunks_->WaitIdle();
    if (!ps.ok() && !punch_failed_) {
      Log("store: cannot free space in packs (%s); musclefs gc compacts them", ps.ToString().c_str());
      punch_failed_ = true;
    }
  }
  return Status::Ok();
}

}  // namespace muscle::store
