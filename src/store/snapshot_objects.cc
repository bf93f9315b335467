// Tree objects of the live tree: freezing an inode (and what changed
// below it) into objects, the per-inode cache of its current object and
// its invalidation, and loading and resolving objects (see store.h,
// "snapshots", and tree_object.h).
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
  naming_->Name(bytes.data(), bytes.size(), h.data());
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


// Where the chunk named `hash` is, and its size.
Result<std::pair<ChunkLocation, uint64_t>> Store::FindChunk(const ObjectHash& hash) {
  Stmt& q = st_->chunk_by_hash;
  Stmt::Scope scope(q);
  q.Bind(1, HashView(hash), true);
  if (!q.Step()) return q.failed() ? q.Error("chunk") : Status(ESTALE, "chunk is gone");
  return std::make_pair(ChunkLocation{uint64_t(q.Int(1)), uint64_t(q.Int(2))}, uint64_t(q.Int(3)));
}

Status Store::ReadChunkOf(const ObjectHash& hash, uint64_t offset, size_t len, char* out) {
  OpScope op(this);
  auto c = FindChunk(hash);
  if (!c.ok()) return c.status();
  return chunks_->Read(c->first, c->second, offset, len, out, hash.data());
}

Result<std::shared_ptr<const TreeObject>> Store::LoadObject(const ObjectHash& hash) {
  OpScope op(this);
  if (!object_cache_) object_cache_ = std::make_unique<ObjectCache>();
  if (auto o = object_cache_->Find(hash)) return o;
  auto c = FindChunk(hash);
  if (!c.ok()) return c.status();
  uint64_t size = c->second;
  std::string bytes(size, '\0');
  MUSCLE_RETURN_IF_ERROR(chunks_->Read(c->first, size, 0, size, bytes.data(), hash.data()));
  auto o = DecodeObject(bytes);
  if (!o.ok()) return o.status();
  auto p = std::make_shared<const TreeObject>(std::move(*o));
  object_cache_->Add(hash, p, size + sizeof(TreeObject));
  return p;
}

Result<TreeEntry> Store::ResolveIn(const ObjectHash& dir, const Attr& dir_attr,
                                   std::string_view path) {
  OpScope op(this);
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

}  // namespace muscle::store
