// What the session and the file system know about each 9P request,
// described once: one row per T-message, as messages.h describes each
// message's fields once for the codec.
//
// A row is a specialization Op<T> deriving from Row<...> and saying:
// - changes: whether the request changes the tree (or opens something for
//   change). A read-only identity gets EROFS for it (the session), and a
//   snapshot view refuses it (the file system). kByArgs rows decide in
//   ChangesTree(m).
// - served: who answers it. kSession: the session alone (version, flush,
//   locks, xattr buffers); kNormalized: a 9P2000 form the session turns
//   into its .u form before anything else looks at it; kWriter: the file
//   system's writer; kReader: a reader connection may answer it when
//   ReaderMay(m, req) holds and what it names is clean (else the writer).
// - refs: what it does to fid references (see filesystem.h, "References").
// - kFids: the fid fields that must name established inodes, in order:
//   the first becomes FsRequest::ino, the second FsRequest::ino2.
//   kNewFid: the field naming a fid the request creates. Requests naming a
//   fid that is being rebound wait for it (any of these fields).
// - session: kGeneric when the checks above are the session's whole rule
//   (it resolves kFids and forwards), kOwn when Session::Handle<T> has
//   rules of its own (open state, fid kinds, xattr buffers).
// - kNotOnRoot: the first fid must not be the attach root (EBUSY, as
//   renaming a mount point is). kWritesControl: allowed to a read-only
//   identity on a control file (@ctl), whose commands the file system checks.
//   kOpens: an open that may be for change: the tree is asked first
//   (store::Tree::MayChange; the snapshot views refuse those).
// - ReplyBytes(m, msize): the largest reply, for the budget taken before
//   the request runs (default: a few hundred bytes).
// - kOnce: it may be wrapped in a Tonce (messages.h): a change that,
//   run twice, would not answer as the first time (a second mkdir is
//   EEXIST, a second unlink ENOENT) or would undo what came after it (a
//   write resent after a later one). The file system then runs it on the
//   writer, at most once per operation id (FsRequest::op).
//
// Adding a request: its struct in messages.h, a row here, its handler in
// server/store_handlers.cc (on a store::Tree, so the live tree and the
// views both answer it), and Session::Handle<T> when session is kOwn.
// A T-message without a row does not compile (the static_assert below).
#pragma once

#include <fcntl.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <tuple>
#include <variant>

#include "9p/filesystem.h"
#include "9p/messages.h"

namespace muscle::p9 {

enum class Changes : uint8_t { kNever, kAlways, kByArgs };
enum class Served : uint8_t { kSession, kNormalized, kWriter, kReader };
// kBindsNew: on success the new fid holds a reference to the result.
// kRebinds: on success the fid moves to the result (the result gains a
//   reference, the fid's previous inode loses one).
// kReleases: the fid's reference is given back, whatever the outcome.
enum class Refs : uint8_t { kNone, kBindsNew, kRebinds, kReleases };
enum class SessionRule : uint8_t { kGeneric, kOwn };

template <class... M>
constexpr std::tuple<M...> Fids(M... members) {
  return {members...};
}

template <Changes C, Served S, Refs R = Refs::kNone, SessionRule H = SessionRule::kOwn>
struct Row {
  static constexpr Changes kChanges = C;
  static constexpr Served kServed = S;
  static constexpr Refs kRefs = R;
  static constexpr SessionRule kSession = H;
  static constexpr std::tuple<> kFids{};
  static constexpr std::nullptr_t kNewFid = nullptr;
  static constexpr bool kNotOnRoot = false;
  // On a control file (aname @ctl) it is allowed to read-only identities:
  // the file system checks each command written against the rule.
  static constexpr bool kWritesControl = false;
  // Opens for change: the file system asks the tree first (trees never
  // see open modes, so a snapshot view could not refuse the open itself;
  // every other change reaches the tree, which refuses it, EROFS).
  static constexpr bool kOpens = false;
  // Reads every inode (statfs): a reader may answer only when nothing is dirty.
  static constexpr bool kReadsAll = false;
  // May be the request inside a Tonce (see the top of this file).
  static constexpr bool kOnce = false;
  static constexpr bool ChangesTree(const auto&) {
    static_assert(C != Changes::kByArgs, "a kByArgs row says which arguments change the tree");
    return C == Changes::kAlways;
  }
  static constexpr bool ReaderMay(const auto&, const FsRequest&) { return S == Served::kReader; }
  static constexpr Refs RefsOf(const auto&) { return R; }
  static constexpr size_t ReplyBytes(const auto&, uint32_t) { return 512; }
  // For rows that bind (kBindsNew, kRebinds): the inode the reply binds
  // the fid to, 0 when it does not (an error, a walk that stopped short).
  static uint64_t BoundIno(const auto&, const FsRequest&, const FsReply&) { return 0; }
};

// A request the session forwards once its fids name inodes.
template <Changes C, Served S>
using Simple = Row<C, S, Refs::kNone, SessionRule::kGeneric>;

// No row: the primary template, which the static_assert below refuses.
template <class T>
struct Op {
  static constexpr bool kMissing = true;
};

// --- the rows, in messages.h's order ---
template <> struct Op<Tstatfs> : Simple<Changes::kNever, Served::kReader> {
  static constexpr auto kFids = Fids(&Tstatfs::fid);
  static constexpr bool kReadsAll = true;
};
template <> struct Op<Tlopen> : Row<Changes::kByArgs, Served::kReader> {
  static constexpr auto kFids = Fids(&Tlopen::fid);
  // With O_TRUNC, a resend after later writes would empty the file again.
  static constexpr bool kOnce = true;
  static constexpr bool kWritesControl = true;
  static constexpr bool kOpens = true;
  static constexpr bool ChangesTree(const Tlopen& m) {
    return (m.flags & O_ACCMODE) != O_RDONLY || (m.flags & O_TRUNC);
  }
  // A truncation is the writer's.
  static constexpr bool ReaderMay(const Tlopen& m, const FsRequest&) {
    return !(m.flags & O_TRUNC) || (m.flags & O_ACCMODE) == O_RDONLY;
  }
};
template <> struct Op<Tlcreate> : Row<Changes::kAlways, Served::kWriter, Refs::kRebinds> {
  static constexpr auto kFids = Fids(&Tlcreate::fid);
  static constexpr bool kOnce = true;
  static uint64_t BoundIno(const Tlcreate&, const FsRequest&, const FsReply& r) {
    auto* c = std::get_if<Rlcreate>(&r.msg);
    return c ? c->qid.path : 0;
  }
};
template <> struct Op<Tsymlink> : Simple<Changes::kAlways, Served::kWriter> {
  static constexpr auto kFids = Fids(&Tsymlink::fid);
  static constexpr bool kOnce = true;
};
template <> struct Op<Tmknod> : Simple<Changes::kAlways, Served::kWriter> {
  static constexpr auto kFids = Fids(&Tmknod::dfid);
  static constexpr bool kOnce = true;
};
template <> struct Op<Trename> : Simple<Changes::kAlways, Served::kWriter> {
  static constexpr auto kFids = Fids(&Trename::fid, &Trename::dfid);
  static constexpr bool kNotOnRoot = true;
  static constexpr bool kOnce = true;
};
template <> struct Op<Treadlink> : Simple<Changes::kNever, Served::kReader> {
  static constexpr auto kFids = Fids(&Treadlink::fid);
};
template <> struct Op<Tgetattr> : Simple<Changes::kNever, Served::kReader> {
  static constexpr auto kFids = Fids(&Tgetattr::fid);
};
template <> struct Op<Tsetattr> : Simple<Changes::kAlways, Served::kWriter> {
  static constexpr auto kFids = Fids(&Tsetattr::fid);
  static constexpr bool kOnce = true;
};
template <> struct Op<Txattrwalk> : Row<Changes::kNever, Served::kReader> {
  static constexpr auto kFids = Fids(&Txattrwalk::fid);
  static constexpr auto kNewFid = &Txattrwalk::newfid;  // holds the value, no reference
};
template <> struct Op<Txattrcreate> : Row<Changes::kAlways, Served::kSession> {
  static constexpr auto kFids = Fids(&Txattrcreate::fid);
};
template <> struct Op<Treaddir> : Row<Changes::kNever, Served::kReader> {
  static constexpr auto kFids = Fids(&Treaddir::fid);
  static constexpr size_t ReplyBytes(const Treaddir& m, uint32_t msize) {
    return std::min(m.count, msize) + kIoHeaderSize;
  }
};
template <> struct Op<Tfsync> : Simple<Changes::kNever, Served::kWriter> {
  static constexpr auto kFids = Fids(&Tfsync::fid);
};
// A read-only identity may not take a write lock (Session::Handle<Tlock>).
template <> struct Op<Tlock> : Row<Changes::kNever, Served::kSession> {
  static constexpr auto kFids = Fids(&Tlock::fid);
};
template <> struct Op<Tgetlock> : Row<Changes::kNever, Served::kSession> {
  static constexpr auto kFids = Fids(&Tgetlock::fid);
};
template <> struct Op<Tlink> : Simple<Changes::kAlways, Served::kWriter> {
  static constexpr auto kFids = Fids(&Tlink::dfid, &Tlink::fid);
  static constexpr bool kOnce = true;
};
template <> struct Op<Tmkdir> : Simple<Changes::kAlways, Served::kWriter> {
  static constexpr auto kFids = Fids(&Tmkdir::dfid);
  static constexpr bool kOnce = true;
};
template <> struct Op<Trenameat> : Simple<Changes::kAlways, Served::kWriter> {
  static constexpr auto kFids = Fids(&Trenameat::olddirfid, &Trenameat::newdirfid);
  static constexpr bool kOnce = true;
};
template <> struct Op<Tunlinkat> : Simple<Changes::kAlways, Served::kWriter> {
  static constexpr auto kFids = Fids(&Tunlinkat::dirfid);
  static constexpr bool kOnce = true;
};
// On a reader (a climb of up to thousands of lookups must not hold up the
// writer, which serves every client's changes).
template <> struct Op<Trebind> : Row<Changes::kNever, Served::kReader, Refs::kBindsNew> {
  static constexpr auto kFids = Fids(&Trebind::fid);
  static constexpr auto kNewFid = &Trebind::newfid;
  static uint64_t BoundIno(const Trebind&, const FsRequest&, const FsReply& r) {
    auto* b = std::get_if<Rrebind>(&r.msg);
    return b ? b->qid.path : 0;
  }
};
// The session unwraps it (Session::Handle<Tonce>) and runs the request
// inside by that request's own row; its operation id goes with it to the
// file system (FsRequest::op).
template <> struct Op<Tonce> : Row<Changes::kNever, Served::kSession> {};
template <> struct Op<Tversion> : Row<Changes::kNever, Served::kSession> {};
template <> struct Op<Tauth> : Row<Changes::kNever, Served::kSession> {};
template <> struct Op<Tattach> : Row<Changes::kNever, Served::kWriter, Refs::kBindsNew> {
  static constexpr auto kNewFid = &Tattach::fid;
  static uint64_t BoundIno(const Tattach&, const FsRequest&, const FsReply& r) {
    auto* a = std::get_if<Rattach>(&r.msg);
    return a ? a->qid.path : 0;
  }
};
template <> struct Op<Tflush> : Row<Changes::kNever, Served::kSession> {};
template <> struct Op<Twalk> : Row<Changes::kNever, Served::kReader> {
  static constexpr auto kFids = Fids(&Twalk::fid);
  static constexpr auto kNewFid = &Twalk::newfid;
  static constexpr Refs RefsOf(const Twalk& m) {
    return m.newfid == m.fid ? Refs::kRebinds : Refs::kBindsNew;
  }
  // In place, the old inode's reference goes: the writer's.
  static constexpr bool ReaderMay(const Twalk& m, const FsRequest&) { return m.newfid != m.fid; }
  // Only a complete walk binds; a walk of no names clones the fid.
  static uint64_t BoundIno(const Twalk& m, const FsRequest& req, const FsReply& r) {
    auto* w = std::get_if<Rwalk>(&r.msg);
    if (!w || w->wqids.size() != m.wnames.size()) return 0;
    return m.wnames.empty() ? req.ino : w->wqids.back().path;
  }
};
template <> struct Op<Tread> : Row<Changes::kNever, Served::kReader> {
  static constexpr auto kFids = Fids(&Tread::fid);
  static constexpr size_t ReplyBytes(const Tread& m, uint32_t msize) {
    return std::min(m.count, msize) + kIoHeaderSize;
  }
};
template <> struct Op<Twrite> : Row<Changes::kAlways, Served::kWriter> {
  static constexpr auto kFids = Fids(&Twrite::fid);
  static constexpr bool kWritesControl = true;
  static constexpr bool kOnce = true;
};
template <> struct Op<Tclunk> : Row<Changes::kNever, Served::kReader, Refs::kReleases> {
  static constexpr auto kFids = Fids(&Tclunk::fid);
  // Storing an xattr is the writer's.
  static bool ReaderMay(const Tclunk&, const FsRequest& req) { return !req.xattr; }
};
template <> struct Op<Tremove> : Row<Changes::kAlways, Served::kWriter, Refs::kReleases> {
  static constexpr auto kFids = Fids(&Tremove::fid);
  static constexpr bool kOnce = true;
};
template <> struct Op<Tauth2000> : Row<Changes::kNever, Served::kNormalized> {};
template <> struct Op<Tattach2000> : Row<Changes::kNever, Served::kNormalized> {};
template <> struct Op<Topen> : Row<Changes::kByArgs, Served::kWriter> {
  static constexpr auto kFids = Fids(&Topen::fid);
  static constexpr bool kWritesControl = true;
  static constexpr bool kOpens = true;
  static constexpr bool ChangesTree(const Topen& m) {
    return (m.mode & 3) == kOWrite || (m.mode & 3) == kORdwr || (m.mode & (kOTrunc | kORclose));
  }
};
template <> struct Op<Tcreate> : Row<Changes::kAlways, Served::kNormalized> {};
template <> struct Op<TcreateU> : Row<Changes::kAlways, Served::kWriter, Refs::kRebinds> {
  static constexpr auto kFids = Fids(&TcreateU::fid);
  static uint64_t BoundIno(const TcreateU&, const FsRequest&, const FsReply& r) {
    auto* c = std::get_if<Rcreate>(&r.msg);
    return c ? c->qid.path : 0;
  }
};
template <> struct Op<Tstat> : Simple<Changes::kNever, Served::kWriter> {
  static constexpr auto kFids = Fids(&Tstat::fid);
};
template <> struct Op<Twstat> : Row<Changes::kByArgs, Served::kNormalized> {
  static bool ChangesTree(const Twstat& m) {
    StatU u = DontTouchStat();
    static_cast<Stat&>(u) = m.stat;
    return !ChangesNothing(u);
  }
};
template <> struct Op<TwstatU> : Row<Changes::kByArgs, Served::kWriter> {
  static constexpr auto kFids = Fids(&TwstatU::fid);
  static bool ChangesTree(const TwstatU& m) { return !ChangesNothing(m.stat); }
};

// --- what is derived from the rows ---
template <class T>
constexpr bool kIsRequest = T::kType % 2 == 0;

template <class V>
struct EveryRequestHasRow;
template <class... Ts>
struct EveryRequestHasRow<std::variant<Ts...>> {
  static constexpr bool value = ((!kIsRequest<Ts> || !requires { Op<Ts>::kMissing; }) && ...);
};
static_assert(EveryRequestHasRow<Message>::value,
              "a T-message has no row in 9p/ops.h (every request needs one)");

// Calls f(row, m) for the request in msg (f is not called for replies).
template <class F>
void WithRow(const Message& msg, F&& f) {
  std::visit(
      [&](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (kIsRequest<T>) f(Op<T>{}, m);
      },
      msg);
}

// True when msg changes the tree (or opens something for change).
inline bool ChangesTree(const Message& msg) {
  bool changes = false;
  WithRow(msg, [&](auto row, const auto& m) { changes = decltype(row)::ChangesTree(m); });
  return changes;
}

// True when msg may be the request inside a Tonce (kOnce above).
inline bool MayRunOnce(const Message& msg) {
  bool once = false;
  WithRow(msg, [&](auto row, const auto&) { once = decltype(row)::kOnce; });
  return once;
}

// The largest reply msg can get (see ReplyBytes above).
inline size_t ReplyBudget(const Message& msg, uint32_t msize) {
  size_t bytes = 512;
  WithRow(msg, [&](auto row, const auto& m) { bytes = decltype(row)::ReplyBytes(m, msize); });
  return bytes;
}

// Calls f(fid) for every fid msg needs bound (kFids, not kNewFid).
template <class F>
void ForEachNamedFid(const Message& msg, F&& f) {
  WithRow(msg, [&](auto row, const auto& m) {
    using R = decltype(row);
    std::apply([&](auto... field) { (f(m.*field), ...); }, R::kFids);
  });
}

// Calls f(fid) for every fid msg names (kFids and kNewFid).
template <class F>
void ForEachFid(const Message& msg, F&& f) {
  WithRow(msg, [&](auto row, const auto& m) {
    using R = decltype(row);
    std::apply([&](auto... field) { (f(m.*field), ...); }, R::kFids);
    if constexpr (!std::is_same_v<std::decay_t<decltype(R::kNewFid)>, std::nullptr_t>)
      f(m.*R::kNewFid);
  });
}

}  // namespace muscle::p9
