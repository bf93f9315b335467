// What `muscle status` and the metrics say of the store (store.h, Usage
// and Pending): sizes from the index, and the state of what is not
// committed yet.
#include "store/store.h"

namespace muscle::store {

Result<Store::UsageFigures> Store::Usage() {
  UsageFigures u;
  {
    Stmt q(db_, "SELECT coalesce(sum(length), 0) FROM extents");
    if (q.Step()) u.logical_bytes = uint64_t(q.Int(0));
    if (q.failed()) return q.Error("usage: extents");
  }
  {
    Stmt q(db_, "SELECT coalesce(sum(size), 0), count(*) FROM chunks");
    if (q.Step()) u.stored_bytes = uint64_t(q.Int(0)), u.chunks = uint64_t(q.Int(1));
    if (q.failed()) return q.Error("usage: chunks");
  }
  {
    Stmt q(db_, "SELECT coalesce(sum(size), 0), count(*) FROM packs");
    if (q.Step()) u.pack_bytes = uint64_t(q.Int(0)), u.packs = uint64_t(q.Int(1));
    if (q.failed()) return q.Error("usage: packs");
  }
  // As compaction counts a pack's live bytes: each live chunk's record
  // with its header, and the pack's own header.
  u.pack_live_bytes = u.stored_bytes + u.chunks * chunks_->RecordOverhead() +
                      u.packs * kContainerHeaderSize;
  if (u.pack_live_bytes > u.pack_bytes) u.pack_live_bytes = u.pack_bytes;
  {
    Stmt q(db_, "SELECT count(*) FROM snapshots");
    if (q.Step()) u.snapshots = uint64_t(q.Int(0));
    if (q.failed()) return q.Error("usage: snapshots");
  }
  return u;
}

Store::PendingFigures Store::Pending() const {
  PendingFigures p;
  if (in_txn_)
    p.uncommitted_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - txn_started_).count();
  p.dirty_files = dirty_.size();
  p.buffered_bytes = dirty_bytes_;
  p.low_space = low_space_;
  return p;
}

}  // namespace muscle::store
