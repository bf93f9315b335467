#include "9p/restore_book.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <set>

#include "9p/codec.h"
#include "9p/ops.h"

namespace muscle::p9 {

namespace {

uint32_t Le32(const char* p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
uint16_t Le16(const char* p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return v;
}

Decoded DecodeFrame(std::string_view f) {
  return Decode(reinterpret_cast<const uint8_t*>(f.data()), f.size());
}

// The requests whose effect on fids the book follows (decoded when sent).
bool ChangesFids(uint8_t type) {
  switch (type) {
    case Tversion::kType: case Tattach::kType: case Twalk::kType: case Tlopen::kType:
    case Tlcreate::kType: case Txattrwalk::kType: case Txattrcreate::kType:
    case Tclunk::kType: case Tremove::kType: case Tflush::kType: case Tlock::kType:
      return true;
    default:
      return false;
  }
}

// The requests a retry must not do twice: the rows of 9p/ops.h that may
// go in a Tonce, by wire type, except Twrite (it carries its offset).
template <class V>
struct OnceTypes;
template <class... Ts>
struct OnceTypes<std::variant<Ts...>> {
  static constexpr std::array<bool, 256> Make() {
    std::array<bool, 256> t{};
    auto add = [&]<class T>(T*) {
      if constexpr (kIsRequest<T>) t[T::kType] = t[T::kType] || Op<T>::kOnce;
    };
    (add(static_cast<Ts*>(nullptr)), ...);
    t[Twrite::kType] = false;
    t[Tlopen::kType] = false;  // only with O_TRUNC (Track)
    return t;
  }
};
constexpr std::array<bool, 256> kNotIdempotent = OnceTypes<Message>::Make();
bool NotIdempotent(uint8_t type) { return kNotIdempotent[type]; }

// Tlopen flags (9P2000.L, Linux's values) a reopen must not repeat.
constexpr uint32_t kCreate = 0100, kExcl = 0200, kTrunc = 01000, kAppend = 02000;

// The fid a Tread or Twrite names (their first field), read in place: the
// hot requests are never decoded for it.
bool FirstFidOfIo(std::string_view frame, uint32_t* fid) {
  uint8_t type = uint8_t(frame[4]);
  if ((type != Tread::kType && type != Twrite::kType) || frame.size() < 11) return false;
  *fid = Le32(frame.data() + 7);
  return true;
}

}  // namespace

std::string_view FrameSplitter::Next() {
  if (bad_) return {};
  size_t have = buf_.size() - pos_;
  if (have >= 4) {
    uint32_t size = Le32(buf_.data() + pos_);
    if (size < kHeaderSize || size > max_) {
      bad_ = true;
      return {};
    }
    if (have >= size) {
      std::string_view f(buf_.data() + pos_, size);
      pos_ += size;
      return f;
    }
  }
  buf_.erase(0, pos_);
  pos_ = 0;
  return {};
}

std::string RestoreBook::Frame(uint16_t tag, const Message& m) {
  std::string out;
  Encode(tag, m, out);
  return out;
}

std::string RestoreBook::Wrap(uint16_t tag, std::string_view frame) {
  std::string out;
  Encode(tag, Tonce{next_op_++, Data{std::string(frame)}}, out);
  return out;
}

bool RestoreBook::CanRestore() const { return once_ && msize_ != 0 && version_ == "9P2000.L"; }

void RestoreBook::FromClient(std::string_view frame, std::string& to_server,
                             std::string& to_client) {
  uint16_t tag = Le16(frame.data() + 5);
  switch (state_) {
    case kNormal:
      return Track(tag, frame, to_server, to_client);
    case kFailing: {
      Decoded d = DecodeFrame(frame);
      return AnswerHere(tag, d.msg, ecode_, to_client);
    }
    default:
      held_.emplace_back(frame);
      held_bytes_ += frame.size();
  }
}

void RestoreBook::Track(uint16_t tag, std::string_view frame, std::string& to_server,
                        std::string& to_client) {
  if (lazy_in_flight_.count(tag)) {  // the book's own request still has that tag
    tag_waits_.emplace_back(frame);
    return;
  }
  uint8_t type = uint8_t(frame[4]);
  Pending p;
  p.seq = seq_++;
  uint32_t io_fid = kNoFid;
  bool io = FirstFidOfIo(frame, &io_fid);
  if (!lost_.empty() && io && lost_.count(io_fid)) {
    Encode(tag, Rlerror{ESTALE}, to_client);
    return;
  }
  bool lazy = unbound_ > 0;
  // Decoded for the fids it names too; kept (p.decoded) only when its
  // reply changes fids (Answer), so that other replies are not decoded.
  Message msg;
  bool have = false;
  if (ChangesFids(type) || ((!lost_.empty() || lazy) && !io)) {
    Decoded d = DecodeFrame(frame);
    if (d.status == DecodeStatus::kOk) {
      msg = std::move(d.msg);
      have = true;
      if (!lost_.empty() && NamesLostFid(msg)) return AnswerHere(tag, msg, ESTALE, to_client);
    }
  }
  if (auto* l = have ? std::get_if<Tlock>(&msg) : nullptr) {
    if (l->flags & kLockFlagReclaim) {  // only the book reclaims
      Encode(tag, Rlock{kLockError}, to_client);
      return;
    }
  }
  if (auto* fl = have ? std::get_if<Tflush>(&msg) : nullptr) {
    // A request waiting for a tag of the book's own never went out:
    // flushed here.
    auto w = std::find_if(tag_waits_.begin(), tag_waits_.end(),
                          [&](const std::string& f) { return Le16(f.data() + 5) == fl->oldtag; });
    if (w != tag_waits_.end()) {
      tag_waits_.erase(w);
      Encode(tag, Rflush{}, to_client);
      return;
    }
    // A lock held back for a grace period is not on the server: flushed
    // here (else a retry could cross the flush and be granted unseen).
    auto g = std::find_if(graced_.begin(), graced_.end(),
                          [&](auto& e) { return e.first == fl->oldtag; });
    auto old = pending_.find(fl->oldtag);
    if (g != graced_.end() && old != pending_.end() && old->second.seq == g->second) {
      graced_.erase(g);
      pending_.erase(old);
      Encode(tag, Rflush{}, to_client);
      return;
    }
  }
  if (auto* v = have ? std::get_if<Tversion>(&msg) : nullptr) {
    // A new conversation: nothing of the old one is restored.
    asked_version_ = v->version;
    asked_msize_ = v->msize;
    msize_ = 0;
    fids_.clear();
    lost_.clear();
    attaches_.clear();
    // The server forgets the requests before a Tversion, unanswered, and
    // the session's locks.
    pending_.clear();
    graced_.clear();
    held_locks_.ReleaseSession(nullptr);
    anchors_.clear();
    lazy_per_attach_.clear();
    unbound_ = 0;
    lazy = false;
    lazy_in_flight_.clear();
    tag_waits_.clear();
  }
  if (lazy) {
    // A clunk of a fid not used since the restore: the server never had it.
    if (auto* c = have ? std::get_if<Tclunk>(&msg) : nullptr) {
      auto f = fids_.find(c->fid);
      if (f != fids_.end() && f->second.unbound && !f->second.binding) {
        int attach = f->second.attach;
        fids_.erase(f);
        Unlazy(attach, to_server);
        Encode(tag, Rclunk{}, to_client);
        return;
      }
    }
    auto bind = [&](uint32_t fid) {
      auto f = fids_.find(fid);
      if (f == fids_.end() || !f->second.unbound) return;
      if (!f->second.binding) BindLazily(tag, fid, f->second, to_server);
      p.after_rebind = true;
    };
    if (io) bind(io_fid);
    else if (have) ForEachNamedFid(msg, bind);
  }
  if (have && ChangesFids(type)) {
    p.msg = std::move(msg);
    p.decoded = true;
  }
  bool truncates = type == Tlopen::kType && frame.size() >= 15 && (Le32(frame.data() + 11) & kTrunc);
  if (once_ && version_ == "9P2000.L" && (NotIdempotent(type) || truncates)) {
    p.frame = Wrap(tag, frame);
    p.inner = p.frame.size() - frame.size();
  } else {
    p.frame.assign(frame);
  }
  to_server += p.frame;
  pending_[tag] = std::move(p);
}

void RestoreBook::FromServer(std::string_view frame, std::string& to_server,
                             std::string& to_client) {
  uint16_t tag = Le16(frame.data() + 5);
  if (!lazy_in_flight_.empty() && lazy_in_flight_.count(tag)) {
    Decoded d = DecodeFrame(frame);
    return FromServerLazy(tag, d.msg, to_server, to_client);
  }
  if (state_ == kVersion || state_ == kReplaying) {
    bool own = state_ == kVersion ? tag == kNoTag : in_flight_.count(tag) > 0;
    if (own) {
      Decoded d = DecodeFrame(frame);
      return FromServerOwn(tag, d.msg, to_server, to_client);
    }
  }
  auto it = pending_.find(tag);
  if (it == pending_.end()) return;  // nothing waits for it (answered here already)
  // Its fid's lazy rebind failed: the server answered EBADF (read in
  // place: Rlerror's ecode[4] follows the header), the fid is lost
  // (ESTALE), as after a restore.
  if (it->second.after_rebind && !lost_.empty() && uint8_t(frame[4]) == Rlerror::kType &&
      frame.size() >= kHeaderSize + 4 && Le32(frame.data() + kHeaderSize) == EBADF) {
    Decoded req = DecodeFrame(it->second.ClientFrame());
    if (req.status == DecodeStatus::kOk && NamesLostFid(req.msg)) {
      AnswerHere(tag, req.msg, ESTALE, to_client);
      pending_.erase(it);
      return;
    }
  }
  if (it->second.decoded) {
    Decoded d = DecodeFrame(frame);
    auto* r = std::get_if<Rlock>(&d.msg);
    auto* l = std::get_if<Tlock>(&it->second.msg);
    if (r && l && r->status == kLockGrace) {
      if (l->flags & kLockFlagBlock) {
        graced_.emplace_back(tag, it->second.seq);  // RetryGraced sends it again
        return;
      }
      Encode(tag, Rlock{kLockBlocked}, to_client);  // a try: EAGAIN
      pending_.erase(it);
      return;
    }
    Answer(it->second, d.msg);
  }
  to_client.append(frame);
  pending_.erase(tag);
}

int RestoreBook::AttachIndex(const Tattach& m) {
  for (size_t i = 0; i < attaches_.size(); i++) {
    const Tattach& a = attaches_[i].m;
    if (a.uname == m.uname && a.aname == m.aname && a.n_uname == m.n_uname && a.afid == m.afid)
      return int(i);
  }
  attaches_.push_back({m});
  return int(attaches_.size() - 1);
}

// What a reply does to the fids of the request it answers.
void RestoreBook::Answer(const Pending& p, const Message& reply) {
  bool ok = !std::holds_alternative<Rlerror>(reply);
  if (std::holds_alternative<Tversion>(p.msg)) {
    if (auto* r = std::get_if<Rversion>(&reply)) {
      msize_ = r->msize;
      version_ = r->version;
    }
  } else if (auto* a = std::get_if<Tattach>(&p.msg)) {
    if (auto* r = std::get_if<Rattach>(&reply)) {
      Fid f;
      f.path = r->qid.path;
      f.attach = AttachIndex(*a);
      f.root = true;
      fids_[a->fid] = f;
      lost_.erase(a->fid);
    }
  } else if (auto* w = std::get_if<Twalk>(&p.msg)) {
    auto* r = std::get_if<Rwalk>(&reply);
    auto from = fids_.find(w->fid);
    if (r && r->wqids.size() == w->wnames.size() && from != fids_.end()) {
      Fid f = from->second;
      f.open = -1;
      f.unbound = f.binding = false;
      if (!r->wqids.empty()) {
        f.path = r->wqids.back().path;
        f.root = false;
      }
      fids_[w->newfid] = f;
      lost_.erase(w->newfid);
    }
  } else if (auto* o = std::get_if<Tlopen>(&p.msg)) {
    auto f = fids_.find(o->fid);
    if (ok && f != fids_.end()) f->second.open = o->flags;
  } else if (auto* c = std::get_if<Tlcreate>(&p.msg)) {
    auto f = fids_.find(c->fid);
    auto* r = std::get_if<Rlcreate>(&reply);
    if (r && f != fids_.end()) {
      f->second.path = r->qid.path;
      f->second.open = c->flags;
      f->second.root = false;
    }
  } else if (auto* x = std::get_if<Txattrwalk>(&p.msg)) {
    auto from = fids_.find(x->fid);
    if (ok && from != fids_.end()) {
      Fid f = from->second;
      f.xattr = true;
      f.unbound = f.binding = false;
      fids_[x->newfid] = f;
    }
  } else if (auto* xc = std::get_if<Txattrcreate>(&p.msg)) {
    auto f = fids_.find(xc->fid);
    if (ok && f != fids_.end()) f->second.xattr = true;
  } else if (auto* l = std::get_if<Tlock>(&p.msg)) {
    auto* r = std::get_if<Rlock>(&reply);
    auto f = fids_.find(l->fid);
    if (r && r->status == kLockSuccess && f != fids_.end())
      held_locks_.Lock(f->second.path, l->type, l->start, l->length,
                       LockOwner{nullptr, l->proc_id, l->client_id});
  } else if (auto* cl = std::get_if<Tclunk>(&p.msg)) {
    fids_.erase(cl->fid);
    lost_.erase(cl->fid);
  } else if (auto* rm = std::get_if<Tremove>(&p.msg)) {
    fids_.erase(rm->fid);
    lost_.erase(rm->fid);
  } else if (auto* fl = std::get_if<Tflush>(&p.msg)) {
    // The flushed request was answered before this, or never will be.
    auto old = pending_.find(fl->oldtag);
    if (old != pending_.end() && &old->second != &p) pending_.erase(old);
  }
}

bool RestoreBook::NamesLostFid(const Message& msg) const {
  bool lost = false;
  ForEachNamedFid(msg, [&](uint32_t fid) { lost = lost || lost_.count(fid) > 0; });
  return lost;
}

uint16_t RestoreBook::LazyTag(uint16_t avoid) {
  for (;;) {
    uint16_t t = next_lazy_tag_--;
    if (next_lazy_tag_ < kLazyTagLow) next_lazy_tag_ = kNoTag - 1;
    if (t != kNoTag && t != avoid && !pending_.count(t) && !lazy_in_flight_.count(t)) return t;
  }
}

void RestoreBook::BindLazily(uint16_t client_tag, uint32_t fid, Fid& f, std::string& to_server) {
  uint32_t anchor = size_t(f.attach) < anchors_.size() ? anchors_[size_t(f.attach)] : kNoFid;
  uint16_t tag = LazyTag(client_tag);
  // No anchor (its attach failed): the server answers EBADF, and the fid
  // is lost as any whose rebind fails.
  Encode(tag, Trebind{anchor, fid, f.path}, to_server);
  lazy_in_flight_[tag] = fid;
  f.binding = true;
}

void RestoreBook::Unlazy(int attach, std::string& to_server) {
  if (state_ != kNormal || unbound_ == 0) return;  // a restore counts again
  unbound_--;
  size_t i = size_t(attach);
  if (i >= lazy_per_attach_.size() || --lazy_per_attach_[i] != 0 || anchors_[i] == kNoFid) return;
  uint16_t tag = LazyTag(kNoTag);
  Encode(tag, Tclunk{anchors_[i]}, to_server);
  lazy_in_flight_[tag] = kNoFid;
  anchors_[i] = kNoFid;
}

void RestoreBook::FromServerLazy(uint16_t tag, const Message& reply, std::string& to_server,
                                 std::string& to_client) {
  auto l = lazy_in_flight_.find(tag);
  uint32_t fid = l->second;
  lazy_in_flight_.erase(l);
  auto f = fids_.find(fid);
  if (fid != kNoFid && f != fids_.end() && f->second.binding) {
    int attach = f->second.attach;
    f->second.binding = false;
    if (std::holds_alternative<Rrebind>(reply)) f->second.unbound = false;
    else MarkLost(fid);
    Unlazy(attach, to_server);
  }
  if (tag_waits_.empty()) return;
  std::vector<std::string> waits;
  waits.swap(tag_waits_);
  for (auto& w : waits) Track(Le16(w.data() + 5), w, to_server, to_client);
}

void RestoreBook::AnswerHere(uint16_t tag, const Message& m, uint32_t ecode,
                             std::string& to_client) {
  if (std::holds_alternative<Tflush>(m)) {
    Encode(tag, Rflush{}, to_client);
    return;
  }
  if (auto* c = std::get_if<Tclunk>(&m)) {
    // The clunk of an xattr fid is what sets the attribute: a lost one
    // cannot have.
    auto l = lost_.find(c->fid);
    bool xattr = l != lost_.end() ? l->second : (fids_.count(c->fid) && fids_[c->fid].xattr);
    fids_.erase(c->fid);
    if (l != lost_.end()) lost_.erase(l);
    if (xattr) Encode(tag, Rlerror{EIO}, to_client);
    else Encode(tag, Rclunk{}, to_client);
    return;
  }
  if (auto* r = std::get_if<Tremove>(&m)) {
    fids_.erase(r->fid);
    lost_.erase(r->fid);
  }
  Encode(tag, Rlerror{ecode}, to_client);
}

void RestoreBook::MarkLost(uint32_t fid) {
  auto f = fids_.find(fid);
  bool xattr = f != fids_.end() && f->second.xattr;
  if (lost_.emplace(fid, xattr).second) restored_.lost++;
  if (f != fids_.end()) fids_.erase(f);
}

void RestoreBook::Lost() {
  if (state_ == kFailing) return;
  state_ = kAway;
  graced_.clear();  // still waiting: resent with the others
  in_flight_.clear();
  todo_.clear();
  DropLazy();
}

// The server's session is gone, with the anchors and the lazy rebinds in
// flight; client frames that waited for a tag are held with the others.
void RestoreBook::DropLazy() {
  lazy_in_flight_.clear();
  for (auto& [fid, f] : fids_) f.binding = false;
  for (auto it = tag_waits_.rbegin(); it != tag_waits_.rend(); ++it) {
    held_bytes_ += it->size();
    held_.push_front(std::move(*it));
  }
  tag_waits_.clear();
}

void RestoreBook::RetryGraced(std::string& to_server) {
  if (state_ != kNormal) return;
  for (auto [tag, seq] : graced_) {
    auto it = pending_.find(tag);
    if (it != pending_.end() && it->second.seq == seq) to_server += it->second.frame;
  }
  graced_.clear();
}

void RestoreBook::LoseLocks(uint64_t path) {
  std::vector<uint32_t> on_file;
  for (auto& [fid, x] : fids_)
    if (x.path == path) on_file.push_back(fid);
  std::set<std::pair<uint32_t, std::string>> owners;
  for (auto& [ino, lock] : held_locks_.All()) {
    if (ino != path) continue;
    owners.emplace(lock.proc_id, lock.client_id);
    held_locks_.Lock(ino, kLockUnlock, lock.start, lock.length,
                     LockOwner{nullptr, lock.proc_id, lock.client_id});
    restored_.locks_lost++;
  }
  // What was reclaimed of the file is given back, through one of its fids
  // (the server still has them), before they are clunked.
  if (!on_file.empty())
    for (auto& [proc, client] : owners)
      todo_.push_back({Tlock{on_file[0], kLockUnlock, 0, 0, 0, proc, client}, on_file[0],
                       Own::kUnlockLost});
  for (uint32_t fid : on_file) {
    MarkLost(fid);
    ClunkLost(fid);
  }
}

void RestoreBook::Restore(std::string& to_server) {
  state_ = kVersion;
  restored_ = {};
  in_flight_.clear();
  todo_.clear();
  Encode(kNoTag, Tversion{asked_msize_, asked_version_}, to_server);
}

uint16_t RestoreBook::FreeTag() {
  for (;;) {
    uint16_t t = next_tag_++;
    if (t != kNoTag && !pending_.count(t) && !in_flight_.count(t)) return t;
  }
}

uint32_t RestoreBook::TempFid() {
  for (uint32_t f = kNoFid - 1;; f--) {
    if (fids_.count(f) || lost_.count(f)) continue;
    if (std::find(anchors_.begin(), anchors_.end(), f) != anchors_.end()) continue;
    if (std::find(temps_.begin(), temps_.end(), f) != temps_.end()) continue;
    return f;
  }
}

void RestoreBook::FromServerOwn(uint16_t tag, const Message& reply, std::string& to_server,
                                std::string& to_client) {
  bool ok = !std::holds_alternative<Rlerror>(reply);
  progress_++;
  if (state_ == kVersion) {
    auto* r = std::get_if<Rversion>(&reply);
    if (!r || r->version != version_ || r->msize < msize_) {
      if (on_fatal)
        on_fatal("the server's new session does not speak " + version_ + " with msize " +
                 std::to_string(msize_) + " any more");
      return;
    }
    // What to send: attaches first (the client's root fids, and an
    // anchor of the book's own for each attach with fids to bind), then a
    // rebind of each fid needed at once, then the opens. The other fids
    // wait for their first use (Track).
    size_t n = attaches_.size();
    temps_.assign(n, kNoFid);
    anchors_.assign(n, kNoFid);
    lazy_per_attach_.assign(n, 0);
    unbound_ = 0;
    std::set<uint32_t> named;  // by requests waiting for their reply
    for (auto& [t, p] : pending_) {
      Decoded d = DecodeFrame(p.ClientFrame());
      if (d.status == DecodeStatus::kOk)
        ForEachNamedFid(d.msg, [&](uint32_t fid) { named.insert(fid); });
    }
    std::set<uint64_t> locked;
    for (auto& [path, lock] : held_locks_.All()) locked.insert(path);
    std::vector<uint32_t> root(n, kNoFid);
    std::vector<bool> rebinds(n, false);
    std::vector<uint32_t> xattrs;
    for (auto& [fid, f] : fids_) {
      if (f.xattr) {
        xattrs.push_back(fid);
        continue;
      }
      size_t i = size_t(f.attach);
      if (f.root && root[i] == kNoFid) root[i] = fid;
      f.binding = false;
      f.unbound = !f.root && f.open < 0 && !locked.count(f.path) && !named.count(fid);
      if (f.unbound) {
        lazy_per_attach_[i]++;
        unbound_++;
      } else if (!f.root) {
        rebinds[i] = true;
      }
    }
    for (uint32_t fid : xattrs) MarkLost(fid);
    for (size_t i = 0; i < n; i++) {
      if (lazy_per_attach_[i] == 0 && (!rebinds[i] || root[i] != kNoFid)) continue;
      Tattach a = attaches_[i].m;
      a.fid = root[i] = temps_[i] = TempFid();
      todo_.push_back({a, a.fid, Own::kAttach});
    }
    restored_.deferred = unbound_;
    for (auto& [fid, f] : fids_) {
      if (!f.root) continue;
      Tattach a = attaches_[size_t(f.attach)].m;
      a.fid = fid;
      todo_.push_back({a, fid, Own::kAttach});
    }
    for (auto& [fid, f] : fids_)
      if (!f.root && !f.unbound)
        todo_.push_back({Trebind{root[size_t(f.attach)], fid, f.path}, fid, Own::kRebind});
    for (auto& [fid, f] : fids_)
      if (f.open >= 0)
        todo_.push_back({Tlopen{fid, uint32_t(f.open) & ~(kCreate | kExcl | kTrunc | kAppend)}, fid,
                         Own::kOpen});
    // Each lock (its fid is chosen when it is sent: Pump).
    for (auto& [path, lock] : held_locks_.All()) {
      Own o{Tlock{kNoFid, lock.type, kLockFlagReclaim, lock.start, lock.length, lock.proc_id,
                  lock.client_id},
            kNoFid, Own::kReclaim};
      o.path = path;
      todo_.push_back(std::move(o));
    }
    // Anchors of attaches with fids left to bind stay; the others go.
    for (size_t i = 0; i < n; i++) {
      if (temps_[i] == kNoFid) continue;
      if (lazy_per_attach_[i] > 0) anchors_[i] = temps_[i];
      else todo_.push_back({Tclunk{temps_[i]}, temps_[i], Own::kClunkTemp});
    }
    state_ = kReplaying;
    return Pump(to_server, to_client);
  }
  auto it = in_flight_.find(tag);
  Own o = std::move(it->second);
  in_flight_.erase(it);
  bool temp = std::find(temps_.begin(), temps_.end(), o.fid) != temps_.end();
  switch (o.kind) {
    case Own::kAttach:
    case Own::kRebind:
      if (!ok) {
        if (!temp) MarkLost(o.fid);
        // No anchor: the attach's lazy fids are lost at first use (EBADF).
        for (uint32_t& a : anchors_)
          if (temp && o.kind == Own::kAttach && a == o.fid) a = kNoFid;
      } else if (!temp) {
        restored_.fids++;
      }
      break;
    case Own::kOpen:
      if (!ok) {
        if (lost_.count(o.fid)) break;  // lost with its file's locks, clunked
        auto f = fids_.find(o.fid);
        if (f == fids_.end()) break;
        restored_.fids--;
        uint64_t path = f->second.path;
        bool locked = false;
        for (auto& [ino, lock] : held_locks_.All()) locked = locked || ino == path;
        if (locked) {
          // Its holder's descriptor is gone, and with it the unlock its
          // close would send: the file's locks are not reclaimed.
          LoseLocks(path);
        } else {
          MarkLost(o.fid);
          ClunkLost(o.fid);  // bound on the server, lost here
        }
      } else {
        restored_.opened++;
      }
      break;
    case Own::kReclaim: {
      auto* r = std::get_if<Rlock>(&reply);
      if (r && r->status == kLockSuccess) restored_.locks++;
      else LoseLocks(o.path);
      break;
    }
    case Own::kClunkTemp:
    case Own::kUnlockLost:
    case Own::kClunkLost:
      break;
  }
  Pump(to_server, to_client);
}

void RestoreBook::Pump(std::string& to_server, std::string& to_client) {
  while (!todo_.empty() && in_flight_.size() < kWindow) {
    // One kind at a time: the rebinds once the attaches are answered, the
    // opens once the rebinds are, the temporary attaches' clunks last (a
    // server runs a request on a fid still being made only when that fid's
    // own request is not itself waiting).
    if (!in_flight_.empty() && todo_.front().kind != in_flight_.begin()->second.kind) break;
    if (todo_.front().kind == Own::kReclaim) {
      // Through a fid of its file still bound (an open one if any); none
      // left, or a server that does not reclaim: the file's locks are lost.
      Own& o = todo_.front();
      uint32_t via = kNoFid;
      for (auto& [fid, f] : fids_)
        if (f.path == o.path && !f.unbound && (via == kNoFid || f.open >= 0)) via = fid;
      if (via == kNoFid || !locks_feature_) {
        uint64_t path = o.path;
        todo_.pop_front();
        LoseLocks(path);
        continue;
      }
      std::get<Tlock>(o.msg).fid = o.fid = via;
    }
    uint16_t tag = FreeTag();
    Encode(tag, todo_.front().msg, to_server);
    in_flight_.emplace(tag, std::move(todo_.front()));
    todo_.pop_front();
  }
  if (todo_.empty() && in_flight_.empty()) Finish(to_server, to_client);
}

// The requests that had no reply, in the order the client sent them.
std::vector<uint16_t> RestoreBook::PendingInOrder() const {
  std::vector<std::pair<uint64_t, uint16_t>> by_seq;
  for (auto& [tag, p] : pending_) by_seq.emplace_back(p.seq, tag);
  std::sort(by_seq.begin(), by_seq.end());
  std::vector<uint16_t> tags;
  for (auto [seq, tag] : by_seq) tags.push_back(tag);
  return tags;
}

void RestoreBook::Finish(std::string& to_server, std::string& to_client) {
  temps_.clear();
  std::vector<uint16_t> order = PendingInOrder();
  // A flush waiting: the request it flushes is not sent again, and the
  // flush is answered (the client then forgets that request).
  for (uint16_t tag : order) {
    auto it = pending_.find(tag);
    if (it == pending_.end()) continue;
    if (auto* f = it->second.decoded ? std::get_if<Tflush>(&it->second.msg) : nullptr) {
      uint16_t flushed = f->oldtag;  // f dies with its entry
      pending_.erase(it);
      pending_.erase(flushed);
      Encode(tag, Rflush{}, to_client);
    }
  }
  for (uint16_t tag : order) {
    auto it = pending_.find(tag);
    if (it == pending_.end()) continue;
    Pending& p = it->second;
    if (!lost_.empty()) {
      Decoded d = DecodeFrame(p.ClientFrame());
      if (d.status == DecodeStatus::kOk && NamesLostFid(d.msg)) {
        AnswerHere(tag, d.msg, ESTALE, to_client);
        pending_.erase(it);
        continue;
      }
    }
    to_server += p.frame;
    restored_.resent++;
  }
  state_ = kNormal;
  std::deque<std::string> held;
  held.swap(held_);
  held_bytes_ = 0;
  if (on_restored) on_restored(restored_);
  for (auto& f : held) FromClient(f, to_server, to_client);
}

void RestoreBook::Fail(uint32_t ecode, std::string& to_client) {
  DropLazy();
  for (uint16_t tag : PendingInOrder()) {
    Decoded d = DecodeFrame(pending_[tag].ClientFrame());
    AnswerHere(tag, d.msg, ecode, to_client);
  }
  pending_.clear();
  for (auto& f : held_) {
    Decoded d = DecodeFrame(f);
    AnswerHere(Le16(f.data() + 5), d.msg, ecode, to_client);
  }
  held_.clear();
  held_bytes_ = 0;
  in_flight_.clear();
  todo_.clear();
  graced_.clear();
  state_ = kFailing;
  ecode_ = ecode;
}

}  // namespace muscle::p9
