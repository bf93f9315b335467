// One 9P conversation: version/msize negotiation, tags, fids, flush,
// open-state checks, xattr fids and locks. File behaviour is delegated to
// a FileSystem (filesystem.h).
//
// Dialects: Tversion chooses 9P2000.L, 9P2000.u or 9P2000; frames are
// decoded in the negotiated dialect, and errors go out as that dialect's
// (Rlerror, or Rerror with a text and, in .u, an errno). The file system
// sees one form of each request: the session turns 9P2000's Tattach,
// Tauth, Tcreate and Twstat into their .u forms (with "don't touch"
// extension fields). The session keeps 9P2000's open state: Topen's mode
// decides what the fid may read and write (OEXEC reads), ORCLOSE removes
// the file at clunk, and a read of an open directory continues only from
// 0 or from where the previous read of that fid ended (stat(5)).
//
// The transport feeds complete frames to OnFrame and supplies a send
// function; replies may go out in any order, as requests finish. Every
// request gets exactly one reply unless the session is reset (Tversion) or
// shut down (Reply checks it: a second reply to a tag is a bug, fatal in
// debug builds). A reply to a flushed request always precedes the Rflush.
//
// Fid references: a fid bound to an inode holds one reference on it, and
// the fid table here owns them (filesystem.h, "References"): the file
// system applies what a request's row says (9p/ops.h), and GiveBack is the
// one place where a fid's reference is given back without a request
// (clunk of a plain fid, reset, shutdown). While a request that rebinds a
// fid is in flight (Twalk onto itself, Tlcreate), that request owns the
// reference and later requests naming the fid wait for it, so they see its
// outcome and are answered after it: replies per fid come in request order.
// A fid being made (Tattach, Twalk, Trebind or Txattrwalk to a new fid) is waited for
// the same way: a request pipelined on it runs once it is bound (or gets
// EBADF when the binding failed).
//
// Which requests change the tree, which fids they name, how large a reply
// can be: all from the rows in 9p/ops.h.
//
// Tonce (musclefs's extension, 9p/messages.h): the request inside is run
// as if it had come alone with Tonce's tag, and its operation id and the
// session's identity go with it to the file system (FsRequest::op), which
// runs it at most once per id.
//
// Threading and lifetime: a Session lives on the event-loop thread and is
// held by shared_ptr; requests in flight keep it alive until they finish.
// After Shutdown() nothing more is sent and every fid's inode reference is
// released (those of requests still in flight as they finish).
#pragma once

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "9p/filesystem.h"
#include "auth/access_rule.h"
#include "9p/lock_table.h"
#include "9p/messages.h"

namespace muscle::p9 {

struct SessionOptions {
  uint32_t max_msize = kMaxMsize;
  // What Tauth gets: Linux/diod clients treat ENOENT as "no auth needed".
  uint32_t auth_errno = ENOENT;
  std::string peer;  // for logs
  // The authenticated identity (TLS, a claim) and its access rule:
  // attaches resolve below rule.root and walks never leave it; read_only
  // answers every request that changes the tree with EROFS; snapshot
  // (aname @ctl) is the local administrator's (unix socket, plain
  // listeners) or an identity's whose rule says "snapshot".
  std::string identity;
  auth::AccessRule rule;
  // The client retries a lock answered kLockGrace and reclaims its locks
  // after a restart (a relay's resumable session): 9p/lock_table.h.
  bool grace_aware = false;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  // send: hands one encoded reply frame to the transport.
  // close: asks the transport to drop the connection (protocol violation).
  using SendFn = std::function<void(std::string frame)>;
  using CloseFn = std::function<void(const char* why)>;

  Session(FileSystem& fs, LockTable& locks, SessionOptions options,
          SendFn send, CloseFn close);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // One complete frame, size field included. len must not exceed
  // max_frame().
  void OnFrame(const uint8_t* frame, size_t len);
  // Largest frame the transport should accept now.
  uint32_t max_frame() const { return msize_ ? msize_ : options_.max_msize; }
  uint32_t msize() const { return msize_; }
  // The negotiated dialect (9P2000.L until a Tversion chooses another).
  Dialect dialect() const { return dialect_; }
  size_t in_flight() const { return inflight_.size(); }
  // Bytes the requests in flight may take: their frames plus the largest
  // reply each can get (a Tread's count, say). Counted when a request is
  // taken, before any work, so that the transport can stop taking more.
  size_t reserved_bytes() const { return reserved_total_; }

  // Limits per session (and, for xattr buffers, per identity and per
  // process, so that one identity's sessions cannot take the whole
  // process's budget from the others). Past them a request gets EMFILE
  // (fids) or ENOSPC (xattr buffers).
  static constexpr size_t kMaxFids = 16384;
  static constexpr size_t kMaxXattrBytes = 1u << 20;           // per session
  static constexpr size_t kMaxXattrBytesIdentity = 16u << 20;  // an identity's sessions (not "")
  static constexpr size_t kMaxXattrBytesProcess = 64u << 20;   // all sessions
  size_t fid_count() const { return fids_.size(); }
  void Shutdown();
  // Called whenever a reply finishes a request (the transport uses it for
  // back-pressure and graceful shutdown).
  std::function<void()> on_reply;

 private:
  struct Fid {
    enum Kind { kPending, kInode, kXattrRead, kXattrWrite } kind = kPending;
    uint64_t ino = 0;
    uint64_t root_ino = 0;  // the attach root: ".." stops here
    uint8_t qtype = 0;
    uint32_t uid = 0;
    bool open = false;
    uint32_t open_flags = 0;  // O_RDONLY/O_WRONLY/O_RDWR (Topen's mode mapped)
    bool remove_on_close = false;  // Topen/Tcreate with ORCLOSE
    // Attached with aname "@ctl": a control file, whose writes are commands
    // the file system checks against the access rule itself (so read-only
    // identities may write it).
    bool control = false;
    // Directory reads in the stat dialects: the byte offset the last read
    // ended at and the file system's cookie to continue from there.
    uint64_t dir_offset = 0;
    uint64_t dir_cookie = 0;
    bool live = true;
    std::string xattr_name;
    std::string xattr_data;
    uint64_t xattr_size = 0;
    uint32_t xattr_flags = 0;
    // Requests in flight that rebind this fid, and requests that arrived
    // meanwhile naming it (dispatched in order once it is free).
    uint32_t rebinding = 0;
    std::vector<std::pair<uint16_t, Message>> waiting;
    // Bytes of xattr buffer this fid holds, counted in *session_xattr,
    // *identity_xattr and the process-wide total until the fid is gone.
    size_t xattr_accounted = 0;
    std::shared_ptr<size_t> session_xattr;
    std::shared_ptr<std::atomic<size_t>> identity_xattr;
    ~Fid();
  };
  using FidPtr = std::shared_ptr<Fid>;

  void Dispatch(uint16_t tag, Message&& msg);
  // Queues the request on a fid that is being rebound; true if queued.
  bool WaitForFid(uint16_t tag, Message& msg);
  // A rebinding request on f finished: run what waited for it.
  void Rebound(const FidPtr& f);
  void Reply(uint16_t tag, Message msg);
  void Error(uint16_t tag, int err) { Reply(tag, Rlerror{uint32_t(err)}); }
  // The negotiated dialect's form of request m (see the top of this file).
  Message Normalized(Message&& m) const;
  void OpenedBy(const FidPtr& f, uint8_t mode);
  void Finish(uint16_t tag);
  void Reset();
  void DropFid(uint32_t fid);
  FidPtr Established(uint32_t fid);
  // Sends to the file system; `after` runs on success or failure before
  // the reply goes out, for fid bookkeeping. `binds`: the fid this request
  // binds to its result, a new fid or one being rebound: its rebinding
  // count is raised until the reply, so requests naming it wait, and run
  // after the reply.
  // If the fid was forgotten meanwhile (reset), what it holds goes back.
  void Submit(uint16_t tag, FsRequest req,
              std::function<void(FsReply&)> after = nullptr, FidPtr binds = nullptr);

  // Applies the request's row (9p/ops.h): the attach-root and read-only
  // rules, then the generic handler or the request's own.
  template <class T, class R> void Run(uint16_t tag, T& m, R row);
  // A request's own rules (SessionRule::kOwn rows); one specialization each.
  template <class T> void Handle(uint16_t tag, T& m);
  template <class T, class R> void HandleSimple(uint16_t tag, T& m, R row);
  // Gives back the inode reference f holds, if any (the one place that
  // does: the fid table owns every reference, see "Fid references").
  void GiveBack(const Fid& f);

  FileSystem& fs_;
  LockTable& locks_;
  SessionOptions options_;
  SendFn send_;
  CloseFn close_;
  uint32_t msize_ = 0;  // 0 until a Tversion succeeds
  Dialect dialect_ = k9P2000L;
  uint64_t generation_ = 0;
  bool closed_ = false;
  std::unordered_map<uint32_t, FidPtr> fids_;
  // Tags in flight -> tags of Tflush requests waiting for them.
  std::unordered_map<uint16_t, std::vector<uint16_t>> inflight_;
  // Tags in flight of requests that came inside a Tonce -> their
  // operation ids (Submit hands them to the file system).
  std::unordered_map<uint16_t, uint64_t> once_;
  std::unordered_map<uint16_t, size_t> reserved_;  // per tag in flight
  size_t reserved_total_ = 0;
  std::shared_ptr<size_t> xattr_bytes_ = std::make_shared<size_t>(0);
  // Xattr bytes of every session of this identity (taken at first use).
  std::shared_ptr<std::atomic<size_t>> identity_xattr_;
  // Counts `bytes` of xattr buffer for f; false (nothing counted) when a
  // limit would be passed.
  bool AccountXattr(const FidPtr& f, size_t bytes);
  bool FidsFull() const { return fids_.size() >= kMaxFids; }
};

}  // namespace muscle::p9
