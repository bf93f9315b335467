// What a client-side proxy (muscle relay --reconnect) remembers of the
// 9P2000.L conversation it carries, so that the same conversation can go
// on with a server that lost it (it restarted, even after kill -9, or the
// session's lease ended): the negotiated version, every fid (the inode it
// names, by qid.path, never by path, so a rename does not misdirect it;
// the attach it descends from; its open flags) and every request still
// waiting for its reply.
//
// Restoring, on a new server session: Tversion as the client negotiated
// it; then, each step pipelined (at most kWindow in flight, on tags the
// client is not using) and begun once the one before is answered: a
// Tattach for each attach the client still holds a root fid of, and one
// of the book's own (its anchor) for each attach with fids to bind; a
// Trebind (musclefs(8) PROTOCOL) from the anchor for every fid needed at
// once (open, on a locked file, or named by a request waiting for its
// reply); a Tlopen (without O_CREAT/O_EXCL/O_TRUNC/O_APPEND) for every
// open fid; a Tlock with kLockFlagReclaim for every lock the client held
// (the server grants reclaims only in its grace period after a restart,
// 9p/lock_table.h); then the client's requests that had no reply, in
// their order, with their own tags; then what the client sent meanwhile.
//
// Lazily: every other fid (a kernel keeps one per dentry it has looked
// up, thousands of them) is bound on first use. The first request naming
// it goes out right behind a Trebind for it from the anchor (the server
// runs a request on a fid being made once it is bound, session.h); a
// Tclunk of a fid never used is answered here. A failed rebind loses the
// fid: the request behind it, which the server answers EBADF, is answered
// ESTALE. An attach's anchor is clunked once it has no fid left to bind.
// The anchors' fids count down from 0xfffffffe, a Linux client's up from
// 0 (lowest free); the book's own tags after a restore cycle through
// 0x8000-0xfffe, far above the lowest free ones a Linux client takes (a
// client request on a tag the book still uses waits for it, and a flush
// of such a request is answered here).
// A lock that cannot be reclaimed loses every fid of its file (ESTALE):
// the process holding it must not go on as if it still did; the book then
// unlocks the file's other reclaimed ranges and clunks those fids on the
// server (as it does a fid whose reopen failed).
// A fid that cannot be restored is lost: the book answers ESTALE to
// every request naming it (Rclunk to its Tclunk) without sending it.
//
// Exactly once: with the server's operation ids (`once`), every request
// that is not idempotent (create, mkdir, symlink, mknod, link, unlink,
// rename, setattr, remove) goes out wrapped in a Tonce with a fresh op id,
// and is resent after a restart with the same id: the server answers a
// retry of what it had committed from the stored result instead of doing
// it again. Writes carry explicit offsets (the book reopens O_APPEND fids
// without it), so they are idempotent.
//
// Locks in a grace period: a client lock the server answers kLockGrace is
// not passed up (the kernel would make it ENOLCK): a blocking one stays
// waiting and RetryGraced sends it again, a non-blocking one is answered
// kLockBlocked (EAGAIN, as for a plain client). A client's own reclaim
// flag is refused (kLockError): only the book reclaims.
//
// Soft mounts: Fail() answers every waiting request with an error, and
// every new one until the next restore; the session on the server is then
// abandoned (its replies could no longer be matched).
//
// The book only sees complete frames and does no I/O: what it produces
// for either side is appended to the strings its caller passes.
// Threading: one thread (the relay's loop).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "9p/lock_table.h"
#include "9p/messages.h"

namespace muscle::p9 {

// Splits a byte stream into 9P frames.
class FrameSplitter {
 public:
  explicit FrameSplitter(uint32_t max_frame) : max_(max_frame) {}
  void Append(const char* data, size_t len) { buf_.append(data, len); }
  // The next complete frame (a view into the buffer, valid until the next
  // Append or Next), or empty. A size below 7 or above the limit sets
  // bad() and yields nothing more.
  std::string_view Next();
  bool bad() const { return bad_; }
  void set_max(uint32_t m) { max_ = m; }
  size_t buffered() const { return buf_.size() - pos_; }
  void Clear() {
    buf_.clear();
    pos_ = 0;
  }

 private:
  std::string buf_;
  size_t pos_ = 0;
  uint32_t max_;
  bool bad_ = false;
};

class RestoreBook {
 public:
  static constexpr size_t kWindow = 1024;
  static constexpr uint16_t kLazyTagLow = 0x8000;

  // `op_base`: the first op id (random, so that two relays of one identity
  // do not collide).
  explicit RestoreBook(uint64_t op_base) : next_op_(op_base) {}

  // The server answers Tonce (it said so when the session began).
  void set_once(bool on) { once_ = on; }
  // The server grants lock reclaims after a restart ("locks").
  void set_locks(bool on) { locks_feature_ = on; }

  // A complete frame from the client.
  void FromClient(std::string_view frame, std::string& to_server, std::string& to_client);
  // A complete frame from the server.
  void FromServer(std::string_view frame, std::string& to_server, std::string& to_client);

  // True when the conversation can be restored on a new session: it is
  // 9P2000.L, negotiated, and the server answers Tonce.
  bool CanRestore() const;
  // The server lost the session: until Restore, client frames wait (they
  // are kept, in order).
  void Lost();
  // A new server session: begins restoring (the Tversion).
  void Restore(std::string& to_server);
  bool restoring() const { return state_ != kNormal; }
  // Soft mode: every request waiting (sent or held) is answered with
  // `ecode`, and so is every new one until the next Restore.
  void Fail(uint32_t ecode, std::string& to_client);
  bool failing() const { return state_ == kFailing; }
  // Client lock requests the server answered kLockGrace: sent again by
  // RetryGraced (the caller's timer, every half second or so).
  bool has_graced() const { return !graced_.empty(); }
  void RetryGraced(std::string& to_server);
  // Byte-range locks the client holds, as granted (by inode).
  size_t locks() const { return held_locks_.size(); }

  // Bytes of client frames held while the server is away.
  size_t held_bytes() const { return held_bytes_; }
  size_t fids() const { return fids_.size(); }
  size_t waiting() const { return pending_.size(); }
  uint32_t msize() const { return msize_; }

  // After a restore: how it went (for the relay's log line).
  struct Restored {
    size_t fids = 0, opened = 0, lost = 0, resent = 0, locks = 0, locks_lost = 0;
    size_t deferred = 0;  // left to bind on first use
  };
  const Restored& restored() const { return restored_; }
  // Set when a restore ends (called once per restore).
  std::function<void(const Restored&)> on_restored;
  // Fids left to bind on first use.
  size_t unbound() const { return unbound_; }
  // Counts the replies to the restore's own requests: a caller that sees
  // it stand still for long abandons the restore (a watchdog on progress,
  // not a deadline: a restore of many fids may take long and be fine).
  uint64_t progress() const { return progress_; }

  // A restore cannot go on (the server refused the version): the caller
  // closes the client's stream.
  std::function<void(const std::string&)> on_fatal;

 private:
  enum State { kNormal, kAway, kVersion, kReplaying, kFailing };
  struct Attach {
    Tattach m;  // as the client sent it (fid ignored)
  };
  struct Fid {
    uint64_t path = 0;
    int attach = -1;       // index into attaches_
    bool root = false;     // made by Tattach, not walked since
    bool xattr = false;    // made by Txattrwalk/Txattrcreate: not restorable
    int64_t open = -1;     // Tlopen/Tlcreate flags, -1 when not open
    bool unbound = false;  // not bound on the server's session yet (lazy)
    bool binding = false;  // its lazy Trebind is in flight
  };
  struct Pending {
    uint64_t seq = 0;   // the order the client sent it in
    std::string frame;  // as sent (wrapped in Tonce when it has an op)
    size_t inner = 0;   // where the client's own frame begins in `frame`
    Message msg;        // decoded, for the requests that change fids
    bool decoded = false;
    bool after_rebind = false;  // sent behind a lazy Trebind of a fid it names
    std::string_view ClientFrame() const { return std::string_view(frame).substr(inner); }
  };
  // One request the book itself sends while restoring.
  struct Own {
    Message msg;
    uint32_t fid = kNoFid;  // the client fid it restores (or a temporary one)
    enum Kind { kAttach, kRebind, kOpen, kReclaim, kClunkTemp, kUnlockLost, kClunkLost } kind;
    uint64_t path = 0;  // kReclaim: the file
  };

  void Track(uint16_t tag, std::string_view frame, std::string& to_server, std::string& to_client);
  void Answer(const Pending& p, const Message& reply);
  // Answers a request the server will not see: Rflush, Rclunk, else
  // Rlerror(ecode); the fids it releases are forgotten.
  void AnswerHere(uint16_t tag, const Message& m, uint32_t ecode, std::string& to_client);
  void MarkLost(uint32_t fid);
  // A lock not reclaimed: every lock on its file is forgotten (and
  // unlocked on the server), the file's fids are lost (and clunked).
  void LoseLocks(uint64_t path);
  // A fid the server has but the client lost: clunked once the restore's
  // other steps are done.
  void ClunkLost(uint32_t fid) { todo_.push_back({Tclunk{fid}, fid, Own::kClunkLost}); }
  void FromServerOwn(uint16_t tag, const Message& reply, std::string& to_server,
                     std::string& to_client);
  void Pump(std::string& to_server, std::string& to_client);
  void Finish(std::string& to_server, std::string& to_client);
  bool NamesLostFid(const Message& m) const;
  // Lazy binding (kNormal): a Trebind of `fid` from its attach's anchor.
  // (`client_tag`: the request behind it, whose tag it must not take.)
  void BindLazily(uint16_t client_tag, uint32_t fid, Fid& f, std::string& to_server);
  // `fid` no longer waits to be bound (bound, lost or clunked): its
  // attach's anchor is clunked when no other fid waits.
  void Unlazy(int attach, std::string& to_server);
  void FromServerLazy(uint16_t tag, const Message& reply, std::string& to_server,
                      std::string& to_client);
  uint16_t LazyTag(uint16_t avoid);
  void DropLazy();
  std::vector<uint16_t> PendingInOrder() const;
  uint16_t FreeTag();
  uint32_t TempFid();
  int AttachIndex(const Tattach& m);
  static std::string Frame(uint16_t tag, const Message& m);
  std::string Wrap(uint16_t tag, std::string_view frame);

  State state_ = kNormal;
  bool once_ = false, locks_feature_ = false;
  uint64_t next_op_;
  // Negotiation, as the client asked and the server answered.
  std::string asked_version_, version_;
  uint32_t asked_msize_ = 0, msize_ = 0;
  std::vector<Attach> attaches_;
  std::unordered_map<uint32_t, Fid> fids_;
  std::unordered_map<uint32_t, bool> lost_;  // fid -> it was an xattr fid
  // The locks the server granted the client, by inode (qid.path); the
  // owners' session is null. Only this thread uses it.
  LockTable held_locks_;
  // Client Tlocks answered kLockGrace: tag and seq (the tag is the same
  // request only while pending_[tag].seq is).
  std::vector<std::pair<uint16_t, uint64_t>> graced_;
  // The client's requests without a reply, by tag, and their order.
  std::unordered_map<uint16_t, Pending> pending_;
  uint64_t seq_ = 0;
  // Client frames held while away or restoring.
  std::deque<std::string> held_;
  size_t held_bytes_ = 0;
  // Restoring.
  std::deque<Own> todo_;
  std::unordered_map<uint16_t, Own> in_flight_;
  std::vector<uint32_t> temps_;       // temporary attach fids, by attach index
  // Lazy binding, after a restore: the anchors (by attach index, kNoFid
  // for none), how many fids of each still wait, the book's own requests
  // in flight (Trebind: the fid; Tclunk of an anchor: kNoFid).
  std::vector<uint32_t> anchors_;
  std::vector<size_t> lazy_per_attach_;
  size_t unbound_ = 0;
  std::unordered_map<uint16_t, uint32_t> lazy_in_flight_;
  uint16_t next_lazy_tag_ = kNoTag - 1;
  // Client frames whose tag one of those still uses: sent once it is free.
  std::vector<std::string> tag_waits_;
  uint64_t progress_ = 0;
  uint16_t next_tag_ = 0;
  uint32_t ecode_ = 0;  // kFailing
  Restored restored_;
};

}  // namespace muscle::p9
