// What the store's reader connections may answer, and the references that
// keep open files alive, shared between the writer and the readers.
//
// The writer (the one Store that changes anything) keeps its changes in an
// open SQLite transaction until the next commit, and some data only in its
// write buffers; a reader connection sees the last commit only. An inode is
// dirty from the moment the writer changes its row in the open transaction
// (every change to an inode's entries, data or xattrs also updates its row)
// until that transaction commits or is rolled back: until then a reader's
// view of it may be stale. The generation counts commits (and rollbacks).
//
// A read served by a reader is valid when, once it has finished, the
// generation is still the one read before it started and none of the
// inodes it looked at is dirty or has work queued for the writer (Pending): then everything it saw is the writer's
// current state of those inodes (a read that raced a commit, whose pack
// space may have been punched or removed right after it, fails this test
// and is run again on the writer). Validate checks that and, in the same
// critical section, takes or drops the fid reference the request carries,
// so a file the writer is about to purge is never referenced behind its back.
//
// The writer marks an inode dirty before changing it and, before purging a
// file nobody references, claims it (ClaimUnreferenced) under the same lock.
//
// Threading: every method is thread-safe (one mutex; each critical section
// is a few hash-table operations).
#pragma once

#include <cstdint>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/mutex.h"
#include "common/thread_annotations.h"

namespace muscle::store {

class ReadGate {
 public:
  // --- writer side ---
  // Called (from SQLite's update hook) whenever the open transaction
  // inserts, updates or deletes the inode's row.
  void MarkDirty(uint64_t ino);
  // After a commit, or after the open transaction was rolled back as a
  // whole: the writer's state is the committed state again.
  void Published();
  // After a pack file was removed (compaction): readers close the
  // descriptors they cached, so that its space really goes.
  void PackRemoved();
  uint64_t packs_removed() const;
  // True (and the inode is marked dirty) when no fid references `ino`:
  // the writer may purge it. False when something still does.
  bool ClaimUnreferenced(uint64_t ino);

  // A request about `ino` was queued for the writer (+1) or has run there
  // (-1). Reads of an inode with work queued go to the writer too, after
  // that work, as they did when every request went there in order.
  void Pending(uint64_t ino, int delta);

  // --- references held by fids ---
  void Ref(uint64_t ino);
  // Drops one reference; true when it was the last.
  bool Unref(uint64_t ino);
  bool Referenced(uint64_t ino) const;

  // --- reader side ---
  uint64_t generation() const;
  // Dirty, or with work queued for the writer (Pending).
  bool IsDirty(uint64_t ino) const;
  // True when nothing is dirty and nothing pending at all (statfs counts
  // every inode).
  bool AllClean() const;
  // What a reader's request did besides looking: take a reference to the
  // walk's target, or drop the clunked fid's. kUnref never drops the last
  // reference (the writer decides what an unreferenced file becomes);
  // kUnrefLinked may, when the reader saw the file linked (nlink > 0): a
  // clean, linked file without references needs nothing from the writer.
  enum class RefChange { kNone, kRef, kUnref, kUnrefLinked };
  // True when a read begun at generation `gen` that looked at `inos` (all
  // inodes when `all`) is valid now (see the top of this file); then
  // applies `change` to `ref_ino` (which must be among `inos`). False, and
  // nothing changes, otherwise.
  bool Validate(uint64_t gen, const std::vector<uint64_t>& inos, bool all,
                RefChange change = RefChange::kNone, uint64_t ref_ino = 0);

  // Counters for tests and logs.
  uint64_t validated() const;
  uint64_t refused() const;

 private:
  mutable Mutex mu_;
  uint64_t generation_ GUARDED_BY(mu_) = 0;
  uint64_t packs_removed_ GUARDED_BY(mu_) = 0;
  std::unordered_set<uint64_t> dirty_ GUARDED_BY(mu_);
  std::unordered_map<uint64_t, uint32_t> refs_ GUARDED_BY(mu_);
  std::unordered_map<uint64_t, int> pending_ GUARDED_BY(mu_);
  uint64_t validated_ GUARDED_BY(mu_) = 0;
  uint64_t refused_ GUARDED_BY(mu_) = 0;
};

}  // namespace muscle::store
