#include "server/stat_dialects.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstdio>

#include "9p/codec.h"
#include "9p/wire.h"
#include "server/owner_checks.h"
#include "server/store_filesystem.h"

namespace muscle::server {

using namespace muscle::p9;
using store::Attr;
using store::Tree;

namespace {

constexpr int64_t kNsPerSec = 1000000000;

FsReply Err(int e) { return FsReply{Rlerror{uint32_t(e)}, {}}; }
FsReply Err(const Status& s) { return Err(s.err() ? s.err() : EIO); }

uint32_t Seconds(int64_t ns) {
  int64_t s = ns / kNsPerSec;
  return s < 0 ? 0 : s > int64_t(UINT32_MAX) ? UINT32_MAX : uint32_t(s);
}

// A decimal id from a stat string; false for anything else.
bool ParseId(const std::string& text, uint32_t& id) {
  if (text.empty() || text.size() > 10) return false;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + uint64_t(c - '0');
  }
  if (v >= kNoUid) return false;
  id = uint32_t(v);
  return true;
}

uint32_t Plan9Mode(uint32_t mode, Dialect d) {
  uint32_t m = mode & 0777;
  if (S_ISDIR(mode)) m |= kDmDir;
  if (d != k9P2000u) return m;
  switch (mode & S_IFMT) {
    case S_IFLNK: m |= kDmSymlink; break;
    case S_IFCHR:
    case S_IFBLK: m |= kDmDevice; break;
    case S_IFIFO: m |= kDmNamedPipe; break;
    case S_IFSOCK: m |= kDmSocket; break;
  }
  if (mode & S_ISUID) m |= kDmSetuid;
  if (mode & S_ISGID) m |= kDmSetgid;
  if (mode & S_ISVTX) m |= kDmSetvtx;
  return m;
}

// The Unix permission bits (with set-id bits in .u) of a 9P mode.
uint32_t UnixPerm(uint32_t perm, Dialect d) {
  uint32_t m = perm & 0777;
  if (d == k9P2000u) {
    if (perm & kDmSetuid) m |= S_ISUID;
    if (perm & kDmSetgid) m |= S_ISGID;
    if (perm & kDmSetvtx) m |= S_ISVTX;
  }
  return m;
}

std::string NameOf(Tree& s, uint64_t ino) {
  if (ino == store::kRootIno) return "/";
  auto where = s.FindName(ino);
  return where.ok() ? where->second : std::string();
}

FsReply StatReply(const StatU& st, Dialect d) {
  if (d == k9P2000u) return FsReply{RstatU{st}, {}};
  return FsReply{Rstat{static_cast<const Stat&>(st)}, {}};
}

Result<std::string> TargetIfLink(Tree& s, const Attr& a, Dialect d) {
  if (d != k9P2000u || !S_ISLNK(a.mode)) return std::string();
  return s.ReadLink(a.ino);
}

}  // namespace

StatU StatOf(const Attr& a, const std::string& name, Dialect d, const std::string& target) {
  StatU st;
  st.type = 0;
  st.dev = 0;
  st.qid = QidOf(a);
  if (d != k9P2000u && !S_ISDIR(a.mode)) st.qid.type = kQtFile;
  st.mode = Plan9Mode(a.mode, d);
  st.atime = Seconds(a.atime_ns);
  st.mtime = Seconds(a.mtime_ns);
  st.length = S_ISDIR(a.mode) ? 0 : a.size;
  st.name = name;
  st.uid = std::to_string(a.uid);
  st.gid = std::to_string(a.gid);
  st.muid = st.uid;
  if (d == k9P2000u) {
    if (S_ISLNK(a.mode)) st.extension = target;
    if (S_ISCHR(a.mode) || S_ISBLK(a.mode)) {
      char b[40];
      snprintf(b, sizeof b, "%c %u %u", S_ISCHR(a.mode) ? 'c' : 'b', major(a.rdev), minor(a.rdev));
      st.extension = b;
    }
    st.n_uid = a.uid;
    st.n_gid = a.gid;
    st.n_muid = a.uid;
  } else {
    st.n_uid = st.n_gid = st.n_muid = kNoUid;
  }
  return st;
}

FsReply Open9(Tree& s, FsRequest& req, const Topen& m) {
  auto a = s.GetAttr(req.ino);
  if (!a.ok()) return Err(a.status());
  bool writes = (m.mode & 3) == kOWrite || (m.mode & 3) == kORdwr;
  if (S_ISDIR(a->mode) && (writes || (m.mode & kOTrunc))) return Err(EISDIR);
  if (writes)
    if (Status may = MayWriteContents(req, *a); !may.ok()) return Err(may);
  if ((m.mode & kOTrunc) && writes && S_ISREG(a->mode) && a->size) {
    store::SetAttrRequest t;
    t.set_size = true;
    t.size = 0;
    a = s.SetAttr(req.ino, t);
    if (!a.ok()) return Err(a.status());
  }
  Qid q = QidOf(*a);
  if (req.dialect != k9P2000u && !S_ISDIR(a->mode)) q.type = kQtFile;
  return FsReply{Ropen{q, 0}, {}};
}

FsReply Create9(Tree& s, FsRequest& req, const TcreateU& m) {
  auto dir = s.GetAttr(req.ino);
  if (!dir.ok()) return Err(dir.status());
  if (!S_ISDIR(dir->mode)) return Err(ENOTDIR);
  bool dotu = req.dialect == k9P2000u;
  uint32_t perm = UnixPerm(m.perm, req.dialect);
  Result<Attr> made = Status(EINVAL);
  if (m.perm & kDmDir) {
    // create(5): the new directory's permissions are limited by its
    // parent's (the Unix client of .u has applied its umask already).
    if (!dotu) perm &= ~0777u | (dir->mode & 0777);
    made = MakeAs(s, req, req.ino, m.name, S_IFDIR | perm, dir->gid);
  } else if (dotu && (m.perm & kDmSymlink)) {
    if (m.extension.find('\0') != std::string::npos) return Err(EINVAL);
    made = MakeAs(s, req, req.ino, m.name, S_IFLNK | 0777, dir->gid, 0, m.extension);
  } else if (dotu && (m.perm & kDmLink)) {
    auto l = s.Link(req.ino, m.name, req.ino2);
    if (!l.ok()) return Err(l.status());
    made = s.GetAttr(req.ino2);
  } else if (dotu && (m.perm & kDmDevice)) {
    char type = 0;
    unsigned maj = 0, min = 0;
    char extra;
    if (sscanf(m.extension.c_str(), "%c %u %u %c", &type, &maj, &min, &extra) != 3 ||
        (type != 'c' && type != 'b'))
      return Err(EINVAL);
    made = MakeAs(s, req, req.ino, m.name, (type == 'c' ? S_IFCHR : S_IFBLK) | perm, dir->gid,
                  makedev(maj, min));
  } else if (dotu && (m.perm & (kDmNamedPipe | kDmSocket))) {
    made = MakeAs(s, req, req.ino, m.name, ((m.perm & kDmNamedPipe) ? S_IFIFO : S_IFSOCK) | perm,
                  dir->gid);
  } else {
    if (!dotu) perm &= ~0666u | (dir->mode & 0666);
    made = MakeAs(s, req, req.ino, m.name, S_IFREG | perm, dir->gid);
  }
  if (!made.ok()) return Err(made.status());
  Qid q = QidOf(*made);
  if (!dotu && !S_ISDIR(made->mode)) q.type = kQtFile;
  return FsReply{Rcreate{q, 0}, {}};
}

FsReply Stat9(Tree& s, FsRequest& req) {
  auto a = s.GetAttr(req.ino);
  if (!a.ok()) return Err(a.status());
  auto target = TargetIfLink(s, *a, req.dialect);
  if (!target.ok()) return Err(target.status());
  return StatReply(StatOf(*a, NameOf(s, req.ino), req.dialect, *target), req.dialect);
}

FsReply Wstat9(Tree& s, FsRequest& req, const TwstatU& m) {
  const StatU& w = m.stat;
  // wstat(5): a record that changes nothing asks for the file to be
  // committed to stable storage.
  if (ChangesNothing(w)) {
    Status st = s.Sync(true);
    return st.ok() ? FsReply{Rwstat{}, {}} : Err(st);
  }
  auto a = s.GetAttr(req.ino);
  if (!a.ok()) return Err(a.status());
  // Everything is checked before anything changes, so that the request
  // happens entirely or not at all. type, dev, qid and muid cannot change
  // and are ignored (Plan 9 programs write back what they read).
  store::SetAttrRequest r;
  if (w.mode != 0xffffffff) {
    if (bool(w.mode & kDmDir) != S_ISDIR(a->mode)) return Err(EINVAL);
    uint32_t keep = req.dialect == k9P2000u ? 0 : (a->mode & 07000);  // 9P2000 cannot say
    r.set_mode = true;
    r.mode = (a->mode & S_IFMT) | keep | UnixPerm(w.mode, req.dialect);
  }
  if (w.length != ~uint64_t(0)) {
    if (S_ISDIR(a->mode)) {
      if (w.length != 0) return Err(EISDIR);
    } else {
      r.set_size = true;
      r.size = w.length;
    }
  }
  if (w.mtime != 0xffffffff) {
    r.set_mtime = true;
    r.mtime_ns = int64_t(w.mtime) * kNsPerSec;
  }
  if (w.atime != 0xffffffff) {
    r.set_atime = true;
    r.atime_ns = int64_t(w.atime) * kNsPerSec;
  }
  auto id = [&](uint32_t n, const std::string& text, bool& set, uint32_t& out) {
    if (n != kNoUid) {
      set = true;
      out = n;
      return true;
    }
    if (text.empty()) return true;
    set = true;
    return ParseId(text, out);
  };
  if (!id(req.dialect == k9P2000u ? w.n_uid : kNoUid, w.uid, r.set_uid, r.uid) ||
      !id(req.dialect == k9P2000u ? w.n_gid : kNoUid, w.gid, r.set_gid, r.gid))
    return Err(EINVAL);
  // A new name, in the same directory.
  uint64_t parent = 0;
  std::string old_name;
  if (!w.name.empty()) {
    auto where = s.FindName(req.ino);
    if (!where.ok()) return Err(where.status());
    if (where->second != w.name) {
      parent = where->first;
      old_name = where->second;
      // 9P2000 does not replace an existing file (stat(5)); .u is spoken
      // by Unix clients, whose rename(2) does.
      if (req.dialect != k9P2000u) {
        auto there = s.Lookup(parent, w.name);
        if (there.ok()) return Err(EEXIST);
        if (there.status().err() != ENOENT) return Err(there.status());
      }
      Status st = s.Rename(parent, old_name, parent, w.name);
      if (!st.ok()) return Err(st);
    }
  }
  if (r.set_mode || r.set_size || r.set_mtime || r.set_atime || r.set_uid || r.set_gid) {
    auto done = ChangeAs(s, req, req.ino, r);
    if (!done.ok()) {
      if (parent) (void)s.Rename(parent, w.name, parent, old_name);  // all or nothing
      return Err(done.status());
    }
  }
  return FsReply{Rwstat{}, {}};
}

FsReply ReadDirStats(Tree& s, FsRequest& req, const Tread& m) {
  // Store cookies: 2 is "after ..", so a listing from the start skips
  // "." and "..", which 9P2000 directories do not contain.
  uint64_t from = std::max<uint64_t>(*req.dir_cookie, 2);
  Rread r;
  std::string& out = r.data.bytes;
  uint64_t next = from;
  Status failed;
  Status st = s.ReadDir(req.ino, from, [&](const store::DirEntry& e) {
    auto a = s.GetAttr(e.attr.ino);
    if (!a.ok()) {
      failed = a.status();
      return false;
    }
    auto target = TargetIfLink(s, *a, req.dialect);
    if (!target.ok()) {
      failed = target.status();
      return false;
    }
    StatU stat = StatOf(*a, e.name, req.dialect, *target);
    size_t before = out.size();
    if (req.dialect == k9P2000u) EncodeStat(stat, out);
    else EncodeStat(static_cast<const Stat&>(stat), out);
    if (out.size() > m.count) {
      out.resize(before);
      return false;
    }
    next = e.cookie;
    return true;
  });
  if (!st.ok()) return Err(st);
  if (!failed.ok()) return Err(failed);
  // When not even the next record fits, the read is empty, as lib9p's: the
  // Linux client keeps reading into the rest of its buffer until a read
  // comes back empty, so an error there would fail the whole listing.
  FsReply reply{std::move(r), {}};
  reply.next_cookie = next;
  return reply;
}

}  // namespace muscle::server
