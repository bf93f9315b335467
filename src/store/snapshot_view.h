// The read-only views of a store, a tree of their own (tree.h) beside the
// live one: @snapshots (every snapshot as a directory, its tree below,
// served from tree objects) and @ctl control files (what is written to one
// is a command, run with the access rule of the client that attached it;
// the answer reads back from it). The server's ViewFileSystem
// (server/view_filesystem.h) serves it to fids attached with those names.
//
// Nodes are made as they are looked up and live while a fid holds them or
// a node below them lives; beyond kMaxNodes the others are forgotten (and
// made again when looked up again, with the same number). A node's number
// has kInoBit set (the live tree's never do): it is a hash of where the
// node is, so the same path keeps its number while the server runs.
// Every change but a control file's write answers EROFS.
//
// Threading: the store writer's thread only, like the Store it reads
// (readers never see views).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "auth/access_rule.h"
#include "store/store.h"
#include "store/tree.h"

namespace muscle::store {

class SnapshotView final : public Tree {
 public:
  // Runs one @ctl command for an identity with `rule` and returns its answer.
  using ControlHandler =
      std::function<std::string(Store&, const auth::AccessRule& rule, std::string_view command)>;
  explicit SnapshotView(Store& store, ControlHandler control = nullptr)
      : store_(store), control_(std::move(control)) {}

  static constexpr uint64_t kInoBit = uint64_t(1) << 62;
  // True when `ino` names a node of a view (and never a live inode).
  static bool Owns(uint64_t ino) { return ino & kInoBit; }

  // "@snapshots" (every snapshot a directory), "@snapshots/NAME[/path]"
  // (one snapshot, or a directory in it; NAME may be a root hash or a
  // unique prefix of it) or "@ctl" (a new control file), as an identity
  // with `rule` sees them (a confined identity sees its own subtree in
  // every snapshot).
  Result<Attr> Attach(std::string_view aname, const auth::AccessRule* rule) override;
  // The node for @snapshots as an identity confined to `confine` (a
  // relative path, "" for the whole tree) sees it.
  Result<Attr> SnapshotsRoot(std::string_view confine);
  Result<Attr> NewControlFile(const auth::AccessRule& rule);
  bool IsControlFile(uint64_t ino) const;

  Result<Attr> GetAttr(uint64_t ino) override;
  Result<Attr> Lookup(uint64_t dir, std::string_view name) override;
  Result<Attr> Create(uint64_t, std::string_view, uint32_t, uint32_t, uint32_t, uint64_t = 0,
                      std::string_view = {}) override {
    return Status(EROFS);
  }
  Result<Attr> Link(uint64_t, std::string_view, uint64_t) override { return Status(EROFS); }
  Status Unlink(uint64_t, std::string_view, bool) override { return Status(EROFS); }
  Status Rename(uint64_t, std::string_view, uint64_t, std::string_view) override {
    return Status(EROFS);
  }
  Result<Attr> SetAttr(uint64_t, const SetAttrRequest&) override { return Status(EROFS); }
  Result<std::string> ReadLink(uint64_t ino) override;
  Result<std::pair<uint64_t, std::string>> FindName(uint64_t ino) override;
  Result<uint64_t> OrphanDir(uint64_t) override { return Status(ENOENT); }
  using Tree::ReadDir;
  Status ReadDir(uint64_t dir, uint64_t cookie,
                 const std::function<bool(const DirEntry&)>& emit) override;
  // The store's (the views take no space of their own).
  Result<StatFs> GetStatFs() override { return store_.GetStatFs(); }

  Status Read(uint64_t ino, uint64_t offset, uint32_t count, std::string& out) override;
  // Only a control file takes writes: each write is one command.
  Result<uint32_t> Write(uint64_t ino, uint64_t offset, std::string_view data) override;
  // Snapshots are read-only whatever their mode bits say; a control file
  // checks what is written to it itself.
  Status MayChange(uint64_t ino) override {
    return IsControlFile(ino) ? Status::Ok() : Status(EROFS);
  }

  Result<std::string> GetXattr(uint64_t, std::string_view) override { return Status(ENODATA); }
  Result<std::string> ListXattr(uint64_t) override { return std::string(); }
  Status SetXattr(uint64_t, std::string_view, std::string_view, uint32_t) override {
    return Status(EROFS);
  }
  Status RemoveXattr(uint64_t, std::string_view) override { return Status(EROFS); }

  void Ref(uint64_t ino) override;
  Status Unref(uint64_t ino) override;
  // The store's commit (a Tfsync on a view still makes what came before durable).
  Status Sync(bool durable) override { return store_.Sync(durable); }
  // Nothing is recorded: the views change nothing but a control file,
  // whose commands commit on their own and whose node does not outlive
  // the server (so no fid names it after a restart, to resend through).
  Result<std::string> Once(std::string_view, uint64_t, const std::function<std::string()>& run,
                           bool* ran) override {
    *ran = true;
    return run();
  }

  // Limits: nodes kept, control files open at once, and the bytes their
  // answers hold: in all, and per identity (AccessRule::identity), so
  // that one identity cannot take them all from the others (the
  // administrator, "" on the unix socket, is held only to the totals).
  static constexpr size_t kMaxNodes = 65536;
  static constexpr size_t kMaxControlFiles = 1024;
  static constexpr size_t kMaxReplyBytes = 64u << 20;
  static constexpr size_t kMaxControlFilesIdentity = 128;
  static constexpr size_t kMaxReplyBytesIdentity = 8u << 20;

 private:
  struct Node {
    enum Kind { kList, kEntry, kControl } kind = kEntry;
    uint64_t parent = 0;  // the list node is its own parent
    std::string name;
    Attr attr;
    TreeEntry entry;        // kEntry: what the node is (metadata, object)
    std::string confine;    // kList: the subtree each snapshot shows
    uint32_t refs = 0;      // fids
    uint32_t children = 0;  // nodes naming it as parent
    auth::AccessRule rule;  // kControl: the client's, for its commands
    std::string reply;      // kControl
  };
  // The node for `name` in directory node `dir` (made, or refreshed).
  Attr MakeNode(uint64_t dir, std::string_view name, const TreeEntry& entry);

  Store& store_;
  ControlHandler control_;
  std::unordered_map<uint64_t, Node> nodes_;
  uint64_t next_control_ = 1;
  // Nodes nothing holds are forgotten when the table passes scan_above_
  // (at least kMaxNodes); after a pass it is raised to twice what is left,
  // so lookups cost O(1) amortized even when most nodes are held.
  size_t scan_above_ = kMaxNodes;
  size_t control_files_ = 0, reply_bytes_ = 0;
  struct Held {
    size_t files = 0, bytes = 0;
  };
  std::unordered_map<std::string, Held> held_;  // per identity with control files open
};

}  // namespace muscle::store
