// Which Twrites the file system may answer before the store thread has
// taken their data, how many bytes wait in that state, and the errors of
// such writes that are still to be reported.
//
// A Twrite to a file the writer has already written once (so it is a
// regular file of the live tree and writes to it succeed) is answered on
// the event loop at once and its data queued for the store thread, which
// takes it into the file's write buffer (Store::WriteAcknowledged) in
// queue order, before anything queued after it; a reply to a Twrite
// already meant "buffered", never "on disk". Such data waits in the queue
// only up to `limit` bytes in all (back-pressure): past that a Twrite
// waits for the store thread as before, so a client that pipelines more
// is held up by its replies.
//
// A failed flush of acknowledged data keeps the data buffered (as a
// failed flush always does) and is reported to the next Twrite, Tfsync or
// Tclunk on the file on the writer: the Twrite then gets the error and its
// data is not taken (as a Twrite whose flush failed is answered today),
// the Tfsync and Tclunk still do their work. Until it is reported the file
// is written through the store thread again.
//
// Threading: every method is thread-safe (one mutex; each critical section
// is a few hash-table operations). Admit runs on an event loop, the rest
// on the store thread. Owned by the StoreFileSystem, shared with its jobs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <unordered_set>

#include "common/mutex.h"
#include "common/result.h"
#include "common/thread_annotations.h"

namespace muscle::server {

class WriteAhead {
 public:
  // Four 64 KiB writes: a client's usual pipeline (4 in flight) is
  // answered at once. Measured 2026-12-07 (bench/results.md): 4 MiB gained
  // nothing over waiting for the writer, 256 KiB did; likely because with
  // less waiting the writer's queue still empties, and it flushes ahead
  // then (Store::FlushAhead), which was not profiled.
  static constexpr size_t kDefaultLimit = 256u << 10;
  explicit WriteAhead(size_t limit = kDefaultLimit) : limit_(limit) {}

  // Loop: true when a write of `bytes` to `ino` may be answered now; its
  // bytes are then counted as waiting until Taken.
  bool Admit(uint64_t ino, size_t bytes) EXCLUDES(mu_);
  // Store thread: a Twrite to `ino` succeeded on the writer, so later ones
  // may be answered ahead.
  void Allow(uint64_t ino) EXCLUDES(mu_);
  // Store thread: an admitted write of `bytes` was taken (`st`: the status
  // of the flush it caused, kept for the next report); `low_space`: the
  // store refuses new data, so nothing is admitted until Allow again.
  // True when a failure was recorded (the caller keeps the file's reads
  // on the writer until it is reported: ReadGate::Pending).
  bool Taken(uint64_t ino, size_t bytes, const Status& st, bool low_space) EXCLUDES(mu_);
  // Store thread: the failure recorded for `ino`, once (Ok if none).
  Status TakeFailure(uint64_t ino) EXCLUDES(mu_);
  // Store thread, after each job: the store's rollback count
  // (Store::rollbacks). When it moved, files made since the last commit
  // are gone, so every file is forgotten (its next write gets ESTALE from
  // the writer, as before). A request's job calls it before its reply is
  // sent; a rollback in a background commit is seen after the next job.
  void Settle(uint64_t rollbacks) EXCLUDES(mu_);

  size_t limit() const { return limit_; }
  // The most bytes that ever waited at once (tests).
  size_t peak() const EXCLUDES(mu_);

 private:
  // Files remembered as writable, at most this many (then forgotten all
  // at once: their next write goes through the store thread again).
  static constexpr size_t kMaxAllowed = 4096;
  const size_t limit_;
  mutable Mutex mu_;
  std::unordered_set<uint64_t> allowed_ GUARDED_BY(mu_);
  std::unordered_map<uint64_t, Status> failed_ GUARDED_BY(mu_);
  bool low_space_ GUARDED_BY(mu_) = false;
  uint64_t rollbacks_ GUARDED_BY(mu_) = 0;
  size_t waiting_ GUARDED_BY(mu_) = 0;
  size_t peak_ GUARDED_BY(mu_) = 0;
};

}  // namespace muscle::server
