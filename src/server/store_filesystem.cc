#include "server/store_filesystem.h"

#include <cassert>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cstdint>

#include "9p/wire.h"
#include "server/stat_dialects.h"

namespace muscle::server {

using namespace muscle::p9;
using store::Attr;
using store::Store;

Qid QidOf(const Attr& a) {
  Qid q;
  q.type = S_ISDIR(a.mode) ? kQtDir : S_ISLNK(a.mode) ? kQtSymlink : kQtFile;
  q.version = uint32_t(a.version);
  q.path = a.ino;
  return q;
}

namespace {

constexpr uint32_t kV9fsMagic = 0x01021997;
constexpr uint32_t kAtRemoveDir = 0x200;
constexpr int64_t kNsPerSec = 1000000000;

// Store times are signed nanoseconds since 1970; 9P carries seconds and
// nanoseconds as u64 (Linux sends the signed tv_sec, so times before 1970
// arrive as two's complement). Floor division keeps nsec in [0, 1e9).
void SplitTime(int64_t ns, uint64_t& sec, uint64_t& nsec) {
  int64_t s = ns / kNsPerSec, n = ns % kNsPerSec;
  if (n < 0) {
    s -= 1;
    n += kNsPerSec;
  }
  sec = uint64_t(s);
  nsec = uint64_t(n);
}

// The inverse; false (EINVAL) when nsec is not below 1e9 or the time does
// not fit in int64 nanoseconds (about 1678-2262).
bool JoinTime(uint64_t sec, uint64_t nsec, int64_t& ns) {
  if (nsec >= uint64_t(kNsPerSec)) return false;
  int64_t scaled;
  if (__builtin_mul_overflow(int64_t(sec), kNsPerSec, &scaled)) return false;
  return !__builtin_add_overflow(scaled, int64_t(nsec), &ns);
}

Rgetattr GetattrOf(const Attr& a) {
  Rgetattr r;
  r.valid = kGetattrBasic | 0x800;  // basic fields + btime
  r.qid = QidOf(a);
  r.mode = a.mode;
  r.uid = a.uid;
  r.gid = a.gid;
  r.nlink = a.nlink;
  r.rdev = a.rdev;
  r.size = a.size;
  r.blksize = 128 * 1024;
  r.blocks = a.blocks;
  SplitTime(a.atime_ns, r.atime_sec, r.atime_nsec);
  SplitTime(a.mtime_ns, r.mtime_sec, r.mtime_nsec);
  SplitTime(a.ctime_ns, r.ctime_sec, r.ctime_nsec);
  SplitTime(a.btime_ns, r.btime_sec, r.btime_nsec);
  return r;
}

FsReply Err(int e) { return FsReply{Rlerror{uint32_t(e)}, {}}; }
FsReply Err(const Status& s) { return Err(s.err() ? s.err() : EIO); }

// Walks `path` (slash-separated) from the root; used for attach names.
Result<Attr> WalkPath(Store& s, const std::string& path) {
  auto cur = s.GetAttr(store::kRootIno);
  size_t i = 0;
  while (cur.ok() && i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    std::string name = path.substr(i, j - i);
    i = j + 1;
    if (name.empty() || name == ".") continue;
    if (name == "..") return Status(EACCES);
    if (!S_ISDIR(cur->mode)) return Status(ENOTDIR);
    cur = s.Lookup(cur->ino, name);
  }
  return cur;
}

FsReply Walk(Store& s, FsRequest& req, const Twalk& m, ReadTrace* trace) {
  Rwalk r;
  uint64_t cur = req.ino;
  if (trace) trace->inos.push_back(cur);
  for (const std::string& name : m.wnames) {
    auto d = s.GetAttr(cur);
    bool at_root = cur == store::kRootIno || cur == req.root_ino;
    Result<Attr> next = d.ok() ? (S_ISDIR(d->mode) ? (name == ".." && at_root
                                                         ? d
                                                         : s.Lookup(cur, name))
                                                   : Result<Attr>(Status(ENOTDIR)))
                               : d;
    if (!next.ok()) {
      if (r.wqids.empty()) return Err(next.status());
      return FsReply{std::move(r), {}};
    }
    r.wqids.push_back(QidOf(*next));
    cur = next->ino;
    if (trace) trace->inos.push_back(cur);
  }
  if (m.wnames.empty()) {
    auto a = s.GetAttr(cur);
    if (!a.ok()) return Err(a.status());
  }
  if (trace) {
    // The new fid's reference is taken when the gate accepts the result.
    trace->change = store::ReadGate::RefChange::kRef;
    trace->ref_ino = cur;
    return FsReply{std::move(r), {}};
  }
  s.Ref(cur);
  if (m.newfid == m.fid) s.Unref(req.ino);
  return FsReply{std::move(r), {}};
}

uint8_t DirentType(uint32_t mode) { return uint8_t((mode & S_IFMT) >> 12); }

FsReply ReadDir(Store& s, FsRequest& req, const Treaddir& m, ReadTrace* trace) {
  // Entries are encoded as the store produces them, until the next one
  // would not fit in count bytes (qid[13] offset[8] type[1] name[s]).
  // The store's cookies are 2 + a dirent id (an int64), so no cookie is
  // above INT64_MAX + 2; larger offsets (which would wrap to negative ids
  // in the store and restart the listing) are past the end.
  constexpr uint64_t kPastEveryCookie = uint64_t(INT64_MAX) + 2;
  uint64_t offset = std::min(m.offset, kPastEveryCookie);
  Rreaddir r;
  WireWriter w(r.data.bytes);
  bool too_small = false;  // not even the next entry fits
  Status st = s.ReadDir(req.ino, offset, [&](const store::DirEntry& e) {
    if (w.size() + 24 + e.name.size() > m.count) {
      too_small = w.size() == 0;
      return false;
    }
    if (trace) trace->inos.push_back(e.attr.ino);  // its qid version is read
    Qid q = QidOf(e.attr);
    w.u8(q.type);
    w.u32(q.version);
    w.u64(q.path);
    w.u64(e.cookie);
    w.u8(DirentType(e.attr.mode));
    w.str(e.name);
    return true;
  });
  if (!st.ok()) return Err(st);
  // An empty reply means the end of the directory; when the next entry
  // exists but does not fit, say so (as getdents does) instead.
  if (too_small) return Err(EINVAL);
  return FsReply{std::move(r), {}};
}

FsReply SetAttr(Store& s, FsRequest& req, const Tsetattr& m) {
  store::SetAttrRequest a;
  a.set_mode = m.valid & kSetMode;
  a.mode = m.mode;
  a.set_uid = m.valid & kSetUid;
  a.uid = m.uid;
  a.set_gid = m.valid & kSetGid;
  a.gid = m.gid;
  a.set_size = m.valid & kSetSize;
  a.size = m.size;
  int64_t now = store::NowNs();
  if (m.valid & kSetAtime) {
    a.set_atime = true;
    a.atime_ns = now;
    if ((m.valid & kSetAtimeSet) && !JoinTime(m.atime_sec, m.atime_nsec, a.atime_ns))
      return Err(EINVAL);
  }
  if (m.valid & kSetMtime) {
    a.set_mtime = true;
    a.mtime_ns = now;
    if ((m.valid & kSetMtimeSet) && !JoinTime(m.mtime_sec, m.mtime_nsec, a.mtime_ns))
      return Err(EINVAL);
  }
  auto r = s.SetAttr(req.ino, a);
  if (!r.ok()) return Err(r.status());
  return FsReply{Rsetattr{}, {}};
}

// Xattr names are C strings to every client (the list is NUL-separated):
// one with a NUL byte could be neither named nor listed.
bool XattrNameOk(const std::string& name) { return name.find('\0') == std::string::npos; }

template <class R>
FsReply Created(Result<Attr> a) {
  if (!a.ok()) return Err(a.status());
  R r;
  r.qid = QidOf(*a);
  return FsReply{r, {}};
}

// Attach names of the views: "@snapshots" (every snapshot a directory),
// "@snapshots/NAME[/path]" (one snapshot, or a directory in it; NAME may
// be a root hash or a unique prefix of it) and "@ctl" (a control file).
FsReply AttachView(Store& s, const FsRequest::Rule& rule, const std::string& aname) {
  Result<Attr> a = Status(ENOENT);
  if (aname == "@ctl") {
    std::string context;
    context += rule.may_snapshot ? 'S' : '-';
    context += rule.read_only ? 'R' : '-';
    context += rule.root;
    a = s.NewControlFile(std::move(context));
  } else if (aname == "@snapshots" || aname.rfind("@snapshots/", 0) == 0) {
    a = s.SnapshotsRoot(rule.root);
    size_t i = sizeof("@snapshots") - 1;
    while (a.ok() && i < aname.size()) {
      size_t j = aname.find('/', i + 1);
      if (j == std::string::npos) j = aname.size();
      std::string name = aname.substr(i + 1, j - i - 1);
      i = j;
      if (name.empty() || name == ".") continue;
      if (name == "..") return Err(EACCES);
      a = s.Lookup(a->ino, name);
    }
    if (a.ok() && !S_ISDIR(a->mode)) return Err(ENOTDIR);
  }
  if (!a.ok()) return Err(a.status());
  s.Ref(a->ino);
  return FsReply{Rattach{QidOf(*a)}, {}};
}

}  // namespace

bool StoreFileSystem::ForReaders(const store::ReadGate& gate, const FsRequest& req) {
  const Message& msg = req.msg;
  if (Store::IsView(req.ino)) return false;  // views live on the writer
  bool reads = false;
  if (std::get_if<Tgetattr>(&msg) || std::get_if<Tread>(&msg) || std::get_if<Treaddir>(&msg) ||
      std::get_if<Treadlink>(&msg) || std::get_if<Txattrwalk>(&msg)) {
    reads = true;
  } else if (auto* m = std::get_if<Twalk>(&msg)) {
    reads = m->newfid != m->fid;  // in place, the old inode's reference goes
  } else if (auto* m = std::get_if<Tlopen>(&msg)) {
    reads = !(m->flags & O_TRUNC) || (m->flags & O_ACCMODE) == O_RDONLY;
  } else if (std::get_if<Tclunk>(&msg)) {
    reads = !req.xattr;
  } else if (std::get_if<Tstatfs>(&msg)) {
    return gate.AllClean();
  }
  // A dirty inode's reads belong to the writer (which also holds its
  // buffered data); asking a reader first would only waste its work.
  return reads && !gate.IsDirty(req.ino);
}

FsReply StoreFileSystem::Execute(Store& s, FsRequest& req, ReadTrace* trace) {
  Message& msg = req.msg;
  if (trace) {
    trace->inos.push_back(req.ino);
    if (std::get_if<Tstatfs>(&msg)) trace->all = true;
    if (std::get_if<Tclunk>(&msg)) {
      // Dropping a reference needs the writer only for a file that may go
      // away with it (unlinked) or holds buffered writes (then dirty).
      auto a = s.GetAttr(req.ino);
      trace->change = a.ok() && a->nlink > 0 ? store::ReadGate::RefChange::kUnrefLinked
                                             : store::ReadGate::RefChange::kUnref;
      trace->ref_ino = req.ino;
      return FsReply{Rclunk{}, {}};
    }
  }
  if (auto* m = std::get_if<Tattach>(&msg); m && req.rule) return AttachView(s, *req.rule, m->aname);
  if (Store::IsView(req.ino) && !s.IsControlFile(req.ino)) {
    // Snapshots are read-only, whatever the mode bits say.
    if (auto* m = std::get_if<Tlopen>(&msg); m && ((m->flags & O_ACCMODE) != O_RDONLY || (m->flags & O_TRUNC)))
      return Err(EROFS);
    if (auto* m = std::get_if<Topen>(&msg); m && ((m->mode & 3) != kORead && (m->mode & 3) != kOExec))
      return Err(EROFS);
    if (auto* m = std::get_if<Topen>(&msg); m && (m->mode & (kOTrunc | kORclose))) return Err(EROFS);
  }
  if (auto* m = std::get_if<Tattach>(&msg)) {
    auto a = WalkPath(s, m->aname);
    if (!a.ok()) return Err(a.status());
    if (!S_ISDIR(a->mode)) return Err(ENOTDIR);
    s.Ref(a->ino);
    return FsReply{Rattach{QidOf(*a)}, {}};
  }
  if (auto* m = std::get_if<Twalk>(&msg)) return Walk(s, req, *m, trace);
  if (std::get_if<Tgetattr>(&msg)) {
    auto a = s.GetAttr(req.ino);
    if (!a.ok()) return Err(a.status());
    return FsReply{GetattrOf(*a), {}};
  }
  if (auto* m = std::get_if<Tsetattr>(&msg)) return SetAttr(s, req, *m);
  if (auto* m = std::get_if<Tlopen>(&msg)) {
    auto a = s.GetAttr(req.ino);
    if (!a.ok()) return Err(a.status());
    uint32_t acc = m->flags & O_ACCMODE;
    if (S_ISDIR(a->mode) && acc != O_RDONLY) return Err(EISDIR);
    if ((m->flags & O_TRUNC) && S_ISREG(a->mode) && acc != O_RDONLY && a->size) {
      store::SetAttrRequest t;
      t.set_size = true;
      t.size = 0;
      a = s.SetAttr(req.ino, t);
      if (!a.ok()) return Err(a.status());
    }
    return FsReply{Rlopen{QidOf(*a), 0}, {}};
  }
  if (auto* m = std::get_if<Tlcreate>(&msg)) {
    auto a = s.Create(req.ino, m->name, S_IFREG | (m->mode & 07777), req.uid, m->gid);
    if (!a.ok()) return Err(a.status());
    s.Ref(a->ino);
    s.Unref(req.ino);
    return FsReply{Rlcreate{QidOf(*a), 0}, {}};
  }
  if (auto* m = std::get_if<Tmkdir>(&msg))
    return Created<Rmkdir>(s.Create(req.ino, m->name, S_IFDIR | (m->mode & 07777), req.uid, m->gid));
  if (auto* m = std::get_if<Tsymlink>(&msg)) {
    // A target is a C string to every client: "a\0b" would read back as "a".
    if (m->symtgt.find('\0') != std::string::npos) return Err(EINVAL);
    return Created<Rsymlink>(s.Create(req.ino, m->name, S_IFLNK | 0777, req.uid, m->gid, 0, m->symtgt));
  }
  if (auto* m = std::get_if<Tmknod>(&msg)) {
    uint32_t type = m->mode & S_IFMT;
    if (type == 0) type = S_IFREG;
    if (type != S_IFREG && type != S_IFIFO && type != S_IFCHR && type != S_IFBLK && type != S_IFSOCK)
      return Err(EINVAL);
    return Created<Rmknod>(s.Create(req.ino, m->name, type | (m->mode & 07777), req.uid, m->gid,
                                    makedev(m->major, m->minor)));
  }
  if (auto* m = std::get_if<Tlink>(&msg)) {
    auto a = s.Link(req.ino, m->name, req.ino2);
    if (!a.ok()) return Err(a.status());
    return FsReply{Rlink{}, {}};
  }
  if (auto* m = std::get_if<Trenameat>(&msg)) {
    Status st = s.Rename(req.ino, m->oldname, req.ino2, m->newname);
    return st.ok() ? FsReply{Rrenameat{}, {}} : Err(st);
  }
  if (auto* m = std::get_if<Trename>(&msg)) {
    auto where = s.FindName(req.ino);
    if (!where.ok()) return Err(where.status());
    Status st = s.Rename(where->first, where->second, req.ino2, m->name);
    return st.ok() ? FsReply{Rrename{}, {}} : Err(st);
  }
  if (auto* m = std::get_if<Tunlinkat>(&msg)) {
    Status st = s.Unlink(req.ino, m->name, m->flags & kAtRemoveDir);
    return st.ok() ? FsReply{Runlinkat{}, {}} : Err(st);
  }
  if (std::get_if<Tremove>(&msg)) {
    Status st;
    auto a = s.GetAttr(req.ino);
    auto where = s.FindName(req.ino);
    if (!a.ok()) st = a.status();
    else if (!where.ok()) st = where.status();
    else st = s.Unlink(where->first, where->second, S_ISDIR(a->mode));
    s.Unref(req.ino);
    return st.ok() ? FsReply{Rremove{}, {}} : Err(st);
  }
  if (std::get_if<Treadlink>(&msg)) {
    auto t = s.ReadLink(req.ino);
    if (!t.ok()) return Err(t.status());
    return FsReply{Rreadlink{*t}, {}};
  }
  if (auto* m = std::get_if<Topen>(&msg)) return Open9(s, req, *m);
  if (auto* m = std::get_if<TcreateU>(&msg)) return Create9(s, req, *m);
  if (std::get_if<Tstat>(&msg)) return Stat9(s, req);
  if (auto* m = std::get_if<TwstatU>(&msg)) return Wstat9(s, req, *m);
  if (auto* m = std::get_if<Tread>(&msg); m && req.dir_cookie) return ReadDirStats(s, req, *m);
  if (auto* m = std::get_if<Tread>(&msg)) {
    Rread r;
    Status st = s.Read(req.ino, m->offset, m->count, r.data.bytes);
    if (!st.ok()) return Err(st);
    return FsReply{std::move(r), {}};
  }
  if (auto* m = std::get_if<Twrite>(&msg)) {
    auto n = s.Write(req.ino, m->offset, m->data.bytes);
    if (!n.ok()) return Err(n.status());
    return FsReply{Rwrite{*n}, {}};
  }
  if (auto* m = std::get_if<Treaddir>(&msg)) return ReadDir(s, req, *m, trace);
  if (std::get_if<Tstatfs>(&msg)) {
    auto f = s.GetStatFs();
    if (!f.ok()) return Err(f.status());
    Rstatfs r;
    r.type = kV9fsMagic;
    r.bsize = uint32_t(f->bsize);
    r.blocks = f->blocks;
    r.bfree = f->bfree;
    r.bavail = f->bavail;
    r.files = f->files;
    r.ffree = f->ffree;
    r.fsid = 0x6d75736c;
    r.namelen = store::kMaxNameLen;
    return FsReply{r, {}};
  }
  if (std::get_if<Tfsync>(&msg)) {
    Status st = s.Sync(true);
    return st.ok() ? FsReply{Rfsync{}, {}} : Err(st);
  }
  if (auto* m = std::get_if<Txattrwalk>(&msg)) {
    if (!XattrNameOk(m->name)) return Err(EINVAL);
    auto v = m->name.empty() ? s.ListXattr(req.ino) : s.GetXattr(req.ino, m->name);
    if (!v.ok()) return Err(v.status());
    uint64_t size = v->size();
    return FsReply{Rxattrwalk{size}, std::move(*v)};
  }
  if (std::get_if<Tclunk>(&msg)) {
    Status st;
    if (req.xattr) {
      const auto& x = *req.xattr;
      if (!XattrNameOk(x.name)) st = Status(EINVAL);
      else st = x.value.empty() && (x.flags & 2) ? s.RemoveXattr(req.ino, x.name)
                                                 : s.SetXattr(req.ino, x.name, x.value, x.flags);
    }
    Status u = s.Unref(req.ino);
    if (st.ok()) st = u;
    return st.ok() ? FsReply{Rclunk{}, {}} : Err(st);
  }
  return Err(EOPNOTSUPP);
}

void StoreFileSystem::Submit(FsRequest req, Done done) {
  auto shared = std::make_shared<FsRequest>(std::move(req));
  // The loop this request came from, where its reply must run (the main
  // loop's is null), also when a reader hands it on to the writer.
  Mailbox* home = Mailbox::Current();
  done = [home, done = std::move(done)](FsReply r) {
    assert(Mailbox::Current() == home && "a 9P reply ran on another loop's thread");
    (void)home;
    done(std::move(r));
  };
  std::shared_ptr<store::ReadGate> gate = worker_.gate();
  // An idle writer answers at once (its thread is awake, and a reply from
  // it needs no validation); readers take what would wait behind its work.
  if (!readers_ || !gate || worker_.idle() || !ForReaders(*gate, *shared)) {
    if (!gate || !readers_) return RunOnWriter(shared, std::move(done), home);
    // Later reads of these inodes wait for this request (in order).
    uint64_t inos[2] = {shared->ino, shared->ino2};
    for (uint64_t ino : inos)
      if (ino) gate->Pending(ino, +1);
    return RunOnWriter(
        shared,
        [gate, inos, done = std::move(done)](FsReply r) {
          for (uint64_t ino : inos)
            if (ino) gate->Pending(ino, -1);
          done(std::move(r));
        },
        home);
  }
  uint64_t gen = gate->generation();
  readers_->Run([this, gate, gen, shared, home, done = std::move(done)](Store& r) -> ReaderPool::Completion {
    ReadTrace trace;
    auto reply = std::make_shared<FsReply>(Execute(r, *shared, &trace));
    // An I/O error on a reader (a pack removed under it, SQLite busy) is
    // the writer's to confirm or not.
    auto* err = std::get_if<Rlerror>(&reply->msg);
    bool io_error = err && err->ecode == EIO;
    if (!io_error && gate->Validate(gen, trace.inos, trace.all, trace.change, trace.ref_ino))
      return [this, done, reply] {
        served_by_readers_++;
        done(std::move(*reply));
      };
    // Stale (the writer changed something it read, or a commit raced it):
    // the writer answers instead.
    RunOnWriter(shared, done, home);
    return nullptr;
  }, home);
}

void StoreFileSystem::RunOnWriter(std::shared_ptr<FsRequest> shared, Done done, Mailbox* home) {
  worker_.Run(
      [shared, done = std::move(done)](Store& s) -> StoreWorker::Completion {
        auto reply = std::make_shared<FsReply>(Execute(s, *shared));
        return [done, reply]() { done(std::move(*reply)); };
      },
      home);
}

void StoreFileSystem::Release(uint64_t ino) {
  worker_.Run([ino](Store& s) -> StoreWorker::Completion {
    s.Unref(ino);
    return nullptr;
  });
}

}  // namespace muscle::server
