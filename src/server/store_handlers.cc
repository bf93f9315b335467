// One handler per request the file system answers, and Execute, which
// applies a request's row (9p/ops.h) around its handler: what a reader
// records for validation, the tree's read-only rule and the fid
// references. The same handlers serve the live store and the views
// (store/tree.h). Handlers never take or drop references. A request that
// came inside a Tonce runs at most once per operation id (RunOnce): a
// recorded reply takes the handler's place, and the row's references
// are applied to it all the same.
#include "server/store_filesystem.h"

#include <cassert>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cstdint>

#include "9p/codec.h"
#include "9p/ops.h"
#include "9p/wire.h"
#include "server/owner_checks.h"
#include "server/stat_dialects.h"

namespace muscle::server {

using namespace muscle::p9;
using store::Attr;
using store::Tree;

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

FsReply Walk(Tree& s, FsRequest& req, const Twalk& m, ReadTrace* trace) {
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
  return FsReply{std::move(r), {}};
}

uint8_t DirentType(uint32_t mode) { return uint8_t((mode & S_IFMT) >> 12); }

FsReply ReadDir(Tree& s, FsRequest& req, const Treaddir& m, ReadTrace* trace) {
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

FsReply SetAttr(Tree& s, FsRequest& req, const Tsetattr& m) {
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
  auto r = ChangeAs(s, req, req.ino, a);
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

// --- the handlers, one per request the file system answers ---
// Each gets the request (req.ino: the inode of its first fid) and returns
// its reply; with a trace it runs on a reader and only reads.
struct Call {
  Tree& s;  // the live store or the views (whichever the fid was attached to)
  FsRequest& req;
  ReadTrace* trace;
};

FsReply Handle(Call& c, const Tattach& m) {
  auto a = c.s.Attach(m.aname, c.req.rule ? &*c.req.rule : nullptr);
  if (!a.ok()) return Err(a.status());
  return FsReply{Rattach{QidOf(*a)}, {}};
}

FsReply Handle(Call& c, const Twalk& m) { return Walk(c.s, c.req, m, c.trace); }

// The inode by number, if it is below the fid's attach root (else, and
// when it is gone, ESTALE: a confined identity learns nothing of what lies
// outside). Climbs one name per level, at most kMaxRebindDepth (musclefs(8)
// PROTOCOL); a file unlinked while open (kept by the store for a while
// after a restart) climbs from the directory it was last linked in. On a
// reader, each inode climbed is validated as a walk's are.
constexpr size_t kMaxRebindDepth = 4096;
FsReply Handle(Call& c, const Trebind& m) {
  auto a = c.s.GetAttr(m.path);
  if (!a.ok()) return Err(a.err() == ENOENT ? ESTALE : a.err());
  // Only the writer knows which nameless files it holds: a reader's EIO
  // hands the request to it.
  if (a->nlink == 0 && c.trace) return Err(EIO);
  uint64_t cur = m.path;
  for (size_t depth = 0; cur != c.req.root_ino; depth++) {
    if (c.trace) c.trace->inos.push_back(cur);
    Result<uint64_t> up = depth == 0 && a->nlink == 0 ? c.s.OrphanDir(cur) : Status(ENOENT);
    if (!up.ok()) {
      auto named = c.s.FindName(cur);
      if (named.ok()) up = named->first;
    }
    if (!up.ok() || *up == cur || depth >= kMaxRebindDepth) return Err(ESTALE);
    cur = *up;
  }
  return FsReply{Rrebind{QidOf(*a)}, {}};
}

FsReply Handle(Call& c, const Tgetattr&) {
  auto a = c.s.GetAttr(c.req.ino);
  if (!a.ok()) return Err(a.status());
  return FsReply{GetattrOf(*a), {}};
}

FsReply Handle(Call& c, const Tsetattr& m) { return SetAttr(c.s, c.req, m); }

FsReply Handle(Call& c, const Tlopen& m) {
  auto a = c.s.GetAttr(c.req.ino);
  if (!a.ok()) return Err(a.status());
  uint32_t acc = m.flags & O_ACCMODE;
  if (S_ISDIR(a->mode) && acc != O_RDONLY) return Err(EISDIR);
  if (acc != O_RDONLY)
    if (Status may = MayWriteContents(c.req, *a); !may.ok()) return Err(may);
  if ((m.flags & O_TRUNC) && S_ISREG(a->mode) && acc != O_RDONLY && a->size) {
    store::SetAttrRequest t;
    t.set_size = true;
    t.size = 0;
    a = c.s.SetAttr(c.req.ino, t);
    if (!a.ok()) return Err(a.status());
  }
  return FsReply{Rlopen{QidOf(*a), 0}, {}};
}

FsReply Handle(Call& c, const Tlcreate& m) {
  auto a = MakeAs(c.s, c.req, c.req.ino, m.name, S_IFREG | (m.mode & 07777), m.gid);
  if (!a.ok()) return Err(a.status());
  return FsReply{Rlcreate{QidOf(*a), 0}, {}};
}

FsReply Handle(Call& c, const Tmkdir& m) {
  return Created<Rmkdir>(
      MakeAs(c.s, c.req, c.req.ino, m.name, S_IFDIR | (m.mode & 07777), m.gid));
}

FsReply Handle(Call& c, const Tsymlink& m) {
  // A target is a C string to every client: "a\0b" would read back as "a".
  if (m.symtgt.find('\0') != std::string::npos) return Err(EINVAL);
  return Created<Rsymlink>(
      MakeAs(c.s, c.req, c.req.ino, m.name, S_IFLNK | 0777, m.gid, 0, m.symtgt));
}

FsReply Handle(Call& c, const Tmknod& m) {
  uint32_t type = m.mode & S_IFMT;
  if (type == 0) type = S_IFREG;
  if (type != S_IFREG && type != S_IFIFO && type != S_IFCHR && type != S_IFBLK && type != S_IFSOCK)
    return Err(EINVAL);
  return Created<Rmknod>(MakeAs(c.s, c.req, c.req.ino, m.name, type | (m.mode & 07777), m.gid,
                                makedev(m.major, m.minor)));
}

FsReply Handle(Call& c, const Tlink& m) {
  auto a = c.s.Link(c.req.ino, m.name, c.req.ino2);
  if (!a.ok()) return Err(a.status());
  return FsReply{Rlink{}, {}};
}

FsReply Handle(Call& c, const Trenameat& m) {
  Status st = c.s.Rename(c.req.ino, m.oldname, c.req.ino2, m.newname);
  return st.ok() ? FsReply{Rrenameat{}, {}} : Err(st);
}

FsReply Handle(Call& c, const Trename& m) {
  auto where = c.s.FindName(c.req.ino);
  if (!where.ok()) return Err(where.status());
  Status st = c.s.Rename(where->first, where->second, c.req.ino2, m.name);
  return st.ok() ? FsReply{Rrename{}, {}} : Err(st);
}

FsReply Handle(Call& c, const Tunlinkat& m) {
  Status st = c.s.Unlink(c.req.ino, m.name, m.flags & kAtRemoveDir);
  return st.ok() ? FsReply{Runlinkat{}, {}} : Err(st);
}

FsReply Handle(Call& c, const Tremove&) {
  auto a = c.s.GetAttr(c.req.ino);
  if (!a.ok()) return Err(a.status());
  auto where = c.s.FindName(c.req.ino);
  if (!where.ok()) return Err(where.status());
  Status st = c.s.Unlink(where->first, where->second, S_ISDIR(a->mode));
  return st.ok() ? FsReply{Rremove{}, {}} : Err(st);
}

FsReply Handle(Call& c, const Treadlink&) {
  auto t = c.s.ReadLink(c.req.ino);
  if (!t.ok()) return Err(t.status());
  return FsReply{Rreadlink{*t}, {}};
}

FsReply Handle(Call& c, const Topen& m) { return Open9(c.s, c.req, m); }
FsReply Handle(Call& c, const TcreateU& m) { return Create9(c.s, c.req, m); }
FsReply Handle(Call& c, const Tstat&) { return Stat9(c.s, c.req); }
FsReply Handle(Call& c, const TwstatU& m) { return Wstat9(c.s, c.req, m); }

FsReply Handle(Call& c, const Tread& m) {
  if (c.req.dir_cookie) return ReadDirStats(c.s, c.req, m);
  Rread r;
  Status st = c.s.Read(c.req.ino, m.offset, m.count, r.data.bytes);
  if (!st.ok()) return Err(st);
  return FsReply{std::move(r), {}};
}

FsReply Handle(Call& c, const Twrite& m) {
  auto n = c.s.Write(c.req.ino, m.offset, m.data.bytes);
  if (!n.ok()) return Err(n.status());
  return FsReply{Rwrite{*n}, {}};
}

FsReply Handle(Call& c, const Treaddir& m) { return ReadDir(c.s, c.req, m, c.trace); }

FsReply Handle(Call& c, const Tstatfs&) {
  auto f = c.s.GetStatFs();
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

FsReply Handle(Call& c, const Tfsync&) {
  Status st = c.s.Sync(true);
  return st.ok() ? FsReply{Rfsync{}, {}} : Err(st);
}

FsReply Handle(Call& c, const Txattrwalk& m) {
  if (!XattrNameOk(m.name)) return Err(EINVAL);
  auto v = m.name.empty() ? c.s.ListXattr(c.req.ino) : c.s.GetXattr(c.req.ino, m.name);
  if (!v.ok()) return Err(v.status());
  uint64_t size = v->size();
  return FsReply{Rxattrwalk{size}, std::move(*v)};
}

// Clunk of a fid made by Txattrcreate stores the attribute; the
// reference goes in Execute, as for every clunk.
FsReply Handle(Call& c, const Tclunk&) {
  if (c.req.xattr) {
    const auto& x = *c.req.xattr;
    if (!XattrNameOk(x.name)) return Err(EINVAL);
    Status st = x.value.empty() && (x.flags & 2) ? c.s.RemoveXattr(c.req.ino, x.name)
                                                 : c.s.SetXattr(c.req.ino, x.name, x.value, x.flags);
    if (!st.ok()) return Err(st);
  }
  return FsReply{Rclunk{}, {}};
}

// The references a request's row names (see 9p/filesystem.h,
// "References"), applied once its handler made the reply. `bound`: the
// inode a binding request's reply names (0 when it did not bind). On a
// reader the change is recorded for the gate, which applies it only if
// the result is valid; a failure to give back (a purge that failed)
// becomes the reply when there was none.
void ApplyRefs(Call& c, Refs refs, uint64_t bound, FsReply& reply) {
  using Change = store::ReadGate::RefChange;
  switch (refs) {
    case Refs::kNone:
      return;
    case Refs::kBindsNew:
    case Refs::kRebinds:
      if (!bound) return;
      if (c.trace) {
        assert(refs == Refs::kBindsNew && "readers do not rebind");
        c.trace->change = Change::kRef;
        c.trace->ref_ino = bound;
        return;
      }
      c.s.Ref(bound);
      if (refs == Refs::kRebinds) c.s.Unref(c.req.ino);
      return;
    case Refs::kReleases:
      if (c.trace) {
        // Dropping a reference needs the writer only for a file that may go
        // away with it (unlinked) or holds buffered writes (then dirty).
        auto a = c.s.GetAttr(c.req.ino);
        c.trace->change = a.ok() && a->nlink > 0 ? Change::kUnrefLinked : Change::kUnref;
        c.trace->ref_ino = c.req.ino;
        return;
      }
      if (Status st = c.s.Unref(c.req.ino); !st.ok() && !std::holds_alternative<Rlerror>(reply.msg))
        reply = Err(st);
      return;
  }
}

// A request that came inside a Tonce (req.op; on the writer): `run` at
// most once per (identity, op) (store::Tree::Once). The reply kept is the
// codec's frame of it (tag NOTAG). A recorded reply that is not the
// request's own kind (its R-message or Rlerror) means the client used the
// id for another request: EINVAL, and nothing runs.
template <class T, class F>
FsReply RunOnce(Call& c, const T&, F&& run) {
  FsReply reply;
  bool ran = false;
  auto kept = c.s.Once(c.req.identity, *c.req.op, [&] {
    reply = run();
    std::string frame;
    Encode(kNoTag, reply.msg, frame);
    return frame;
  }, &ran);
  if (!kept.ok()) return Err(kept.status());
  if (ran) return reply;
  Decoded d = Decode(reinterpret_cast<const uint8_t*>(kept->data()), kept->size(), k9P2000L);
  if (d.status != DecodeStatus::kOk) return Err(EIO);
  if (d.type != T::kType + 1 && d.type != Rlerror::kType) return Err(EINVAL);
  return FsReply{std::move(d.msg), {}};
}

}  // namespace

FsReply StoreFileSystem::Execute(Tree& s, FsRequest& req, ReadTrace* trace) {
  Call c{s, req, trace};
  return std::visit(
      [&](auto& m) -> FsReply {
        using T = std::decay_t<decltype(m)>;
        if constexpr (!kIsRequest<T>) {
          return Err(EOPNOTSUPP);
        } else {
          using R = Op<T>;
          if constexpr (R::kServed == Served::kSession || R::kServed == Served::kNormalized) {
            return Err(EOPNOTSUPP);  // the session answers these itself
          } else {
            if (trace) {
              trace->inos.push_back(req.ino);
              trace->all = R::kReadsAll;
            }
            // An open or create that would write asks the tree first (a
            // snapshot's file is read-only whatever its mode bits say).
            Status may = R::kOpens && R::ChangesTree(m) ? s.MayChange(req.ino) : Status::Ok();
            auto run = [&] { return may.ok() ? Handle(c, m) : Err(may); };
            assert(!(req.op && trace) && "a request with an operation id is the writer's");
            FsReply reply = req.op && !trace ? RunOnce(c, m, run) : run();
            // A recorded reply binds and releases as the first one did.
            ApplyRefs(c, R::RefsOf(m), R::BoundIno(m, req, reply), reply);
            return reply;
          }
        }
      },
      req.msg);
}

}  // namespace muscle::server
