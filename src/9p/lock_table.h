// POSIX byte-range locks as 9P2000.L's Tlock/Tgetlock express them.
//
// Locks never wait on the server: a conflicting request is answered
// kLockBlocked at once and the client retries. An owner is (session,
// proc_id, client_id); all of a session's locks go when it ends.
//
// Threading: one LockTable is shared by all sessions of a server, on all
// of its event loops; every method takes the table's mutex.
#pragma once

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
  // type: kLockRead, kLockWrite or kLockUnlock. length 0 means "to end of
  // file". Returns a LockStatus.
  uint8_t Lock(uint64_t ino, uint8_t type, uint64_t start, uint64_t length,
               const LockOwner& owner);
  // The first lock that would conflict with the described one, or type
  // kLockUnlock if none.
  LockInfo Test(uint64_t ino, uint8_t type, uint64_t start, uint64_t length,
                const LockOwner& owner) const;
  void ReleaseSession(const void* session);
  size_t size() const;

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
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, std::vector<Range>> locks_;
};

}  // namespace muscle::p9
