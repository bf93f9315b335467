// What a 9P file system needs of a tree of inodes: the operations the
// request handlers (server/store_handlers.cc, server/stat_dialects.cc)
// call, and nothing about where the tree lives. Two trees implement it:
// the live store (Store, store.h) and the read-only snapshot views
// (SnapshotView, snapshot_view.h: aname @snapshots and @ctl). A file
// system (9p/filesystem.h) runs the same handlers on whichever tree the
// request's fid was attached to.
//
// Threading: as the implementation's (a Store: its one thread; a
// SnapshotView: the store writer's thread).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "auth/access_rule.h"
#include "common/result.h"
#include "store/attr.h"

namespace muscle::store {

class Tree {
 public:
  virtual ~Tree() = default;

  // The directory (or, for @ctl, the control file) a Tattach names:
  // `aname` below the root (slash-separated; ".." refused with EACCES).
  // `rule` is the identity's access rule for a view's attach (the views
  // apply it themselves), null for the live tree (the session already put
  // the rule's root in front of aname).
  virtual Result<Attr> Attach(std::string_view aname, const auth::AccessRule* rule) = 0;

  // --- metadata ---
  virtual Result<Attr> GetAttr(uint64_t ino) = 0;
  virtual Result<Attr> Lookup(uint64_t dir, std::string_view name) = 0;
  // Creates a file, directory, symlink or device node (type from mode).
  virtual Result<Attr> Create(uint64_t dir, std::string_view name, uint32_t mode, uint32_t uid,
                              uint32_t gid, uint64_t rdev = 0,
                              std::string_view symlink_target = {}) = 0;
  virtual Result<Attr> Link(uint64_t dir, std::string_view name, uint64_t ino) = 0;
  virtual Status Unlink(uint64_t dir, std::string_view name, bool remove_dir) = 0;
  virtual Status Rename(uint64_t old_dir, std::string_view old_name, uint64_t new_dir,
                        std::string_view new_name) = 0;
  virtual Result<Attr> SetAttr(uint64_t ino, const SetAttrRequest& req) = 0;
  virtual Result<std::string> ReadLink(uint64_t ino) = 0;
  // One (parent, name) under which `ino` is linked.
  virtual Result<std::pair<uint64_t, std::string>> FindName(uint64_t ino) = 0;
  // For a file whose last name went while it was open, held since the
  // store was opened (Store::orphan_hold): the directory it was last linked
  // in (ENOENT for anything else, and on a reader connection, which does
  // not know what the writer holds).
  virtual Result<uint64_t> OrphanDir(uint64_t ino) = 0;
  // The entries after `cookie` (0 starts at the beginning; "." and ".."
  // come first), streamed: emit() gets each in order (the reference is
  // valid only during the call) until it returns false or the listing ends.
  virtual Status ReadDir(uint64_t dir, uint64_t cookie,
                         const std::function<bool(const DirEntry&)>& emit) = 0;
  // The same, collected: up to `max` entries.
  Result<std::vector<DirEntry>> ReadDir(uint64_t dir, uint64_t cookie, size_t max);
  virtual Result<StatFs> GetStatFs() = 0;

  // --- data ---
  // Reads up to `count` bytes at `offset` into `out` (resized to what was
  // read; short at end of file).
  virtual Status Read(uint64_t ino, uint64_t offset, uint32_t count, std::string& out) = 0;
  virtual Result<uint32_t> Write(uint64_t ino, uint64_t offset, std::string_view data) = 0;
  // EROFS when `ino` may not be opened for a change (a snapshot's file,
  // whatever its mode bits say); checked before an open or create that
  // would write.
  virtual Status MayChange(uint64_t ino) = 0;

  // --- xattrs --- (names are full, e.g. "user.foo")
  virtual Result<std::string> GetXattr(uint64_t ino, std::string_view name) = 0;
  // All names, each followed by a NUL, as listxattr(2) returns them.
  virtual Result<std::string> ListXattr(uint64_t ino) = 0;
  // flags: 1 = XATTR_CREATE, 2 = XATTR_REPLACE.
  virtual Status SetXattr(uint64_t ino, std::string_view name, std::string_view value,
                          uint32_t flags) = 0;
  virtual Status RemoveXattr(uint64_t ino, std::string_view name) = 0;

  // --- references and durability ---
  // A reference held by a fid (the session's fid table decides which; see
  // 9p/filesystem.h "References"): what it names lives while it is held.
  virtual void Ref(uint64_t ino) = 0;
  virtual Status Unref(uint64_t ino) = 0;
  // Commits what was done; synced to disk before it returns.
  virtual Status Sync(bool durable) = 0;

  // --- operation ids (Tonce, musclefs(8) PROTOCOL) ---
  // Runs `run` at most once per (identity, op): the reply (opaque bytes)
  // recorded for them when there is one, without calling run; else run's,
  // recorded with run's changes so that both last or neither does.
  // *ran says which.
  virtual Result<std::string> Once(std::string_view identity, uint64_t op,
                                   const std::function<std::string()>& run, bool* ran) = 0;
};

}  // namespace muscle::store
