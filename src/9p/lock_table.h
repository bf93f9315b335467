// POSIX byte-range locks as 9P2000.L's Tlock/Tgetlock express them.
//
// Locks never wait on the server: a conflicting request is answered
// kLockBlocked at once and the client retries. An owner is (session,
// proc_id, client_id); all of a session's locks go when it ends.
//
// Across a restart (musclefs(8) PROTOCOL, "Locks after a restart"): a
// marker file exists while any lock is held (and is left in place by a
// shutdown). A server that starts and finds it begins a grace period in
// which only reclaims (Tlock flag kLockFlagReclaim, sent by a relay
// restoring its session) take locks; other lock requests are answered
// kLockGrace when the client said it retries them (a relay) and
// kLockBlocked otherwise (the Linux kernel turns GRACE into ENOLCK). A
// reclaim outside a grace period is refused (kLockError): someone else may
// have held the range meanwhile. A Tgetlock in a grace period reports a
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

  // The marker file (empty: none, no grace ever). True when it exists:
  // locks were held when the last server stopped, so the caller begins a
  // grace period.
  bool SetMarker(std::string path);
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
  };
  static void Span(uint64_t start, uint64_t length, uint64_t& first,
                   uint64_t& last);
  void Subtract(std::vector<Range>& ranges, uint64_t first, uint64_t last,
                const LockOwner& owner);
  // Under mu_: ends a grace period that is over; creates or removes the
  // marker as the table became non-empty or empty.
  void UpdateGrace(Clock::time_point now);
  void UpdateMarker();
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, std::vector<Range>> locks_;
  std::unordered_map<const void*, size_t> ranges_of_;  // by session
  std::string marker_;
  bool marker_exists_ = false, keep_marker_ = false;
  Clock::time_point grace_until_{};
};

}  // namespace muscle::p9
