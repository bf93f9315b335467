// Snapshots: freezing the live tree into tree objects, the snapshot
// records, pruning, diff, history and restore (see store.h, "snapshots",
// and tree_object.h).
//
// The live tree keeps, per inode, the object that describes it now
// (inodes.obj, a counted reference) once a snapshot or diff asked for it.
// SQLite's update hook collects every inode row that changes (every change
// to a file's data, entries or metadata updates its row); before the next
// commit ApplyInvalidations drops those inodes' cached objects and, up
// every path to the root, their directories'. A stale inode's directories
// are therefore always stale too, which is what lets invalidation stop at
// the first directory that already is, and lets Freeze skip every subtree
// whose root still has its object.
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <map>
#include <optional>
#include <set>

#include "common/log.h"
#include "store/sha256.h"
#include "store/snapshot_internal.h"
#include "store/statements.h"
#include "store/store.h"

namespace muscle::store {

namespace {

std::string_view HashView(const ObjectHash& h) {
  return std::string_view(reinterpret_cast<const char*>(h.data()), 32);
}

ObjectHash HashFrom(std::string_view b) {
  ObjectHash h{};
  if (b.size() == 32) memcpy(h.data(), b.data(), 32);
  return h;
}

bool IsHex(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

// Splits a relative path into its names ("." and empty names skipped).
Result<std::vector<std::string>> Names(std::string_view path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    std::string_view n = path.substr(i, j - i);
    i = j + 1;
    if (n.empty() || n == ".") continue;
    if (n == "..") return Status(EINVAL, "'..' in a path");
    out.emplace_back(n);
  }
  return out;
}

TreeEntry EntryOfAttr(const Attr& a) {
  TreeEntry e;
  e.mode = a.mode;
  e.uid = a.uid;
  e.gid = a.gid;
  e.size = a.size;
  e.rdev = a.rdev;
  e.mtime_ns = a.mtime_ns;
  e.ctime_ns = a.ctime_ns;
  e.btime_ns = a.btime_ns;
  return e;
}

bool SameMetadata(const TreeEntry& a, const TreeEntry& b) {
  return a.mode == b.mode && a.uid == b.uid && a.gid == b.gid && a.size == b.size &&
         a.rdev == b.rdev && a.mtime_ns == b.mtime_ns;
}

}  // namespace

std::string UtcTime(int64_t ns, const char* format) {
  time_t t = time_t(ns / 1000000000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[64];
  strftime(buf, sizeof buf, format, &tm);
  return buf;
}

struct Store::SnapshotRow {
  static constexpr const char* kColumns =
      "s.id, s.name, s.created, c.hash, s.added, s.mode, s.uid, s.gid, s.mtime, s.ctime, "
      "s.btime, s.root FROM snapshots s JOIN chunks c ON c.id=s.root";
  static SnapshotInfo From(const Stmt& q) {
    SnapshotInfo i;
    i.id = q.Int(0);
    i.name = std::string(q.Blob(1));
    i.created_ns = q.Int(2);
    i.root = HashFrom(q.Blob(3));
    i.added_bytes = uint64_t(q.Int(4));
    i.root_attr.mode = uint32_t(q.Int(5));
    i.root_attr.uid = uint32_t(q.Int(6));
    i.root_attr.gid = uint32_t(q.Int(7));
    i.root_attr.mtime_ns = q.Int(8);
    i.root_attr.ctime_ns = q.Int(9);
    i.root_attr.btime_ns = q.Int(10);
    i.root_attr.atime_ns = q.Int(8);
    i.root_attr.nlink = 2;
    return i;
  }
};

Result<int64_t> Store::ChunkIdOf(const ObjectHash& h) {
  Stmt& q = st_->find_chunk;
  Stmt::Scope scope(q);
  q.Bind(1, HashView(h), true);
  if (q.Step()) return q.Int(0);
  if (q.failed()) return q.Error("find chunk");
  return Status(EIO, "object names a missing chunk " + HexOfHash(h));
}

Status Store::RefChildren(const std::vector<int64_t>& ids) {
  for (int64_t id : ids) {
    Stmt& r = st_->ref_chunk;
    r.Bind(1, 1).Bind(2, id);
    MUSCLE_RETURN_IF_ERROR(r.Run());
  }
  return Status::Ok();
}

// Stores an object (or finds it) and returns it with one new reference
// for the caller. `child_ids` are the chunk ids of ChildrenOf(o), in order:
// the references a newly stored object takes.
Result<std::pair<int64_t, ObjectHash>> Store::PutObject(const TreeObject& o,
                                                        const std::vector<int64_t>& child_ids) {
  std::string bytes = EncodeObject(o);
  ObjectHash h;
  Sha256(bytes.data(), bytes.size(), h.data());
  {
    Stmt& q = st_->chunk_by_hash;
    Stmt::Scope scope(q);
    q.Bind(1, HashView(h), true);
    if (q.Step()) {
      int64_t id = q.Int(0), kind = q.Int(4);
      Stmt& r = st_->ref_chunk;
      r.Bind(1, 1).Bind(2, id);
      MUSCLE_RETURN_IF_ERROR(r.Run());
      if (kind != 1) {
        // The same bytes were stored as file data: from now on the chunk is
        // also an object, and holds its children.
        Stmt& k = st_->set_kind;
        k.Bind(1, id);
        MUSCLE_RETURN_IF_ERROR(k.Run());
        MUSCLE_RETURN_IF_ERROR(RefChildren(child_ids));
      }
      return std::make_pair(id, h);
    }
    if (q.failed()) return q.Error("find object");
  }
  unsigned char raw[32];
  memcpy(raw, h.data(), 32);
  auto at = AppendChunk(bytes, raw);
  if (!at.ok()) return at.status();
  Stmt& ins = st_->insert_object;
  ins.Bind(1, HashView(h), true).Bind(2, int64_t(bytes.size())).Bind(3, int64_t(at->container))
      .Bind(4, int64_t(at->offset));
  MUSCLE_RETURN_IF_ERROR(ins.Run());
  int64_t id = int64_t(sqlite3_last_insert_rowid(db_.raw()));
  MUSCLE_RETURN_IF_ERROR(RefChildren(child_ids));
  return std::make_pair(id, h);
}

Status Store::DropCachedObject(uint64_t ino) {
  int64_t obj = 0;
  {
    Stmt& q = st_->inode_obj;
    Stmt::Scope scope(q);
    q.Bind(1, int64_t(ino));
    if (!q.Step()) return q.failed() ? q.Error("inode object") : Status::Ok();
    if (q.IsNull(0)) return Status::Ok();
    obj = q.Int(0);
  }
  bool was = tracking_changes_;
  tracking_changes_ = false;
  Stmt& u = st_->set_obj;
  u.BindNull(1).Bind(2, int64_t(ino));
  Status s = u.Run();
  tracking_changes_ = was;
  MUSCLE_RETURN_IF_ERROR(s);
  return DropChunk(obj);
}

// The changed inodes stay in changed_ until their transaction commits
// (Sync clears it then): a savepoint rolled back after this ran undoes the
// invalidations but maybe not the changes, which are applied again (it is
// idempotent).
Status Store::ApplyInvalidations() {
  if (changed_.empty()) return Status::Ok();
  if (!objects_exist_) {
    changed_.clear();  // no cache to drop: objects are built from the tree as it is
    return Status::Ok();
  }
  std::vector<uint64_t> work(changed_.begin(), changed_.end());
  std::unordered_set<uint64_t> done;
  while (!work.empty()) {
    uint64_t ino = work.back();
    work.pop_back();
    if (!done.insert(ino).second) continue;
    int64_t obj = 0;
    uint32_t mode = 0;
    uint64_t parent = 0;
    {
      Stmt& q = st_->inode_obj;
      Stmt::Scope scope(q);
      q.Bind(1, int64_t(ino));
      if (!q.Step()) {
        if (q.failed()) return q.Error("inode object");
        continue;  // deleted (PurgeInode dropped its object)
      }
      mode = uint32_t(q.Int(1));
      parent = uint64_t(q.Int(2));
      uint32_t type = mode & S_IFMT;
      bool has_object = type == S_IFDIR || type == S_IFREG || type == S_IFLNK;
      // Stale already, and so is every directory above; a device, fifo or
      // socket never has an object: its metadata lives in its directories'.
      if (q.IsNull(0) && has_object) continue;
      obj = q.IsNull(0) ? 0 : q.Int(0);
    }
    if (obj) MUSCLE_RETURN_IF_ERROR(DropCachedObject(ino));
    if (S_ISDIR(mode)) {
      if (ino != kRootIno) work.push_back(parent);
      continue;
    }
    Stmt& p = st_->parents_of;
    Stmt::Scope scope(p);
    p.Bind(1, int64_t(ino));
    while (p.Step()) work.push_back(uint64_t(p.Int(0)));
    if (p.failed()) return p.Error("parents");
  }
  return Status::Ok();
}

Result<std::pair<int64_t, ObjectHash>> Store::FileObject(uint64_t ino, const Attr& a) {
  TreeObject o;
  std::vector<int64_t> ids;
  if (S_ISLNK(a.mode)) {
    o.kind = ObjectKind::kSymlink;
    auto t = ReadLink(ino);
    if (!t.ok()) return t.status();
    o.target = *t;
  } else {
    o.kind = ObjectKind::kFile;
    o.size = a.size;
    Stmt& q = st_->file_chunks;
    Stmt::Scope scope(q);
    q.Bind(1, int64_t(ino));
    while (q.Step()) {
      FileExtent x;
      x.offset = uint64_t(q.Int(0));
      x.length = uint32_t(q.Int(1));
      ids.push_back(q.Int(2));
      x.chunk = HashFrom(q.Blob(3));
      o.extents.push_back(x);
    }
    if (q.failed()) return q.Error("file chunks");
  }
  return PutObject(o, ids);
}

// Post-order over the stale part of the tree below `ino` (a directory):
// each stale directory's entries are listed once; children that still have
// their objects are not descended into.
Result<std::pair<int64_t, ObjectHash>> Store::Freeze(uint64_t ino) {
  MUSCLE_RETURN_IF_ERROR(ApplyInvalidations());
  bool was = tracking_changes_;
  tracking_changes_ = false;
  struct Tracking {
    Store* s;
    bool was;
    ~Tracking() { s->tracking_changes_ = was; }
  } restore{this, was};
  objects_exist_ = true;
  auto cached = [&](uint64_t i) -> Result<std::optional<std::pair<int64_t, ObjectHash>>> {
    Stmt q(db_, "SELECT i.obj, c.hash FROM inodes i JOIN chunks c ON c.id=i.obj WHERE i.ino=?");
    q.Bind(1, int64_t(i));
    if (q.Step()) return std::optional<std::pair<int64_t, ObjectHash>>(
        std::make_pair(q.Int(0), HashFrom(q.Blob(1))));
    if (q.failed()) return q.Error("cached object");
    return std::optional<std::pair<int64_t, ObjectHash>>();
  };
  auto set_obj = [&](uint64_t i, int64_t id) -> Status {
    Stmt& u = st_->set_obj;
    u.Bind(1, id).Bind(2, int64_t(i));
    return u.Run();
  };
  {
    auto c = cached(ino);
    if (!c.ok()) return c.status();
    if (*c) return **c;
  }
  struct Child {
    TreeEntry entry;
    uint64_t ino;
    int64_t obj;  // 0: not built yet
  };
  struct Frame {
    uint64_t ino;
    std::vector<Child> children;
    size_t next = 0;
  };
  std::vector<Frame> stack;
  std::unordered_set<uint64_t> on_stack;
  auto open = [&](uint64_t dir) -> Status {
    if (!on_stack.insert(dir).second)
      return Status(EIO, "directory cycle through inode " + std::to_string(dir));
    Frame f{dir, {}, 0};
    Stmt& q = st_->freeze_list;
    Stmt::Scope scope(q);
    q.Bind(1, int64_t(dir));
    while (q.Step()) {
      Child c;
      c.entry.name = std::string(q.Blob(0));
      c.ino = uint64_t(q.Int(1));
      c.entry.mode = uint32_t(q.Int(2));
      c.entry.uid = uint32_t(q.Int(3));
      c.entry.gid = uint32_t(q.Int(4));
      c.entry.size = uint64_t(q.Int(5));
      c.entry.rdev = uint64_t(q.Int(6));
      c.entry.mtime_ns = q.Int(7);
      c.entry.ctime_ns = q.Int(8);
      c.entry.btime_ns = q.Int(9);
      c.obj = q.IsNull(10) ? 0 : q.Int(10);
      uint32_t type = c.entry.mode & S_IFMT;
      c.entry.has_object = type == S_IFDIR || type == S_IFREG || type == S_IFLNK;
      if (c.obj) c.entry.object = HashFrom(q.Blob(11));
      if (S_ISDIR(c.entry.mode)) c.entry.size = 0;
      f.children.push_back(std::move(c));
    }
    if (q.failed()) return q.Error("freeze");
    stack.push_back(std::move(f));
    return Status::Ok();
  };
  MUSCLE_RETURN_IF_ERROR(open(ino));
  std::pair<int64_t, ObjectHash> result;
  while (!stack.empty()) {
    Frame& f = stack.back();
    if (f.next < f.children.size()) {
      Child& c = f.children[f.next];
      if (!c.entry.has_object || c.obj) {
        f.next++;
        continue;
      }
      if (S_ISDIR(c.entry.mode)) {
        MUSCLE_RETURN_IF_ERROR(open(c.ino));  // its frame is on top now
        continue;
      }
      auto a = LoadAttr(c.ino);
      if (!a.ok()) return a.status();
      if (a->nlink > 1) {
        // Another name of this file, frozen since this directory was
        // listed, holds the inode's one cached object: share it.
        auto have = cached(c.ino);
        if (!have.ok()) return have.status();
        if (*have) {
          c.obj = (*have)->first;
          c.entry.object = (*have)->second;
          f.next++;
          continue;
        }
      }
      auto made = FileObject(c.ino, *a);
      if (!made.ok()) return made.status();
      MUSCLE_RETURN_IF_ERROR(set_obj(c.ino, made->first));
      c.obj = made->first;  // (FileObject does not touch the stack)
      c.entry.object = made->second;
      f.next++;
      continue;
    }
    TreeObject o;
    o.kind = ObjectKind::kDir;
    std::vector<int64_t> ids;
    for (Child& c : f.children) {
      if (c.entry.has_object) ids.push_back(c.obj);
      o.entries.push_back(std::move(c.entry));
    }
    auto made = PutObject(o, ids);
    if (!made.ok()) return made.status();
    MUSCLE_RETURN_IF_ERROR(set_obj(f.ino, made->first));
    on_stack.erase(f.ino);
    stack.pop_back();
    if (stack.empty()) {
      result = *made;
      break;
    }
    Frame& parent = stack.back();
    Child& c = parent.children[parent.next];
    c.obj = made->first;
    c.entry.object = made->second;
    parent.next++;
  }
  return result;
}

Result<Store::SnapshotInfo> Store::TakeSnapshot(std::string_view name) {
  OpScope op(this);
  if (read_only_) return Status(EROFS);
  if (!name.empty()) {
    MUSCLE_RETURN_IF_ERROR(CheckName(name));
    if (name[0] == '@') return Status(EINVAL, "a snapshot name may not start with '@'");
  }
  MUSCLE_RETURN_IF_ERROR(CheckSpace(0));
  // Buffered writes become chunks first (and are committed with the rest).
  MUSCLE_RETURN_IF_ERROR(Sync(false));
  auto t0 = std::chrono::steady_clock::now();
  auto info = Atomically([&]() -> Result<SnapshotInfo> {
    auto root = Freeze(kRootIno);
    if (!root.ok()) return root.status();
    auto ra = LoadAttr(kRootIno);
    if (!ra.ok()) return ra.status();
    SnapshotInfo i;
    i.created_ns = NowNs();
    i.name = name.empty() ? UtcTime(i.created_ns) : std::string(name);
    for (int n = 2; name.empty(); n++) {
      Stmt q(db_, "SELECT 1 FROM snapshots WHERE name=?");
      q.BindText(1, i.name);
      if (!q.Step()) break;
      i.name = UtcTime(i.created_ns) + "-" + std::to_string(n);
    }
    {
      Stmt q(db_, "SELECT 1 FROM snapshots WHERE name=?");
      q.BindText(1, i.name);
      if (q.Step()) return Status(EEXIST, "a snapshot named '" + i.name + "' exists");
    }
    int64_t prev_last = 0, last = 0;
    {
      Stmt q(db_, "SELECT coalesce(max(last_chunk), 0) FROM snapshots");
      if (q.Step()) prev_last = q.Int(0);
      Stmt m(db_, "SELECT coalesce(max(id), 0) FROM chunks");
      if (m.Step()) last = m.Int(0);
      Stmt a(db_, "SELECT coalesce(sum(size), 0) FROM chunks WHERE id>?");
      a.Bind(1, prev_last);
      if (a.Step()) i.added_bytes = uint64_t(a.Int(0));
    }
    i.root = root->second;
    i.root_attr = *ra;
    Stmt ins(db_,
             "INSERT INTO snapshots(name, created, root, last_chunk, added, mode, uid, gid, "
             "mtime, ctime, btime) VALUES(?,?,?,?,?,?,?,?,?,?,?)");
    ins.BindText(1, i.name).Bind(2, i.created_ns).Bind(3, root->first).Bind(4, last)
        .Bind(5, int64_t(i.added_bytes)).Bind(6, int64_t(ra->mode)).Bind(7, int64_t(ra->uid))
        .Bind(8, int64_t(ra->gid)).Bind(9, ra->mtime_ns).Bind(10, ra->ctime_ns)
        .Bind(11, ra->btime_ns);
    MUSCLE_RETURN_IF_ERROR(ins.Run());
    i.id = int64_t(sqlite3_last_insert_rowid(db_.raw()));
    MUSCLE_RETURN_IF_ERROR(RefChildren({root->first}));
    return i;
  });
  if (!info.ok()) return info.status();
  MUSCLE_RETURN_IF_ERROR(Sync(true));
  Log("store: snapshot %s (root %s, %llu KiB added) in %.1f ms", info->name.c_str(),
      HexOfHash(info->root).substr(0, 16).c_str(), (unsigned long long)(info->added_bytes >> 10),
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  return info;
}

Result<std::vector<Store::SnapshotInfo>> Store::ListSnapshots() {
  OpScope op(this);
  std::vector<SnapshotInfo> out;
  Stmt q(db_, (std::string("SELECT ") + SnapshotRow::kColumns + " ORDER BY s.id").c_str());
  while (q.Step()) out.push_back(SnapshotRow::From(q));
  if (q.failed()) return q.Error("snapshots");
  return out;
}

Result<Store::SnapshotInfo> Store::FindSnapshot(std::string_view ref, std::string_view confine) {
  OpScope op(this);
  {
    Stmt q(db_, (std::string("SELECT ") + SnapshotRow::kColumns + " WHERE s.name=?").c_str());
    q.BindText(1, ref);
    if (q.Step()) return SnapshotRow::From(q);
    if (q.failed()) return q.Error("snapshot");
  }
  if (ref.size() >= 4 && ref.size() <= 64 && IsHex(ref)) {
    auto all = ListSnapshots();
    if (!all.ok()) return all.status();
    // Pass 0 (confined only): the hash of `confine` in each snapshot;
    // pass 1: the root's.
    // (A confined identity does not see, and may not probe, root hashes.)
    for (int pass = confine.empty() ? 1 : 0; pass < (confine.empty() ? 2 : 1); pass++) {
      const SnapshotInfo* found = nullptr;
      ObjectHash found_hash{};
      for (auto it = all->rbegin(); it != all->rend(); ++it) {
        ObjectHash h = it->root;
        if (pass == 0) {
          auto e = ResolveIn(it->root, it->root_attr, confine);
          if (!e.ok() || !S_ISDIR(e->mode)) continue;  // not in that snapshot
          h = e->object;
        }
        if (HexOfHash(h).compare(0, ref.size(), ref) != 0) continue;
        if (found && found_hash != h)
          return Status(EINVAL, "snapshot hash prefix '" + std::string(ref) + "' is ambiguous");
        if (!found) found = &*it, found_hash = h;  // the newest of those with that tree
      }
      if (found) return *found;
    }
  }
  return Status(ENOENT, "no snapshot '" + std::string(ref) + "'");
}

Result<std::shared_ptr<const TreeObject>> Store::LoadObject(const ObjectHash& hash) {
  if (!object_cache_) object_cache_ = std::make_unique<ObjectCache>();
  if (auto o = object_cache_->Find(hash)) return o;
  ChunkLocation at;
  uint64_t size;
  {
    Stmt& q = st_->chunk_by_hash;
    Stmt::Scope scope(q);
    q.Bind(1, HashView(hash), true);
    if (!q.Step()) return q.failed() ? q.Error("object") : Status(ESTALE, "object is gone");
    at = {uint64_t(q.Int(1)), uint64_t(q.Int(2))}, size = uint64_t(q.Int(3));
  }
  std::string bytes(size, '\0');
  MUSCLE_RETURN_IF_ERROR(chunks_->Read(at, size, 0, size, bytes.data()));
  auto o = DecodeObject(bytes);
  if (!o.ok()) return o.status();
  auto p = std::make_shared<const TreeObject>(std::move(*o));
  object_cache_->Add(hash, p, size + sizeof(TreeObject));
  return p;
}

Result<TreeEntry> Store::ResolveIn(const ObjectHash& dir, const Attr& dir_attr,
                                   std::string_view path) {
  auto names = Names(path);
  if (!names.ok()) return names.status();
  TreeEntry cur = EntryOfAttr(dir_attr);
  cur.has_object = true;
  cur.object = dir;
  for (const std::string& n : *names) {
    if (!S_ISDIR(cur.mode)) return Status(ENOTDIR);
    auto o = LoadObject(cur.object);
    if (!o.ok()) return o.status();
    const auto& es = (*o)->entries;
    auto it = std::lower_bound(es.begin(), es.end(), n,
                               [](const TreeEntry& e, const std::string& k) { return e.name < k; });
    if (it == es.end() || it->name != n) return Status(ENOENT);
    cur = *it;
  }
  return cur;
}

Result<std::vector<Store::SnapshotInfo>> Store::Prune(const PrunePolicy& p) {
  OpScope op(this);
  if (p.keep_last <= 0 && p.keep_hourly <= 0 && p.keep_daily <= 0 && p.keep_weekly <= 0)
    return Status(EINVAL, "prune needs at least one keep rule (keep-last, keep-hourly, keep-daily, keep-weekly)");
  auto all = ListSnapshots();
  if (!all.ok()) return all.status();
  std::vector<SnapshotInfo> newest(all->rbegin(), all->rend());
  std::set<int64_t> keep;
  for (int i = 0; i < p.keep_last && i < int(newest.size()); i++) keep.insert(newest[i].id);
  // One per bucket (the newest in it), for the most recent N buckets that
  // have a snapshot (restic's forget).
  auto bucketed = [&](int n, auto bucket_of) {
    if (n <= 0) return;
    std::string last;
    int used = 0;
    for (const SnapshotInfo& s : newest) {
      std::string b = bucket_of(s.created_ns);
      if (b == last) continue;
      last = b;
      keep.insert(s.id);
      if (++used == n) break;
    }
  };
  bucketed(p.keep_hourly, [&](int64_t ns) { return UtcTime(ns, "%Y-%m-%d %H"); });
  bucketed(p.keep_daily, [&](int64_t ns) { return UtcTime(ns, "%Y-%m-%d"); });
  bucketed(p.keep_weekly, [&](int64_t ns) { return UtcTime(ns, "%G-%V"); });
  std::vector<SnapshotInfo> removed;
  for (const SnapshotInfo& s : *all)
    if (!keep.count(s.id)) removed.push_back(s);
  if (p.dry_run || removed.empty()) return removed;
  Status st = Atomically([&]() -> Status {
    for (const SnapshotInfo& s : removed) {
      int64_t root = 0;
      {
        Stmt q(db_, "SELECT root FROM snapshots WHERE id=?");
        q.Bind(1, s.id);
        if (!q.Step()) return q.failed() ? q.Error("snapshot") : Status(ENOENT);
        root = q.Int(0);
      }
      Stmt d(db_, "DELETE FROM snapshots WHERE id=?");
      d.Bind(1, s.id);
      MUSCLE_RETURN_IF_ERROR(d.Run());
      MUSCLE_RETURN_IF_ERROR(DropChunk(root));
    }
    return Status::Ok();
  });
  if (!st.ok()) return st;
  MUSCLE_RETURN_IF_ERROR(Sync(true));
  Log("store: pruned %zu snapshots, %zu kept", removed.size(), all->size() - removed.size());
  return removed;
}

Result<std::vector<Store::Change>> Store::Diff(std::string_view a, std::string_view b,
                                               std::string_view path) {
  OpScope op(this);
  auto sa = FindSnapshot(a);
  if (!sa.ok()) return sa.status();
  ObjectHash root_b;
  Attr attr_b;
  if (b.empty()) {
    // The live tree, frozen now (its objects stay cached for the next
    // snapshot; the commit makes them durable like any other change).
    MUSCLE_RETURN_IF_ERROR(Sync(false));
    auto r = Atomically([&]() { return Freeze(kRootIno); });
    if (!r.ok()) return r.status();
    MUSCLE_RETURN_IF_ERROR(Sync(false));
    root_b = r->second;
    auto ra = LoadAttr(kRootIno);
    if (!ra.ok()) return ra.status();
    attr_b = *ra;
  } else {
    auto sb = FindSnapshot(b);
    if (!sb.ok()) return sb.status();
    root_b = sb->root;
    attr_b = sb->root_attr;
  }
  auto ea = ResolveIn(sa->root, sa->root_attr, path);
  auto eb = ResolveIn(root_b, attr_b, path);
  std::vector<Change> out;
  if (!ea.ok() && ea.err() != ENOENT) return ea.status();
  if (!eb.ok() && eb.err() != ENOENT) return eb.status();
  auto suffix = [](const TreeEntry& e) { return S_ISDIR(e.mode) ? "/" : ""; };
  if (!ea.ok() && !eb.ok()) return Status(ENOENT, "'" + std::string(path) + "' is in neither");
  if (!ea.ok()) return std::vector<Change>{{'+', std::string(".") + suffix(*eb)}};
  if (!eb.ok()) return std::vector<Change>{{'-', std::string(".") + suffix(*ea)}};
  // Pairs of directories still to compare, by their relative path.
  struct Pending {
    std::string prefix;
    ObjectHash x, y;
  };
  std::vector<Pending> work;
  auto compare = [&](const std::string& p, const TreeEntry& x, const TreeEntry& y) {
    bool dirs = S_ISDIR(x.mode) && S_ISDIR(y.mode);
    if (dirs) {
      // A directory's times and size follow its entries: only a change of
      // its own mode or ownership is reported.
      if (x.mode != y.mode || x.uid != y.uid || x.gid != y.gid) out.push_back({'M', p + "/"});
      if (x.object != y.object) work.push_back({p.empty() ? "" : p + "/", x.object, y.object});
      return;
    }
    if (!SameMetadata(x, y) || x.has_object != y.has_object || x.object != y.object)
      out.push_back({'M', p + suffix(y)});
  };
  if (S_ISDIR(ea->mode) && S_ISDIR(eb->mode)) {
    if (ea->object != eb->object) work.push_back({"", ea->object, eb->object});
  } else {
    compare(".", *ea, *eb);
  }
  while (!work.empty()) {
    Pending w = std::move(work.back());
    work.pop_back();
    auto ox = LoadObject(w.x);
    if (!ox.ok()) return ox.status();
    auto oy = LoadObject(w.y);
    if (!oy.ok()) return oy.status();
    const auto &ex = (*ox)->entries, &ey = (*oy)->entries;
    size_t i = 0, j = 0;
    while (i < ex.size() || j < ey.size()) {
      if (j == ey.size() || (i < ex.size() && ex[i].name < ey[j].name)) {
        out.push_back({'-', w.prefix + ex[i].name + suffix(ex[i])});
        i++;
      } else if (i == ex.size() || ey[j].name < ex[i].name) {
        out.push_back({'+', w.prefix + ey[j].name + suffix(ey[j])});
        j++;
      } else {
        compare(w.prefix + ex[i].name, ex[i], ey[j]);
        i++, j++;
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const Change& x, const Change& y) { return x.path < y.path; });
  return out;
}

Result<std::vector<Store::PathVersion>> Store::History(std::string_view path) {
  OpScope op(this);
  auto all = ListSnapshots();
  if (!all.ok()) return all.status();
  std::vector<PathVersion> out;
  std::optional<TreeEntry> last;  // in the previous (older) snapshot
  bool seen = false;
  for (const SnapshotInfo& s : *all) {
    auto e = ResolveIn(s.root, s.root_attr, path);
    if (!e.ok() && e.err() != ENOENT && e.err() != ENOTDIR) return e.status();
    std::optional<TreeEntry> now;
    if (e.ok()) now = *e;
    bool changed;
    if (!seen) changed = now.has_value();
    else if (!now || !last) changed = now.has_value() != last.has_value();
    else changed = !SameMetadata(*now, *last) || now->object != last->object;
    seen = true;
    if (changed) {
      PathVersion v;
      v.snapshot = s;
      v.present = now.has_value();
      if (now) v.entry = *now;
      out.push_back(std::move(v));
    }
    last = now;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

// Creates `name` in `dir` from a snapshot entry: directories recursively
// (an explicit stack), files by naming the same chunks (one more reference
// each), symlinks and nodes from their metadata.
Result<Attr> Store::RestoreEntry(uint64_t dir, const std::string& name, const TreeEntry& top) {
  struct Item {
    uint64_t dir;
    std::string name;
    TreeEntry e;
  };
  std::vector<Item> work{{dir, name, top}};
  std::optional<Attr> first;
  std::vector<std::pair<uint64_t, TreeEntry>> dir_times;  // set after their entries
  while (!work.empty()) {
    Item it = std::move(work.back());
    work.pop_back();
    const TreeEntry& e = it.e;
    uint32_t type = e.mode & S_IFMT;
    std::string target;
    std::shared_ptr<const TreeObject> obj;
    if (e.has_object) {
      auto o = LoadObject(e.object);
      if (!o.ok()) return o.status();
      obj = *o;
      if (type == S_IFLNK) target = obj->target;
    }
    auto a = Create(it.dir, it.name, e.mode, e.uid, e.gid, e.rdev, target);
    if (!a.ok()) return a.status();
    if (!first) first = *a;
    if (type == S_IFREG && obj) {
      for (const FileExtent& x : obj->extents) {
        auto id = ChunkIdOf(x.chunk);
        if (!id.ok()) return id.status();
        Stmt& ins = st_->insert_extent;
        ins.Bind(1, int64_t(a->ino)).Bind(2, int64_t(x.offset)).Bind(3, int64_t(x.length))
            .Bind(4, *id);
        MUSCLE_RETURN_IF_ERROR(ins.Run());
        MUSCLE_RETURN_IF_ERROR(RefChildren({*id}));
      }
      a->size = obj->size;
      a->blocks = (a->size + 511) / 512;
    }
    a->mtime_ns = e.mtime_ns;
    a->atime_ns = e.mtime_ns;
    MUSCLE_RETURN_IF_ERROR(StoreAttr(*a));
    if (type == S_IFDIR && obj) {
      dir_times.emplace_back(a->ino, e);
      for (auto c = obj->entries.rbegin(); c != obj->entries.rend(); ++c)
        work.push_back({a->ino, c->name, *c});
    }
  }
  // A directory's mtime changed as its entries were made: put it back.
  for (auto d = dir_times.rbegin(); d != dir_times.rend(); ++d) {
    auto a = LoadAttr(d->first);
    if (!a.ok()) return a.status();
    a->mtime_ns = d->second.mtime_ns;
    MUSCLE_RETURN_IF_ERROR(StoreAttr(*a));
  }
  return LoadAttr(first->ino);
}

Result<Attr> Store::Restore(std::string_view snap, std::string_view path, std::string_view dest) {
  OpScope op(this);
  if (read_only_) return Status(EROFS);
  auto s = FindSnapshot(snap);
  if (!s.ok()) return s.status();
  auto e = ResolveIn(s->root, s->root_attr, path);
  if (!e.ok()) return Status(e.err(), "'" + std::string(path) + "' is not in snapshot " + s->name);
  auto names = Names(dest.empty() ? path : dest);
  if (!names.ok()) return names.status();
  if (names->empty()) return Status(EINVAL, "cannot restore over the root; give --to DEST");
  MUSCLE_RETURN_IF_ERROR(CheckSpace(0));
  return Atomically([&]() -> Result<Attr> {
    uint64_t dir = kRootIno;
    for (size_t i = 0; i + 1 < names->size(); i++) {
      auto d = Lookup(dir, (*names)[i]);
      if (!d.ok()) return Status(d.err(), "destination directory: " + d.status().ToString());
      if (!S_ISDIR(d->mode)) return Status(ENOTDIR);
      dir = d->ino;
    }
    const std::string& leaf = names->back();
    auto existing = Lookup(dir, leaf);
    if (existing.ok()) {
      if (S_ISDIR(existing->mode))
        return Status(EEXIST, "'" + leaf + "' exists and is a directory; restore --to another path");
      MUSCLE_RETURN_IF_ERROR(Unlink(dir, leaf, false));
    } else if (existing.err() != ENOENT) {
      return existing.status();
    }
    return RestoreEntry(dir, leaf, *e);
  });
}

}  // namespace muscle::store
