// The namespace: inodes and their attributes, directory entries (lookup,
// create, link, unlink, rename, listing), symlinks, xattrs, statfs, and
// the references that keep unlinked-but-open files alive until their last
// fid is gone. Each operation runs Atomically (a savepoint) in the open
// transaction; data lives in file_data.cc, transactions in transaction.cc.
#include "store/store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/log.h"
#include "store/snapshot_internal.h"
#include "store/statements.h"
#include "store/vfs.h"

namespace muscle::store {

namespace {

bool IsDir(uint32_t mode) { return S_ISDIR(mode); }

}  // namespace

Status Store::CheckName(std::string_view name) {
  if (name.empty() || name == "." || name == "..") return Status(EINVAL);
  if (name.size() > kMaxNameLen) return Status(ENAMETOOLONG);
  if (name.find('/') != std::string_view::npos ||
      name.find('\0') != std::string_view::npos)
    return Status(EINVAL);
  return Status::Ok();
}

Result<Attr> Store::LoadAttr(uint64_t ino) {
  Stmt& q = st_->get_inode;
  Stmt::Scope scope(q);
  q.Bind(1, int64_t(ino));
  // A number no row has is a file that was removed or rolled back while a
  // fid still named it: a stale handle, not a missing name.
  if (!q.Step()) return q.failed() ? q.Error("get inode") : Status(ESTALE);
  Attr a;
  a.ino = ino;
  a.mode = uint32_t(q.Int(0));
  a.uid = uint32_t(q.Int(1));
  a.gid = uint32_t(q.Int(2));
  a.nlink = uint64_t(q.Int(3));
  a.rdev = uint64_t(q.Int(4));
  a.size = uint64_t(q.Int(5));
  a.atime_ns = q.Int(6);
  a.mtime_ns = q.Int(7);
  a.ctime_ns = q.Int(8);
  a.btime_ns = q.Int(9);
  a.version = uint64_t(q.Int(10));
  a.blocks = (a.size + 511) / 512;
  return a;
}

Status Store::StoreAttr(const Attr& a) {
  Stmt& q = st_->put_inode;
  q.Bind(1, int64_t(a.mode)).Bind(2, int64_t(a.uid)).Bind(3, int64_t(a.gid))
      .Bind(4, int64_t(a.nlink)).Bind(5, int64_t(a.rdev))
      .Bind(6, int64_t(a.size)).Bind(7, a.atime_ns).Bind(8, a.mtime_ns)
      .Bind(9, a.ctime_ns).Bind(10, int64_t(a.version)).Bind(11, int64_t(a.ino));
  return q.Run();
}

Result<Attr> Store::GetAttr(uint64_t ino) {
  OpScope op(this);
  return LoadAttr(ino);
}

Result<std::pair<int64_t, uint64_t>> Store::LookupEntry(uint64_t dir,
                                                        std::string_view name) {
  Stmt& q = st_->lookup;
  Stmt::Scope scope(q);
  q.Bind(1, int64_t(dir)).Bind(2, name, true);
  if (!q.Step()) return q.failed() ? q.Error("lookup") : Status(ENOENT);
  return std::make_pair(q.Int(0), uint64_t(q.Int(1)));
}

Result<Attr> Store::Lookup(uint64_t dir, std::string_view name) {
  OpScope op(this);
  if (name == ".") return LoadAttr(dir);
  if (name == "..") {
    auto p = Parent(dir);
    if (!p.ok()) return p.status();
    return LoadAttr(*p);
  }
  auto e = LookupEntry(dir, name);
  if (!e.ok()) return e.status();
  return LoadAttr(e->second);
}

Result<uint64_t> Store::Parent(uint64_t dir) {
  OpScope op(this);
  Stmt& q = st_->get_parent;
  Stmt::Scope scope(q);
  q.Bind(1, int64_t(dir));
  if (!q.Step()) return q.failed() ? q.Error("parent") : Status(ENOENT);
  return uint64_t(q.Int(0));
}

// Bumps a directory's version and times after its entries changed.
Status Store::TouchDir(uint64_t dir, int nlink_delta) {
  auto a = LoadAttr(dir);
  if (!a.ok()) return a.status();
  a->mtime_ns = a->ctime_ns = NowNs();
  a->version++;
  a->nlink = uint64_t(int64_t(a->nlink) + nlink_delta);
  return StoreAttr(*a);
}

Result<Attr> Store::Create(uint64_t dir, std::string_view name, uint32_t mode,
                           uint32_t uid, uint32_t gid, uint64_t rdev,
                           std::string_view symlink_target) {
  OpScope op(this);
  MUSCLE_RETURN_IF_ERROR(CheckName(name));
  if (S_ISLNK(mode) && (symlink_target.empty() || symlink_target.size() > 4096))
    return Status(symlink_target.empty() ? ENOENT : ENAMETOOLONG);
  MUSCLE_RETURN_IF_ERROR(CheckSpace(0));
  auto r = Atomically([&]() -> Result<Attr> {
    auto d = LoadAttr(dir);
    if (!d.ok()) return d.status();
    if (!IsDir(d->mode)) return Status(ENOTDIR);
    if (d->nlink == 0) return Status(ENOENT);  // removed directory
    auto existing = LookupEntry(dir, name);
    if (existing.ok()) return Status(EEXIST);
    if (existing.err() != ENOENT) return existing.status();
    if ((mode & S_IFMT) == 0) mode |= S_IFREG;
    int64_t now = NowNs();
    Attr a;
    a.mode = mode;
    a.uid = uid;
    a.gid = gid;
    a.nlink = IsDir(mode) ? 2 : 1;
    a.rdev = rdev;
    a.size = S_ISLNK(mode) ? symlink_target.size() : 0;
    a.atime_ns = a.mtime_ns = a.ctime_ns = a.btime_ns = now;
    a.version = 1;
    auto ino = AllocateIno();
    if (!ino.ok()) return ino.status();
    a.ino = *ino;
    Stmt& ins = st_->insert_inode;
    ins.Bind(1, int64_t(IsDir(mode) ? dir : 0)).Bind(2, int64_t(a.mode))
        .Bind(3, int64_t(uid)).Bind(4, int64_t(gid)).Bind(5, int64_t(a.nlink))
        .Bind(6, int64_t(rdev)).Bind(7, int64_t(a.size)).Bind(8, now)
        .Bind(9, now).Bind(10, now).Bind(11, now);
    if (S_ISLNK(mode)) ins.Bind(12, symlink_target); else ins.BindNull(12);
    ins.Bind(13, int64_t(a.ino));
    MUSCLE_RETURN_IF_ERROR(ins.Run());
    Stmt& de = st_->insert_dirent;
    de.Bind(1, int64_t(dir)).Bind(2, name).Bind(3, int64_t(a.ino));
    MUSCLE_RETURN_IF_ERROR(de.Run());
    MUSCLE_RETURN_IF_ERROR(TouchDir(dir, IsDir(mode) ? 1 : 0));
    return a;
  });
  if (r.ok()) RedoCreate(dir, name, *r, symlink_target);
  return r;
}

Result<Attr> Store::Link(uint64_t dir, std::string_view name, uint64_t ino) {
  OpScope op(this);
  MUSCLE_RETURN_IF_ERROR(CheckName(name));
  MUSCLE_RETURN_IF_ERROR(CheckSpace(0));
  auto r = Atomically([&]() -> Result<Attr> {
    auto d = LoadAttr(dir);
    if (!d.ok()) return d.status();
    if (!IsDir(d->mode)) return Status(ENOTDIR);
    auto a = LoadAttr(ino);
    if (!a.ok()) return a.status();
    if (IsDir(a->mode)) return Status(EPERM);
    if (a->nlink == 0) return Status(ENOENT);
    if (LookupEntry(dir, name).ok()) return Status(EEXIST);
    Stmt& de = st_->insert_dirent;
    de.Bind(1, int64_t(dir)).Bind(2, name).Bind(3, int64_t(ino));
    MUSCLE_RETURN_IF_ERROR(de.Run());
    a->nlink++;
    a->ctime_ns = NowNs();
    a->version++;
    MUSCLE_RETURN_IF_ERROR(StoreAttr(*a));
    MUSCLE_RETURN_IF_ERROR(TouchDir(dir, 0));
    return *a;
  });
  if (r.ok()) RedoLink(dir, name, ino, r->ctime_ns);
  return r;
}

// Decrements the link count of an inode that just lost a directory entry.
// A file still open when its last name goes keeps `from_dir` as its
// parent: where a rebind after a restart checks it (OrphanDir).
Status Store::DropLink(uint64_t ino, bool is_dir, uint64_t from_dir) {
  auto a = LoadAttr(ino);
  if (!a.ok()) return a.status();
  a->nlink = is_dir ? 0 : (a->nlink > 0 ? a->nlink - 1 : 0);
  a->ctime_ns = NowNs();
  a->version++;
  MUSCLE_RETURN_IF_ERROR(StoreAttr(*a));
  if (a->nlink == 0 && !is_dir && (gate_->Referenced(ino) || replaying_)) {
    Stmt& sp = st_->set_parent;
    sp.Bind(1, int64_t(from_dir)).Bind(2, int64_t(ino));
    MUSCLE_RETURN_IF_ERROR(sp.Run());
  }
  return PurgeIfUnused(ino);
}

Result<uint64_t> Store::OrphanDir(uint64_t ino) {
  OpScope op(this);
  // Only the files held since Open (orphan_hold): a file unlinked while the
  // server runs is bound only by the fids that had it.
  if (std::find(orphans_.begin(), orphans_.end(), ino) == orphans_.end()) return Status(ENOENT);
  return Parent(ino);
}

Status Store::PurgeIfUnused(uint64_t ino) {
  auto a = LoadAttr(ino);
  if (!a.ok()) return a.status();
  // Replay keeps every file without names: its client may come back for it.
  if (a->nlink > 0 || keep_orphans_ || replaying_ || !gate_->ClaimUnreferenced(ino)) return Status::Ok();
  return PurgeInode(ino);
}

Status Store::PurgeInode(uint64_t ino) {
  if (ino == kRootIno) return Status::Ok();
  auto it = dirty_.find(ino);
  if (it != dirty_.end()) {
    SetAside(ino, std::move(it->second));
    dirty_.erase(it);
  }
  MUSCLE_RETURN_IF_ERROR(DeleteExtentsFrom(ino, 0));
  MUSCLE_RETURN_IF_ERROR(DropCachedObject(ino));
  Stmt& dx = st_->delete_xattrs;
  dx.Bind(1, int64_t(ino));
  MUSCLE_RETURN_IF_ERROR(dx.Run());
  Stmt& di = st_->delete_inode;
  di.Bind(1, int64_t(ino));
  return di.Run();
}

// ENOTEMPTY when the directory has entries (what rmdir and renaming over a
// directory require).
Status Store::CheckEmptyDir(uint64_t dir) {
  Stmt& any = st_->dir_has_entries;
  Stmt::Scope scope(any);
  any.Bind(1, int64_t(dir));
  if (any.Step()) return Status(ENOTEMPTY);
  return any.failed() ? any.Error("directory entries") : Status::Ok();
}

Status Store::Unlink(uint64_t dir, std::string_view name, bool remove_dir) {
  OpScope op(this);
  if (name == "." ) return Status(EINVAL);
  if (name == "..") return Status(ENOTEMPTY);
  MUSCLE_RETURN_IF_ERROR(CheckName(name));
  auto r = Atomically([&]() -> Status {
    auto e = LookupEntry(dir, name);
    if (!e.ok()) return e.status();
    auto a = LoadAttr(e->second);
    if (!a.ok()) return a.status();
    bool is_dir = IsDir(a->mode);
    if (remove_dir && !is_dir) return Status(ENOTDIR);
    if (!remove_dir && is_dir) return Status(EISDIR);
    if (is_dir) MUSCLE_RETURN_IF_ERROR(CheckEmptyDir(a->ino));
    Stmt& del = st_->delete_dirent;
    del.Bind(1, e->first);
    MUSCLE_RETURN_IF_ERROR(del.Run());
    MUSCLE_RETURN_IF_ERROR(TouchDir(dir, is_dir ? -1 : 0));
    return DropLink(a->ino, is_dir, dir);
  });
  if (r.ok()) RedoUnlink(dir, name, remove_dir);
  return r;
}

Status Store::Rename(uint64_t old_dir, std::string_view old_name,
                     uint64_t new_dir, std::string_view new_name) {
  OpScope op(this);
  MUSCLE_RETURN_IF_ERROR(CheckName(old_name));
  MUSCLE_RETURN_IF_ERROR(CheckName(new_name));
  auto r = Atomically([&]() -> Status {
    auto nd = LoadAttr(new_dir);
    if (!nd.ok()) return nd.status();
    if (!IsDir(nd->mode)) return Status(ENOTDIR);
    if (nd->nlink == 0) return Status(ENOENT);
    auto src = LookupEntry(old_dir, old_name);
    if (!src.ok()) return src.status();
    auto sa = LoadAttr(src->second);
    if (!sa.ok()) return sa.status();
    bool src_dir = IsDir(sa->mode);
    if (src_dir) {
      // A directory may not move below itself: walk from the target up to
      // the root, however deep. A walk that never reaches the root means
      // the tree is already damaged.
      uint64_t p = new_dir;
      for (uint64_t steps = 0; p != kRootIno; steps++) {
        if (p == sa->ino) return Status(EINVAL);
        if (steps > (uint64_t(1) << 32)) return Status(EIO, "directory cycle above inode " + std::to_string(new_dir));
        auto up = Parent(p);
        if (!up.ok()) return up.status();
        p = *up;
      }
    }
    auto dst = LookupEntry(new_dir, new_name);
    if (dst.ok()) {
      if (dst->second == src->second) return Status::Ok();
      auto da = LoadAttr(dst->second);
      if (!da.ok()) return da.status();
      bool dst_dir = IsDir(da->mode);
      if (src_dir && !dst_dir) return Status(ENOTDIR);
      if (!src_dir && dst_dir) return Status(EISDIR);
      if (dst_dir) MUSCLE_RETURN_IF_ERROR(CheckEmptyDir(da->ino));
      Stmt& del = st_->delete_dirent;
      del.Bind(1, dst->first);
      MUSCLE_RETURN_IF_ERROR(del.Run());
      if (dst_dir) MUSCLE_RETURN_IF_ERROR(TouchDir(new_dir, -1));
      MUSCLE_RETURN_IF_ERROR(DropLink(da->ino, dst_dir, new_dir));
    } else if (dst.err() != ENOENT) {
      return dst.status();
    }
    Stmt& mv = st_->move_dirent;
    mv.Bind(1, int64_t(new_dir)).Bind(2, new_name).Bind(3, src->first);
    MUSCLE_RETURN_IF_ERROR(mv.Run());
    sa->ctime_ns = NowNs();
    sa->version++;
    MUSCLE_RETURN_IF_ERROR(StoreAttr(*sa));
    if (src_dir && old_dir != new_dir) {
      Stmt& sp = st_->set_parent;
      sp.Bind(1, int64_t(new_dir)).Bind(2, int64_t(sa->ino));
      MUSCLE_RETURN_IF_ERROR(sp.Run());
    }
    int delta = (src_dir && old_dir != new_dir) ? 1 : 0;
    MUSCLE_RETURN_IF_ERROR(TouchDir(old_dir, -delta));
    if (new_dir != old_dir) MUSCLE_RETURN_IF_ERROR(TouchDir(new_dir, delta));
    return Status::Ok();
  });
  if (r.ok()) RedoRename(old_dir, old_name, new_dir, new_name);
  return r;
}

Result<Attr> Store::SetAttr(uint64_t ino, const SetAttrRequest& req) {
  OpScope op(this);
  auto r = Atomically([&]() -> Result<Attr> {
    auto a = LoadAttr(ino);
    if (!a.ok()) return a.status();
    int64_t now = NowNs();
    if (req.set_mode) a->mode = (a->mode & S_IFMT) | (req.mode & 07777);
    if (req.set_uid) a->uid = req.uid;
    if (req.set_gid) a->gid = req.gid;
    if (req.set_atime) a->atime_ns = req.atime_ns;
    if (req.set_mtime) a->mtime_ns = req.mtime_ns;
    if (req.set_size) {
      if (IsDir(a->mode)) return Status(EISDIR);
      if (!S_ISREG(a->mode)) return Status(EINVAL);
      if (req.size > (uint64_t(1) << 50)) return Status(EFBIG);
      if (req.size != a->size) {
        MUSCLE_RETURN_IF_ERROR(TruncateData(ino, a->size, req.size));
        a->size = req.size;
        if (!req.set_mtime) a->mtime_ns = now;
      }
    }
    a->ctime_ns = now;
    a->version++;
    MUSCLE_RETURN_IF_ERROR(StoreAttr(*a));
    return *a;
  });
  if (r.ok()) RedoSetAttr(ino, req, r->ctime_ns);
  return r;
}

Result<std::pair<uint64_t, std::string>> Store::FindName(uint64_t ino) {
  OpScope op(this);
  Stmt& q = st_->find_name;
  Stmt::Scope scope(q);
  q.Bind(1, int64_t(ino));
  if (!q.Step()) return q.failed() ? q.Error("find name") : Status(ENOENT);
  return std::make_pair(uint64_t(q.Int(0)), std::string(q.Blob(1)));
}

Result<std::string> Store::ReadLink(uint64_t ino) {
  OpScope op(this);
  Stmt& q = st_->get_target;
  Stmt::Scope scope(q);
  q.Bind(1, int64_t(ino));
  if (!q.Step()) return q.failed() ? q.Error("readlink") : Status(ENOENT);
  if (q.IsNull(0)) return Status(EINVAL);
  return std::string(q.Blob(0));
}

Result<Attr> Store::Attach(std::string_view aname, const auth::AccessRule*) {
  OpScope op(this);
  auto cur = LoadAttr(kRootIno);
  size_t i = 0;
  while (cur.ok() && i < aname.size()) {
    size_t j = aname.find('/', i);
    if (j == std::string_view::npos) j = aname.size();
    std::string_view name = aname.substr(i, j - i);
    i = j + 1;
    if (name.empty() || name == ".") continue;
    if (name == "..") return Status(EACCES);
    if (!IsDir(cur->mode)) return Status(ENOTDIR);
    cur = Lookup(cur->ino, name);
  }
  if (cur.ok() && !IsDir(cur->mode)) return Status(ENOTDIR);
  return cur;
}

Status Store::ReadDir(uint64_t dir, uint64_t cookie,
                      const std::function<bool(const DirEntry&)>& emit) {
  OpScope op(this);
  auto d = LoadAttr(dir);
  if (!d.ok()) return d.status();
  if (!IsDir(d->mode)) return Status(ENOTDIR);
  // Cookies: 1 = after ".", 2 = after "..", 2+id = after dirent id.
  // Past every possible id (ids are int64): nothing left to list.
  if (cookie > uint64_t(INT64_MAX) + 2) return Status::Ok();
  if (cookie == 0 && !emit({1, ".", *d})) return Status::Ok();
  if (cookie <= 1) {
    auto p = Parent(dir);
    if (!p.ok()) return p.status();
    auto pa = LoadAttr(*p);
    if (!pa.ok()) return pa.status();
    if (!emit({2, "..", *pa})) return Status::Ok();
  }
  Stmt& q = st_->list_dir;
  Stmt::Scope scope(q);
  q.Bind(1, int64_t(dir)).Bind(2, int64_t(cookie > 2 ? cookie - 2 : 0)).Bind(3, int64_t(-1));
  DirEntry e;  // reused: one name buffer for the whole listing
  while (q.Step()) {
    e.cookie = uint64_t(q.Int(0)) + 2;
    e.name.assign(q.Blob(1));
    e.attr.ino = uint64_t(q.Int(2));
    e.attr.mode = uint32_t(q.Int(3));
    e.attr.version = uint64_t(q.Int(4));
    if (!emit(e)) return Status::Ok();
  }
  if (q.failed()) return q.Error("readdir");
  return Status::Ok();
}

Result<StatFs> Store::GetStatFs() {
  OpScope op(this);
  StatFs s;
  struct statvfs v;
  std::string dir = memory_ ? "/" : path_.substr(0, path_.rfind('/') + 1);
  if (dir.empty()) dir = ".";
  if (statvfs(dir.c_str(), &v) == 0) {
    s.bsize = v.f_frsize;
    s.blocks = v.f_blocks;
    s.bfree = v.f_bfree;
    s.bavail = v.f_bavail;
  }
  Stmt& q = st_->count_inodes;
  Stmt::Scope scope(q);
  if (q.Step()) s.files = uint64_t(q.Int(0));
  s.ffree = (uint64_t(1) << 40) - s.files;
  s.files += s.ffree;
  return s;
}

Result<std::string> Store::GetXattr(uint64_t ino, std::string_view name) {
  OpScope op(this);
  Stmt& q = st_->get_xattr;
  Stmt::Scope scope(q);
  q.Bind(1, int64_t(ino)).Bind(2, name, true);
  if (!q.Step()) return q.failed() ? q.Error("getxattr") : Status(ENODATA);
  return std::string(q.Blob(0));
}

Result<std::string> Store::ListXattr(uint64_t ino) {
  OpScope op(this);
  Stmt& q = st_->list_xattr;
  Stmt::Scope scope(q);
  q.Bind(1, int64_t(ino));
  std::string out;
  while (q.Step()) {
    out += q.Blob(0);
    out += '\0';
  }
  if (q.failed()) return q.Error("listxattr");
  return out;
}

Status Store::SetXattr(uint64_t ino, std::string_view name,
                       std::string_view value, uint32_t flags) {
  OpScope op(this);
  if (name.empty() || name.size() > kMaxNameLen) return Status(ERANGE);
  if (value.size() > kMaxXattrValue) return Status(E2BIG);
  MUSCLE_RETURN_IF_ERROR(CheckSpace(value.size()));
  auto r = Atomically([&]() -> Status {
    auto a = LoadAttr(ino);
    if (!a.ok()) return a.status();
    auto old = GetXattr(ino, name);
    if (!old.ok() && old.err() != ENODATA) return old.status();
    bool exists = old.ok();
    if ((flags & 1) && exists) return Status(EEXIST);
    if ((flags & 2) && !exists) return Status(ENODATA);
    Stmt& q = st_->put_xattr;
    q.Bind(1, int64_t(ino)).Bind(2, name).Bind(3, value);
    MUSCLE_RETURN_IF_ERROR(q.Run());
    a->ctime_ns = NowNs();
    a->version++;
    return StoreAttr(*a);
  });
  if (r.ok()) RedoSetXattr(ino, name, value, flags);
  return r;
}

Status Store::RemoveXattr(uint64_t ino, std::string_view name) {
  OpScope op(this);
  auto r = Atomically([&]() -> Status {
    if (!GetXattr(ino, name).ok()) return Status(ENODATA);
    Stmt& q = st_->delete_xattr;
    q.Bind(1, int64_t(ino)).Bind(2, name);
    MUSCLE_RETURN_IF_ERROR(q.Run());
    auto a = LoadAttr(ino);
    if (!a.ok()) return a.status();
    a->ctime_ns = NowNs();
    a->version++;
    return StoreAttr(*a);
  });
  if (r.ok()) RedoRemoveXattr(ino, name);
  return r;
}

void Store::Ref(uint64_t ino) {
  gate_->Ref(ino);
}

Status Store::Unref(uint64_t ino) {
  OpScope op(this);
  if (!gate_->Unref(ino)) return Status::Ok();
  return Atomically([&]() -> Status {
    Status s = FlushFile(ino);
    if (!s.ok() && s.err() != ESTALE) return s;
    s = PurgeIfUnused(ino);
    return s.err() == ESTALE ? Status::Ok() : s;
  });
}

}  // namespace muscle::store
