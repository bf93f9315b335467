#include "9p/lock_table.h"

#include <fcntl.h>
#include <unistd.h>

#include "9p/messages.h"

namespace muscle::p9 {

void LockTable::Span(uint64_t start, uint64_t length, uint64_t& first,
                     uint64_t& last) {
  first = start;
  if (length == 0 || length - 1 > UINT64_MAX - start)
    last = UINT64_MAX;
  else
    last = start + length - 1;
}

void LockTable::Subtract(std::vector<Range>& ranges, uint64_t first,
                         uint64_t last, const LockOwner& owner) {
  std::vector<Range> kept;
  for (Range& r : ranges) {
    if (!(r.owner == owner) || r.last < first || r.first > last) {
      kept.push_back(std::move(r));
      continue;
    }
    if (r.first < first) kept.push_back({r.first, first - 1, r.type, r.owner});
    if (r.last > last) kept.push_back({last + 1, r.last, r.type, r.owner});
  }
  ranges.swap(kept);
}

bool LockTable::SetMarker(std::string path) {
  std::lock_guard<std::mutex> g(mu_);
  marker_ = std::move(path);
  marker_exists_ = !marker_.empty() && access(marker_.c_str(), F_OK) == 0;
  return marker_exists_;
}

void LockTable::BeginGrace(Clock::duration grace) {
  std::lock_guard<std::mutex> g(mu_);
  auto now = Clock::now();
  grace_until_ = now + grace;
  UpdateGrace(now);  // none at all: the marker goes
}

bool LockTable::InGrace() const {
  std::lock_guard<std::mutex> g(mu_);
  return Clock::now() < grace_until_;
}

void LockTable::KeepMarker() {
  std::lock_guard<std::mutex> g(mu_);
  UpdateGrace(Clock::now());  // a grace period over and nothing held: no marker
  keep_marker_ = true;
}

void LockTable::UpdateGrace(Clock::time_point now) {
  if (grace_until_ != Clock::time_point{} && now >= grace_until_) {
    grace_until_ = {};
    UpdateMarker();
  }
}

void LockTable::UpdateMarker() {
  if (marker_.empty()) return;
  bool want = !locks_.empty() || grace_until_ != Clock::time_point{};
  if (want == marker_exists_ || (!want && keep_marker_)) return;
  if (want) {
    // Not synced: it has to outlive the process (kill -9), not the machine.
    int fd = open(marker_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) close(fd);
    marker_exists_ = fd >= 0;
  } else {
    unlink(marker_.c_str());
    marker_exists_ = false;
  }
}

uint8_t LockTable::Lock(uint64_t ino, uint8_t type, uint64_t start,
                        uint64_t length, const LockOwner& owner, uint32_t flags,
                        bool grace_aware) {
  std::lock_guard<std::mutex> g(mu_);
  if (type > kLockUnlock) return kLockError;
  UpdateGrace(Clock::now());
  bool grace = grace_until_ != Clock::time_point{};
  if (type != kLockUnlock) {
    bool reclaim = flags & kLockFlagReclaim;
    if (grace && !reclaim) return grace_aware ? kLockGrace : kLockBlocked;
    if (!grace && reclaim) return kLockError;
  }
  uint64_t first, last;
  Span(start, length, first, last);
  auto& ranges = locks_[ino];
  if (type != kLockUnlock) {
    for (const Range& r : ranges) {
      if (r.owner == owner || r.last < first || r.first > last) continue;
      if (r.type == kLockWrite || type == kLockWrite) return kLockBlocked;
    }
  }
  // What the session holds on this inode before and after: the change
  // must keep it within its bound.
  auto mine = [&](const std::vector<Range>& v) {
    size_t n = 0;
    for (const Range& r : v) n += r.owner.session == owner.session;
    return n;
  };
  std::vector<Range> next = ranges;
  Subtract(next, first, last, owner);
  if (type != kLockUnlock) next.push_back({first, last, type, owner});
  size_t& held = ranges_of_[owner.session];
  size_t now_held = held - mine(ranges) + mine(next);
  if (now_held > kMaxRangesPerSession) {
    if (held == 0) ranges_of_.erase(owner.session);
    if (ranges.empty()) locks_.erase(ino);
    return kLockError;
  }
  ranges.swap(next);
  if (now_held == 0) ranges_of_.erase(owner.session);
  else held = now_held;
  if (ranges.empty()) locks_.erase(ino);
  UpdateMarker();
  return kLockSuccess;
}

LockInfo LockTable::Test(uint64_t ino, uint8_t type, uint64_t start,
                         uint64_t length, const LockOwner& owner) const {
  std::lock_guard<std::mutex> g(mu_);
  LockInfo info;
  if (type == kLockUnlock) return info;
  uint64_t first, last;
  Span(start, length, first, last);
  if (Clock::now() < grace_until_) {
    info.type = kLockWrite;
    info.start = start;
    info.length = length;
    return info;
  }
  auto it = locks_.find(ino);
  if (it == locks_.end()) return info;
  for (const Range& r : it->second) {
    if (r.owner == owner || r.last < first || r.first > last) continue;
    if (r.type != kLockWrite && type != kLockWrite) continue;
    info.type = r.type;
    info.start = r.first;
    info.length = r.last == UINT64_MAX ? 0 : r.last - r.first + 1;
    info.proc_id = r.owner.proc_id;
    info.client_id = r.owner.client_id;
    return info;
  }
  return info;
}

void LockTable::ReleaseSession(const void* session) {
  std::lock_guard<std::mutex> g(mu_);
  UpdateGrace(Clock::now());
  for (auto it = locks_.begin(); it != locks_.end();) {
    auto& v = it->second;
    std::erase_if(v, [&](const Range& r) { return r.owner.session == session; });
    it = v.empty() ? locks_.erase(it) : std::next(it);
  }
  ranges_of_.erase(session);
  UpdateMarker();
}

std::vector<std::pair<uint64_t, LockInfo>> LockTable::All() const {
  std::lock_guard<std::mutex> g(mu_);
  std::vector<std::pair<uint64_t, LockInfo>> all;
  for (auto& [ino, v] : locks_)
    for (const Range& r : v)
      all.push_back({ino, LockInfo{r.type, r.first, r.last == UINT64_MAX ? 0 : r.last - r.first + 1,
                                   r.owner.proc_id, r.owner.client_id}});
  return all;
}

size_t LockTable::size() const {
  std::lock_guard<std::mutex> g(mu_);
  size_t n = 0;
  for (auto& [ino, v] : locks_) n += v.size();
  return n;
}

}  // namespace muscle::p9
