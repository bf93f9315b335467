#include "9p/session.h"

#include <atomic>

#include <fcntl.h>

#include <cstdlib>
#include <cstring>
#include <map>

#include "9p/codec.h"
#include "9p/ops.h"
#include "common/log.h"
#include "common/mutex.h"

namespace muscle::p9 {

namespace {
// Xattr buffer bytes held by every session of this process (all loops).
std::atomic<size_t> g_xattr_bytes{0};

// The same per identity ("" for clients without one: the local
// administrator, plain listeners): one counter per identity with sessions
// holding it, shared by them.
std::shared_ptr<std::atomic<size_t>> IdentityXattrCounter(const std::string& identity) {
  static Mutex mu;
  static std::map<std::string, std::weak_ptr<std::atomic<size_t>>> counters;
  MutexLock lock(&mu);
  auto& slot = counters[identity];
  auto c = slot.lock();
  if (!c) {
    // Drop the entries of identities nobody holds any more.
    for (auto it = counters.begin(); it != counters.end();)
      it = it->second.expired() && it->first != identity ? counters.erase(it) : std::next(it);
    c = std::make_shared<std::atomic<size_t>>(0);
    slot = c;
  }
  return c;
}

// Adds `bytes` to `n` unless that passes `limit` (false, nothing added).
bool AddWithin(std::atomic<size_t>& n, size_t bytes, size_t limit) {
  size_t was = n.fetch_add(bytes);
  if (was + bytes <= limit) return true;
  n -= bytes;
  return false;
}

// An error as the dialect sends it. 9P2000 has only the text; Linux maps
// the strerror texts back to errnos (net/9p/error.c).
Message ErrorIn(Dialect d, uint32_t e) {
  if (d == k9P2000L) return Rlerror{e};
  std::string text = strerror(int(e));
  if (d == k9P2000u) return RerrorU{std::move(text), e};
  return Rerror{std::move(text)};
}

// The number a decimal string spells (a uname that is a uid, since 9P2000
// has no n_uname; the fid of a .u DMLINK), else kNoUid.
uint32_t DecimalOf(const std::string& text) {
  if (text.empty() || text.size() > 10) return kNoUid;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return kNoUid;
    v = v * 10 + uint64_t(c - '0');
  }
  return v < kNoUid ? uint32_t(v) : kNoUid;
}

}  // namespace

Session::Fid::~Fid() {
  g_xattr_bytes -= xattr_accounted;
  if (session_xattr) *session_xattr -= xattr_accounted;
  if (identity_xattr) *identity_xattr -= xattr_accounted;
}

bool Session::AccountXattr(const FidPtr& f, size_t bytes) {
  if (*xattr_bytes_ + bytes > kMaxXattrBytes) return false;
  // Clients without an identity (the local administrator, plain
  // listeners) are held to the session and process limits only.
  if (!identity_xattr_ && !options_.identity.empty())
    identity_xattr_ = IdentityXattrCounter(options_.identity);
  if (identity_xattr_ && !AddWithin(*identity_xattr_, bytes, kMaxXattrBytesIdentity)) return false;
  if (!AddWithin(g_xattr_bytes, bytes, kMaxXattrBytesProcess)) {
    if (identity_xattr_) *identity_xattr_ -= bytes;
    return false;
  }
  f->session_xattr = xattr_bytes_;
  f->identity_xattr = identity_xattr_;
  f->xattr_accounted += bytes;
  *xattr_bytes_ += bytes;
  return true;
}

Session::Session(FileSystem& fs, LockTable& locks, SessionOptions options,
                 SendFn send, CloseFn close)
    : fs_(fs), locks_(locks), options_(std::move(options)),
      send_(std::move(send)), close_(std::move(close)) {}

Session::~Session() { Shutdown(); }

void Session::Shutdown() {
  if (closed_) return;
  closed_ = true;
  Reset();
}

// Forgets every fid and lock, as after a new Tversion or a disconnect.
void Session::Reset() {
  generation_++;
  for (auto& [num, fid] : fids_) {
    fid->live = false;
    fid->waiting.clear();
    // Pending fids, and fids being rebound, give their reference back when
    // their request finishes (Submit).
    if (fid->rebinding == 0) GiveBack(*fid);
  }
  fids_.clear();
  inflight_.clear();
  once_.clear();
  reserved_.clear();
  reserved_total_ = 0;
  locks_.ReleaseSession(this);
}

void Session::OnFrame(const uint8_t* frame, size_t len) {
  if (closed_) return;
  Decoded d = Decode(frame, len, dialect_);
  if (d.status == DecodeStatus::kMalformed && len < kHeaderSize) {
    close_("frame shorter than a 9P header");
    return;
  }
  if (inflight_.count(d.tag)) {
    // A client that reuses a live tag cannot tell replies apart.
    close_("tag reused while in flight");
    return;
  }
  if (d.status != DecodeStatus::kOk) {
    inflight_[d.tag];
    if (TraceEnabled())
      Log("%s <- type %u tag %u: %s", options_.peer.c_str(), d.type, d.tag,
          d.status == DecodeStatus::kMalformed ? "malformed" : "unknown type");
    Error(d.tag, d.status == DecodeStatus::kMalformed ? EPROTO : EOPNOTSUPP);
    return;
  }
  if (TraceEnabled()) Log("%s <- %s", options_.peer.c_str(), Trace(d.tag, d.msg).c_str());
  if (!std::holds_alternative<Tversion>(d.msg) && msize_ != 0) {
    size_t budget = len + ReplyBudget(d.msg, msize_);
    reserved_[d.tag] = budget;
    reserved_total_ += budget;
  }
  if (d.type % 2 == 1) {  // an R-message sent by a client
    inflight_[d.tag];
    Error(d.tag, EOPNOTSUPP);
    return;
  }
  if (!std::holds_alternative<Tversion>(d.msg)) {
    inflight_[d.tag];
    if (msize_ == 0) {
      Error(d.tag, EPROTO);  // Tversion must come first
      return;
    }
  }
  Dispatch(d.tag, std::move(d.msg));
}

void Session::Reply(uint16_t tag, Message msg) {
  if (closed_) return;
  if (!inflight_.count(tag)) {
    // Every request is answered exactly once: a reply to a tag that is not
    // in flight is a bug in this file.
    Log("%s: BUG: reply %s to tag %u, which is not in flight (dropped)", options_.peer.c_str(),
        Trace(tag, msg).c_str(), tag);
#ifndef NDEBUG
    abort();
#endif
    return;
  }
  if (auto* e = std::get_if<Rlerror>(&msg); e && dialect_ != k9P2000L)
    msg = ErrorIn(dialect_, e->ecode);
  if (TraceEnabled()) Log("%s -> %s", options_.peer.c_str(), Trace(tag, msg).c_str());
  std::string frame;
  Encode(tag, msg, frame);
  send_(std::move(frame));
  Finish(tag);
}

// The request under `tag` is answered: answer the flushes that waited on it.
void Session::Finish(uint16_t tag) {
  auto it = inflight_.find(tag);
  if (it == inflight_.end()) return;
  std::vector<uint16_t> flushes = std::move(it->second);
  inflight_.erase(it);
  once_.erase(tag);
  auto r = reserved_.find(tag);
  if (r != reserved_.end()) {
    reserved_total_ -= r->second;
    reserved_.erase(r);
  }
  for (uint16_t f : flushes) Reply(f, Rflush{});
  if (on_reply) on_reply();
}

Session::FidPtr Session::Established(uint32_t fid) {
  auto it = fids_.find(fid);
  if (it == fids_.end() || it->second->kind != Fid::kInode) return nullptr;
  return it->second;
}

void Session::DropFid(uint32_t num) {
  auto it = fids_.find(num);
  if (it == fids_.end()) return;
  it->second->live = false;
  fids_.erase(it);
}

void Session::GiveBack(const Fid& f) {
  if (f.kind == Fid::kInode || f.kind == Fid::kXattrWrite) fs_.Unref(f.ino);
}

void Session::Submit(uint16_t tag, FsRequest req, std::function<void(FsReply&)> after,
                     FidPtr binds) {
  uint64_t gen = generation_;
  auto self = shared_from_this();
  // The fid it binds (made, or rebound) is busy until the reply: requests
  // naming it meanwhile wait (WaitForFid) and run after it (Rebound).
  if (binds) binds->rebinding++;
  req.owner = options_.rule.owner;
  if (auto o = once_.find(tag); o != once_.end()) {
    req.op = o->second;
    req.identity = options_.identity;
  }
  fs_.Submit(std::move(req), [self, tag, gen, after = std::move(after),
                              binds = std::move(binds)](FsReply r) {
    if (after) after(r);
    // A fid forgotten (clunk of its number impossible: a reset or shutdown)
    // while this request bound it: what it holds now goes back.
    if (binds && !binds->live) self->GiveBack(*binds);
    if (self->generation_ == gen) self->Reply(tag, std::move(r.msg));
    // Requests that waited for this one go after its reply.
    if (binds) self->Rebound(binds);
  });
}

template <>
void Session::Handle(uint16_t tag, Tversion& m) {
  Reset();
  if (tag != kNoTag) inflight_[tag];
  uint32_t msize = std::min(m.msize, options_.max_msize);
  // version(5): a version this server does not know but that starts with
  // "9P2000." is answered with "9P2000".
  const char* version = "unknown";
  if (m.version.rfind("9P2000.L", 0) == 0) {
    dialect_ = k9P2000L;
    version = "9P2000.L";
  } else if (m.version.rfind("9P2000.u", 0) == 0) {
    dialect_ = k9P2000u;
    version = "9P2000.u";
  } else if (m.version == "9P2000" || m.version.rfind("9P2000.", 0) == 0) {
    dialect_ = k9P2000;
    version = "9P2000";
  }
  bool ok = std::strcmp(version, "unknown") != 0 && msize >= kMinMsize;
  msize_ = ok ? msize : 0;
  if (!ok) dialect_ = k9P2000L;
  std::string frame;
  Rversion r{msize, ok ? version : "unknown"};
  if (TraceEnabled()) Log("%s -> %s", options_.peer.c_str(), Trace(tag, r).c_str());
  Encode(tag, r, frame);
  send_(std::move(frame));
  Finish(tag);
}

template <>
void Session::Handle(uint16_t tag, Tauth&) {
  Error(tag, int(options_.auth_errno));
}

template <>
void Session::Handle(uint16_t tag, Tattach& m) {
  if (fids_.count(m.fid)) return Error(tag, EBADF);
  if (FidsFull()) return Error(tag, EMFILE);
  if (m.afid != kNoFid) return Error(tag, EBADF);
  auto fid = std::make_shared<Fid>();
  uint32_t uid = m.n_uname;
  if (uid == kNoUid && dialect_ != k9P2000L) uid = DecimalOf(m.uname);
  uint32_t claimed = uid != kNoUid ? uid : auth::kNobody;
  // Every request on this fid and the fids walked from it acts as this uid
  // (auth/owner_rule.h: a remote identity's root is squashed).
  fid->uid = options_.rule.owner.ActingUid(claimed);
  fids_[m.fid] = fid;
  std::string_view bare = m.aname;
  while (!bare.empty() && bare.front() == '/') bare.remove_prefix(1);
  bool view = !bare.empty() && bare.front() == '@';
  bool control = bare == "@ctl";
  std::optional<auth::AccessRule> rule;
  if (view) {
    // Views apply the access rule themselves (a confined identity sees its
    // own subtree in every snapshot).
    rule = options_.rule;
    rule->identity = options_.identity;
    m.aname = std::string(bare);
  } else if (!options_.rule.root.empty()) {
    m.aname = options_.rule.root + "/" + m.aname;
  }
  std::string acting = fid->uid == claimed ? "" : " acting as uid " + std::to_string(fid->uid);
  Log("%s: attach%s%s uname=\"%s\" uid=%u%s aname=\"%s\"%s", options_.peer.c_str(),
      options_.identity.empty() ? "" : " by identity ", options_.identity.c_str(),
      QuotedForLog(m.uname).c_str(), claimed, acting.c_str(), QuotedForLog(m.aname).c_str(),
      options_.rule.read_only ? " read-only" : "");
  FsRequest req{m};
  req.uid = fid->uid;
  req.rule = std::move(rule);
  Submit(tag, std::move(req), [this, fid, control, num = m.fid](FsReply& r) {
    if (auto* a = std::get_if<Rattach>(&r.msg)) {
      fid->kind = Fid::kInode;
      fid->control = control;
      fid->ino = a->qid.path;
      fid->root_ino = a->qid.path;
      fid->qtype = a->qid.type;
    } else if (fid->live) {
      DropFid(num);
    }
  }, fid);
}

template <>
void Session::Handle(uint16_t tag, Tflush& m) {
  auto it = inflight_.find(m.oldtag);
  if (it == inflight_.end() || m.oldtag == tag) {
    return Reply(tag, Rflush{});
  }
  // The original reply goes out first, then Rflush (see Finish).
  it->second.push_back(tag);
}

template <>
void Session::Handle(uint16_t tag, Twalk& m) {
  FidPtr from = Established(m.fid);
  if (!from) return Error(tag, EBADF);
  if (m.newfid == m.fid && from->open) return Error(tag, EBUSY);
  FidPtr to = from;
  if (m.newfid != m.fid) {
    if (fids_.count(m.newfid)) return Error(tag, EBADF);
    if (FidsFull()) return Error(tag, EMFILE);
    to = std::make_shared<Fid>();
    to->uid = from->uid;
    to->root_ino = from->root_ino;
    to->control = from->control;
    fids_[m.newfid] = to;
  }
  size_t want = m.wnames.size();
  FsRequest req{m, from->ino};
  req.uid = from->uid;
  req.root_ino = from->root_ino;
  Submit(tag, std::move(req), [this, from, to, want, num = m.newfid](FsReply& r) {
    auto* w = std::get_if<Rwalk>(&r.msg);
    bool complete = w && w->wqids.size() == want;
    if (complete) {
      // The file system moved/added the reference to the new inode.
      if (want) {
        to->ino = w->wqids.back().path;
        to->qtype = w->wqids.back().type;
      } else {
        to->ino = from->ino;
        to->qtype = from->qtype;
      }
      to->kind = Fid::kInode;
      to->open = false;
    } else if (to != from && to->live) {
      DropFid(num);
    }
  }, to);
}

// A new fid for an inode by number (messages.h): made as a walk's new fid
// is, from the fid whose attach root confines it.
template <>
void Session::Handle(uint16_t tag, Trebind& m) {
  FidPtr from = Established(m.fid);
  if (!from) return Error(tag, EBADF);
  if (fids_.count(m.newfid)) return Error(tag, EBADF);
  if (FidsFull()) return Error(tag, EMFILE);
  auto to = std::make_shared<Fid>();
  to->uid = from->uid;
  to->root_ino = from->root_ino;
  to->control = from->control;
  fids_[m.newfid] = to;
  FsRequest req{m, from->ino};
  req.uid = from->uid;
  req.root_ino = from->root_ino;
  Submit(tag, std::move(req), [this, to, num = m.newfid](FsReply& r) {
    if (auto* b = std::get_if<Rrebind>(&r.msg)) {
      to->kind = Fid::kInode;
      to->ino = b->qid.path;
      to->qtype = b->qid.type;
    } else if (to->live) {
      DropFid(num);
    }
  }, to);
}

// A request inside a Tonce runs as if it had come alone with Tonce's tag
// (its own row, fids and rules, Tflush of the tag included); only its
// operation id goes with it to the file system (Submit). The frame must be
// a whole 9P2000.L request of a kOnce row (9p/ops.h), no larger than msize.
template <>
void Session::Handle(uint16_t tag, Tonce& m) {
  const std::string& frame = m.request.bytes;
  if (frame.size() > msize_) return Error(tag, EINVAL);
  Decoded d = Decode(reinterpret_cast<const uint8_t*>(frame.data()), frame.size(), k9P2000L);
  if (d.status != DecodeStatus::kOk || !MayRunOnce(d.msg)) return Error(tag, EINVAL);
  if (TraceEnabled()) Log("%s <- (once %llu) %s", options_.peer.c_str(), (unsigned long long)m.op,
                          Trace(tag, d.msg).c_str());
  once_[tag] = m.op;
  Dispatch(tag, std::move(d.msg));
}

template <>
void Session::Handle(uint16_t tag, Tlopen& m) {
  FidPtr f = Established(m.fid);
  if (!f) return Error(tag, EBADF);
  if (f->open) return Error(tag, EBUSY);
  FsRequest req{m, f->ino};
  req.uid = f->uid;
  Submit(tag, std::move(req), [f, flags = m.flags](FsReply& r) {
    if (std::holds_alternative<Rlopen>(r.msg)) {
      f->open = true;
      f->open_flags = flags;
    }
  });
}

template <>
void Session::Handle(uint16_t tag, Tlcreate& m) {
  FidPtr f = Established(m.fid);
  if (!f) return Error(tag, EBADF);
  if (f->open) return Error(tag, EBUSY);
  FsRequest req{m, f->ino};
  req.uid = f->uid;
  Submit(tag, std::move(req), [this, f, flags = m.flags](FsReply& r) {
    if (auto* c = std::get_if<Rlcreate>(&r.msg)) {
      f->ino = c->qid.path;
      f->qtype = c->qid.type;
      f->open = true;
      f->open_flags = flags;
    }
  }, f);
}

// The fid is open with 9P2000 mode `mode`: what it may read and write.
void Session::OpenedBy(const FidPtr& f, uint8_t mode) {
  f->open = true;
  switch (mode & 3) {
    case kOWrite: f->open_flags = O_WRONLY; break;
    case kORdwr: f->open_flags = O_RDWR; break;
    default: f->open_flags = O_RDONLY; break;  // OREAD, OEXEC
  }
  f->remove_on_close = mode & kORclose;
  f->dir_offset = 0;
  f->dir_cookie = 0;
}

template <>
void Session::Handle(uint16_t tag, Topen& m) {
  FidPtr f = Established(m.fid);
  if (!f) return Error(tag, EBADF);
  if (f->open) return Error(tag, EBUSY);
  // open(5): a directory is only read, never truncated or removed on close.
  bool writes = (m.mode & 3) == kOWrite || (m.mode & 3) == kORdwr;
  if ((f->qtype & kQtDir) && (writes || (m.mode & (kOTrunc | kORclose)))) return Error(tag, EISDIR);
  if (f->ino == f->root_ino && (m.mode & kORclose)) return Error(tag, EBUSY);  // see Tremove
  FsRequest req{m, f->ino};
  req.uid = f->uid;
  req.dialect = dialect_;
  Submit(tag, std::move(req), [this, f, mode = m.mode](FsReply& r) {
    if (auto* o = std::get_if<Ropen>(&r.msg)) {
      f->qtype = o->qid.type;
      OpenedBy(f, mode);
    }
  });
}

template <>
void Session::Handle(uint16_t tag, TcreateU& m) {
  FidPtr f = Established(m.fid);
  if (!f) return Error(tag, EBADF);
  if (f->open) return Error(tag, EBUSY);
  if (!(f->qtype & kQtDir)) return Error(tag, ENOTDIR);
  bool writes = (m.mode & 3) == kOWrite || (m.mode & 3) == kORdwr;
  if ((m.perm & kDmDir) && (writes || (m.mode & kOTrunc))) return Error(tag, EISDIR);
  FsRequest req{m, f->ino};
  req.uid = f->uid;
  req.dialect = dialect_;
  if (m.perm & kDmLink) {
    // .u hard link: the extension names the fid of the file to link.
    uint32_t num = DecimalOf(m.extension.substr(0, m.extension.find('\n')));
    FidPtr g = num == kNoUid ? nullptr : Established(num);
    if (!g) return Error(tag, EBADF);
    req.ino2 = g->ino;
  }
  Submit(tag, std::move(req), [this, f, mode = m.mode](FsReply& r) {
    if (auto* c = std::get_if<Rcreate>(&r.msg)) {
      f->ino = c->qid.path;
      f->qtype = c->qid.type;
      OpenedBy(f, mode);
    }
  }, f);
}

template <>
void Session::Handle(uint16_t tag, TwstatU& m) {
  FidPtr f = Established(m.fid);
  if (!f) return Error(tag, EBADF);
  if (!m.stat.name.empty() && f->ino == f->root_ino) return Error(tag, EBUSY);  // see Trename
  FsRequest req{m, f->ino};
  req.uid = f->uid;
  req.dialect = dialect_;
  Submit(tag, std::move(req));
}

template <>
void Session::Handle(uint16_t tag, Tread& m) {
  auto it = fids_.find(m.fid);
  if (it == fids_.end()) return Error(tag, EBADF);
  FidPtr f = it->second;
  uint32_t count = std::min(m.count, msize_ - kIoHeaderSize);
  if (f->kind == Fid::kXattrRead) {
    Rread r;
    if (m.offset < f->xattr_data.size())
      r.data.bytes = f->xattr_data.substr(size_t(m.offset), count);
    return Reply(tag, std::move(r));
  }
  if (f->kind != Fid::kInode || !f->open || (f->open_flags & O_ACCMODE) == O_WRONLY)
    return Error(tag, EBADF);
  m.count = count;
  FsRequest req{m, f->ino};
  req.uid = f->uid;
  req.dialect = dialect_;
  if (dialect_ != k9P2000L && (f->qtype & kQtDir)) {
    // A directory is read as stat records; seeking is allowed only back
    // to the start (stat(5), read(5)).
    if (m.offset != 0 && m.offset != f->dir_offset) return Error(tag, EINVAL);
    req.dir_cookie = m.offset == 0 ? 0 : f->dir_cookie;
    return Submit(tag, std::move(req), [f, offset = m.offset](FsReply& r) {
      if (auto* rr = std::get_if<Rread>(&r.msg); rr && !rr->data.bytes.empty()) {
        f->dir_offset = offset + rr->data.bytes.size();
        f->dir_cookie = r.next_cookie;
      }
    });
  }
  Submit(tag, std::move(req));
}

template <>
void Session::Handle(uint16_t tag, Twrite& m) {
  auto it = fids_.find(m.fid);
  if (it == fids_.end()) return Error(tag, EBADF);
  FidPtr f = it->second;
  if (f->kind == Fid::kXattrWrite) {
    size_t n = m.data.bytes.size();
    if (m.offset != f->xattr_data.size() || f->xattr_data.size() + n > f->xattr_size)
      return Error(tag, EINVAL);
    f->xattr_data += m.data.bytes;
    return Reply(tag, Rwrite{uint32_t(n)});
  }
  if (f->kind != Fid::kInode || !f->open || (f->open_flags & O_ACCMODE) == O_RDONLY)
    return Error(tag, EBADF);
  FsRequest req{std::move(m), f->ino};
  req.uid = f->uid;
  Submit(tag, std::move(req));
}

template <>
void Session::Handle(uint16_t tag, Tclunk& m) {
  auto it = fids_.find(m.fid);
  if (it == fids_.end()) return Error(tag, EBADF);
  FidPtr f = it->second;
  DropFid(m.fid);  // clunk frees the fid whatever happens next
  if (f->kind == Fid::kPending) return Error(tag, EBADF);
  if (f->kind == Fid::kXattrRead) return Reply(tag, Rclunk{});
  if (f->remove_on_close && f->kind == Fid::kInode) {
    // ORCLOSE: the clunk removes the file (and drops the reference).
    FsRequest req{Tremove{m.fid}, f->ino};
    req.uid = f->uid;
    return Submit(tag, std::move(req), [](FsReply& r) {
      if (std::holds_alternative<Rremove>(r.msg)) r.msg = Rclunk{};
    });
  }
  if (f->kind == Fid::kInode && (!f->open || (f->open_flags & O_ACCMODE) == O_RDONLY)) {
    // Nothing to flush and nothing that can fail: drop the reference in
    // the background and answer now (saves a trip to the store thread on
    // every walk/getattr/clunk). The release is queued before any later
    // request, so ordering is unchanged.
    GiveBack(*f);
    return Reply(tag, Rclunk{});
  }
  FsRequest req{m, f->ino};
  req.uid = f->uid;
  if (f->kind == Fid::kXattrWrite) {
    if (f->xattr_data.size() != f->xattr_size) {
      GiveBack(*f);
      return Error(tag, EINVAL);
    }
    req.xattr = FsRequest::XattrCommit{f->xattr_name, std::move(f->xattr_data),
                                       f->xattr_flags};
  }
  Submit(tag, std::move(req));
}

template <>
void Session::Handle(uint16_t tag, Tremove& m) {
  auto it = fids_.find(m.fid);
  if (it == fids_.end()) return Error(tag, EBADF);
  FidPtr f = it->second;
  DropFid(m.fid);
  if (f->kind != Fid::kInode) {
    GiveBack(*f);
    return Error(tag, EBADF);
  }
  if (f->ino == f->root_ino) {
    // The attach root (a confined identity's whole tree) is not removed
    // through itself, as rmdir of a mount point is EBUSY.
    GiveBack(*f);
    return Error(tag, EBUSY);
  }
  FsRequest req{m, f->ino};
  req.uid = f->uid;
  Submit(tag, std::move(req));
}

template <>
void Session::Handle(uint16_t tag, Treaddir& m) {
  FidPtr f = Established(m.fid);
  if (!f || !f->open) return Error(tag, EBADF);
  m.count = std::min(m.count, msize_ - kIoHeaderSize);
  FsRequest req{m, f->ino};
  Submit(tag, std::move(req));
}

template <>
void Session::Handle(uint16_t tag, Txattrwalk& m) {
  FidPtr f = Established(m.fid);
  if (!f) return Error(tag, EBADF);
  if (m.newfid == m.fid || fids_.count(m.newfid)) return Error(tag, EBADF);
  if (FidsFull()) return Error(tag, EMFILE);
  auto x = std::make_shared<Fid>();
  // The value (at most kMaxXattrValue) is held by the fid until clunked.
  if (!AccountXattr(x, 65536)) return Error(tag, ENOSPC);
  fids_[m.newfid] = x;
  FsRequest req{m, f->ino};
  Submit(tag, std::move(req), [this, x, num = m.newfid](FsReply& r) {
    if (std::holds_alternative<Rxattrwalk>(r.msg)) {
      x->kind = Fid::kXattrRead;
      x->xattr_data = std::move(r.xattr_data);
    } else if (x->live) {
      DropFid(num);
    }
  }, x);
}

template <>
void Session::Handle(uint16_t tag, Txattrcreate& m) {
  FidPtr f = Established(m.fid);
  if (!f || f->open) return Error(tag, EBADF);
  if (m.attr_size > 65536) return Error(tag, E2BIG);
  if (m.name.empty() || m.name.size() > 255) return Error(tag, EINVAL);
  if (Status may = options_.rule.owner.MaySetXattr(m.name); !may.ok()) return Error(tag, may.err());
  if (!AccountXattr(f, size_t(m.attr_size))) return Error(tag, ENOSPC);
  // The fid now stands for the attribute being written; it is stored at
  // clunk. It keeps the inode reference it had.
  f->kind = Fid::kXattrWrite;
  f->xattr_name = m.name;
  f->xattr_size = m.attr_size;
  f->xattr_flags = m.flags;
  f->xattr_data.clear();
  Reply(tag, Rxattrcreate{});
}

template <>
void Session::Handle(uint16_t tag, Tlock& m) {
  FidPtr f = Established(m.fid);
  if (!f) return Error(tag, EBADF);
  // A write lock keeps writers out: not something a read-only identity
  // may hold.
  if (options_.rule.read_only && m.type == kLockWrite) return Error(tag, EROFS);
  LockOwner owner{this, m.proc_id, m.client_id, options_.identity};
  // Only a relay restoring its session reclaims.
  uint32_t flags = options_.grace_aware ? m.flags : m.flags & ~uint32_t(kLockFlagReclaim);
  Reply(tag, Rlock{locks_.Lock(f->ino, m.type, m.start, m.length, owner, flags,
                               options_.grace_aware)});
}

template <>
void Session::Handle(uint16_t tag, Tgetlock& m) {
  FidPtr f = Established(m.fid);
  if (!f) return Error(tag, EBADF);
  LockOwner owner{this, m.proc_id, m.client_id, options_.identity};
  LockInfo i = locks_.Test(f->ino, m.type, m.start, m.length, owner);
  if (i.type == kLockUnlock) {
    Reply(tag, Rgetlock{kLockUnlock, m.start, m.length, m.proc_id, m.client_id});
  } else {
    Reply(tag, Rgetlock{i.type, i.start, i.length, i.proc_id, i.client_id});
  }
}

// Requests whose row says the session's whole rule is "the fid(s) must
// name an inode" (9p/ops.h, SessionRule::kGeneric).
template <class T, class R>
void Session::HandleSimple(uint16_t tag, T& m, R) {
  constexpr size_t kCount = std::tuple_size_v<std::decay_t<decltype(R::kFids)>>;
  static_assert(kCount == 1 || kCount == 2, "a generic request names one or two fids");
  uint32_t num[2] = {kNoFid, kNoFid};
  size_t i = 0;
  std::apply([&](auto... field) { ((num[i++] = m.*field), ...); }, R::kFids);
  FidPtr f = Established(num[0]);
  if (!f) return Error(tag, EBADF);
  FsRequest req{m, f->ino};
  req.uid = f->uid;
  req.dialect = dialect_;
  // A second fid of NOFID names no inode (ino2 0: the file system says
  // what that means, ENOENT).
  if (kCount == 2 && num[1] != kNoFid) {
    FidPtr g = Established(num[1]);
    if (!g) return Error(tag, EBADF);
    req.ino2 = g->ino;
  }
  Submit(tag, std::move(req));
}

// The fid a request names first (its row's first kFids field), if any.
template <class T, class R>
static uint32_t FirstFid(const T& m, R) {
  if constexpr (std::tuple_size_v<std::decay_t<decltype(R::kFids)>> == 0) return kNoFid;
  else return m.*std::get<0>(R::kFids);
}

template <class T, class R>
void Session::Run(uint16_t tag, T& m, R) {
  if constexpr (R::kServed == Served::kNormalized) {
    return Error(tag, EOPNOTSUPP);  // unreachable: Normalized() turned it into its .u form
  } else {
    uint32_t first = FirstFid(m, R{});
    if constexpr (R::kNotOnRoot) {
      FidPtr f = Established(first);
      if (f && f->ino == f->root_ino) return Error(tag, EBUSY);  // see Tremove
    }
    if (options_.rule.read_only && R::ChangesTree(m)) {
      // Writing a control file is allowed: the file system checks each
      // command against the rule itself.
      auto it = fids_.find(first);
      bool control = R::kWritesControl && it != fids_.end() && it->second->control;
      if (!control) {
        // A request that clunks its fid does so even when it fails.
        if (R::kRefs == Refs::kReleases && it != fids_.end()) {
          if (it->second->kind == Fid::kInode) GiveBack(*it->second);
          DropFid(first);
        }
        return Error(tag, EROFS);
      }
    }
    if constexpr (R::kSession == SessionRule::kGeneric) HandleSimple(tag, m, R{});
    else Handle(tag, m);
  }
}

bool Session::WaitForFid(uint16_t tag, Message& msg) {
  FidPtr busy;
  ForEachFid(msg, [&](uint32_t num) {
    auto it = fids_.find(num);
    if (!busy && it != fids_.end() && it->second->rebinding > 0) busy = it->second;
  });
  if (!busy) return false;
  busy->waiting.emplace_back(tag, std::move(msg));
  return true;
}

void Session::Rebound(const FidPtr& f) {
  if (f->rebinding > 0) f->rebinding--;
  // Run what waited, in order, until one of them rebinds the fid again
  // (the rest then wait for that one).
  while (f->rebinding == 0 && !f->waiting.empty() && !closed_) {
    auto next = std::move(f->waiting.front());
    f->waiting.erase(f->waiting.begin());
    Dispatch(next.first, std::move(next.second));
  }
}

Message Session::Normalized(Message&& msg) const {
  if (auto* a = std::get_if<Tattach2000>(&msg))
    return Tattach{a->fid, a->afid, std::move(a->uname), std::move(a->aname), kNoUid};
  if (auto* a = std::get_if<Tauth2000>(&msg))
    return Tauth{a->afid, std::move(a->uname), std::move(a->aname), kNoUid};
  if (auto* c = std::get_if<Tcreate>(&msg))
    return TcreateU{c->fid, std::move(c->name), c->perm, c->mode, ""};
  if (auto* w = std::get_if<Twstat>(&msg)) {
    TwstatU u{w->fid, DontTouchStat()};
    static_cast<Stat&>(u.stat) = std::move(w->stat);
    return u;
  }
  return std::move(msg);
}

void Session::Dispatch(uint16_t tag, Message&& in) {
  Message msg = Normalized(std::move(in));
  if (WaitForFid(tag, msg)) return;
  std::visit(
      [&](auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (kIsRequest<T>) Run(tag, m, Op<T>{});
        else Error(tag, EOPNOTSUPP);  // unreachable: OnFrame answers R-messages
      },
      msg);
}

}  // namespace muscle::p9
