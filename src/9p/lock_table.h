// POSIX byte-range locks as 9P2000.L's Tlock/Tgetlock express them.
//
// Locks never wait on the server: a conflicting request is answered
// kLockBlocked at once and the client retries. An owner is (session,
// proc_id, client_id); all of a session's locks go when it ends.
//
// Across a restart (musclefs(8) PROTOCOL, "Locks after a restart"): a
// marker file lists the locks of resumable sessions (the only ones that
// can come back for them: a relay's) while any is held: inode, range,
// type, owner and the session's identity. It is rewritten at each change
// (not synced: it must outlive the process, kill -9 included, not the
// machine) and frozen by a shutdown. A server that starts and finds locks
// in it begins a grace period in which only reclaims (Tlock flag
// kLockFlagReclaim, sent by a relay restoring its session) take locks,
// and a reclaim only of a range the list gives to that identity and
// owner; the grace period ends early once every listed lock is reclaimed.
// Other lock requests are answered kLockGrace when the client said it
// retries them (a relay) and kLockBlocked otherwise (the Linux kernel
// turns GRACE into ENOLCK). A reclaim outside a grace period, or of a
// range not listed, is refused (kLockError): someone else may have held
// the range meanwhile. (An empty marker, as servers before the list left,
// begins a grace period in which any reclaim is taken.) A Tgetlock in a grace period reports a
// conflict (a write lock over the range asked, of no known owner), as the
// Tlock it stands for would be refused, and a reclaim may still take it.
//
// Bounded: a session holds at most kMaxRangesPerSession ranges (a lock or
// an unlock that would split beyond that is answered kLockError, ENOLCK
// for the kernel), so no client makes the table grow without bound.
//
// Threading: one LockTable is shared by all sessions of a server, on all
// of its event loops; every method takes the table's mutex.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace muscle::p9 {

struct LockOwner {
  const void* session = nullptr;
  uint32_t proc_id = 0;
  std::string client_id;
  // The session's identity (the same for all of a session's owners): a
  // reclaim must come from the identity that held the lock.
  std::string identity;
  bool operator==(const LockOwner&) const = default;
};

struct LockInfo {
  uint8_t type = 2;  // kLockUnlock when there is no conflict
  uint64_t start = 0, length = 0;
  uint32_t proc_id = 0;
  std::string client_id;
};

class LockTable {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr size_t kMaxRangesPerSession = 16384;
  static constexpr size_t kMaxClientId = 256;  // bytes (Linux sends the host name)
  // What a marker may hold: lines read at start, each at most this long.
  static constexpr size_t kMaxListed = 1u << 20, kMaxLine = 1200;

  // The marker file (empty: none, no grace ever). True when it lists
  // locks (or is empty, from an older server): locks were held when the
  // last server stopped, so the caller begins a grace period. A list with
  // nothing in it goes.
  bool SetMarker(std::string path);
  // Locks listed by the last server and not yet reclaimed (0 for an
  // empty marker).
  size_t ToReclaim() const;
  void BeginGrace(Clock::duration grace);
  bool InGrace() const;
  // From now on the marker stays (the server is shutting down: its
  // sessions' locks go with them, to be reclaimed after the restart).
  void KeepMarker();

  // type: kLockRead, kLockWrite or kLockUnlock. length 0 means "to end of
  // file". flags: Tlock's (kLockFlagReclaim). `grace_aware`: the client
  // retries kLockGrace itself. Returns a LockStatus.
  uint8_t Lock(uint64_t ino, uint8_t type, uint64_t start, uint64_t length,
               const LockOwner& owner, uint32_t flags = 0, bool grace_aware = false);
  // The first lock that would conflict with the described one, or type
  // kLockUnlock if none (in a grace period, always a conflict).
  LockInfo Test(uint64_t ino, uint8_t type, uint64_t start, uint64_t length,
                const LockOwner& owner) const;
  void ReleaseSession(const void* session);
  size_t size() const;
  // Every lock held, with its inode (a relay's book of what to reclaim).
  std::vector<std::pair<uint64_t, LockInfo>> All() const;

 private:
  struct Range {
    uint64_t first, last;  // inclusive
    uint8_t type;
    LockOwner owner;
    bool listed = false;  // a resumable session's: in the marker
  };
  // A lock the last server listed, until reclaimed or the grace period ends.
  struct Listed {
    uint64_t ino, first, last;
    uint8_t type;
    uint32_t proc_id;
    std::string identity, client_id;
    bool taken = false;
  };
  // Under mu_: whether a reclaim matches a listed lock (marking it taken
  // when it is the whole of it).
  bool MayReclaim(uint64_t ino, uint8_t type, uint64_t first, uint64_t last,
                  const LockOwner& owner);
  void WriteMarker();
  static bool SameRanges(const std::vector<Range>& a, const std::vector<Range>& b);
  static void Span(uint64_t start, uint64_t length, uint64_t& first,
                   uint64_t& last);
  void Subtract(std::vector<Range>& ranges, uint64_t first, uint64_t last,
                const LockOwner& owner);
  // Under mu_: ends a grace period that is over; creates or removes the
  // marker as the table became non-empty or empty.
  void UpdateGrace(Clock::time_point now);
  // `changed`: a listed lock changed (the list is written again).
  void UpdateMarker(bool changed);
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, std::vector<Range>> locks_;
  std::unordered_map<const void*, size_t> ranges_of_;  // by session
  std::string marker_;
  bool marker_exists_ = false, keep_marker_ = false;
  std::vector<Listed> listed_;
  std::vector<Listed> kept_;  // of sessions ended by a shutdown (KeepMarker)
  bool write_failed_ = false;  // logged once until a write works again
  bool listed_known_ = false;  // the marker had a list (not an older, empty one)
  size_t listed_ranges_ = 0;   // ranges in locks_ with `listed`
  Clock::time_point grace_until_{};
};

}  // namespace muscle::p9
