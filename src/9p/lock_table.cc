#include "9p/lock_table.h"

#include <fcntl.h>
#include <unistd.h>

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "9p/messages.h"
#include "common/log.h"

namespace muscle::p9 {

namespace {

constexpr const char* kMarkerHeader = "musclefs-locks 1";

// Strings in the marker: hex, "-" for empty (one token each, whatever
// bytes a client sent).
std::string Hex(const std::string& s) {
  if (s.empty()) return "-";
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out;
}
int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}
bool Unhex(const std::string& h, std::string* out) {
  out->clear();
  if (h == "-") return true;
  if (h.size() % 2) return false;
  for (size_t i = 0; i < h.size(); i += 2) {
    int hi = HexDigit(h[i]), lo = HexDigit(h[i + 1]);
    if (hi < 0 || lo < 0) return false;
    *out += char(hi * 16 + lo);
  }
  return true;
}
// Digits only (no sign, no space), at most UINT64_MAX.
bool Decimal(const std::string& t, uint64_t* v) {
  if (t.empty() || t.size() > 20) return false;
  unsigned __int128 x = 0;
  for (char c : t) {
    if (c < '0' || c > '9') return false;
    x = x * 10 + unsigned(c - '0');
  }
  if (x > UINT64_MAX) return false;
  *v = uint64_t(x);
  return true;
}

}  // namespace

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
    if (r.first < first) {
      kept.push_back(r);
      kept.back().last = first - 1;
    }
    if (r.last > last) {
      kept.push_back(r);
      kept.back().first = last + 1;
    }
  }
  ranges.swap(kept);
}

bool LockTable::SameRanges(const std::vector<Range>& a, const std::vector<Range>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++)
    if (a[i].first != b[i].first || a[i].last != b[i].last || a[i].type != b[i].type ||
        !(a[i].owner == b[i].owner) || a[i].listed != b[i].listed)
      return false;
  return true;
}

bool LockTable::SetMarker(std::string path) {
  std::lock_guard<std::mutex> g(mu_);
  marker_ = std::move(path);
  listed_.clear();
  listed_known_ = false;
  if (marker_.empty()) return false;
  unlink((marker_ + ".tmp").c_str());  // left by a kill while written
  struct stat st;
  marker_exists_ = lstat(marker_.c_str(), &st) == 0;
  if (!marker_exists_) return false;
  std::ifstream in(marker_);
  std::string line;
  if (!S_ISREG(st.st_mode)) {
    Log("%s is not a regular file: locks are not listed for a restart", marker_.c_str());
    marker_exists_ = false;
    return false;
  }
  if (!std::getline(in, line) || line != kMarkerHeader)
    return true;  // an older server's (empty), or damaged: any reclaim
  listed_known_ = true;
  // At most kMaxListed lines of at most kMaxLine bytes are read.
  while (listed_.size() < kMaxListed && std::getline(in, line) && line.size() <= kMaxLine) {
    std::istringstream f(line);
    std::string t[7];
    uint64_t n[5];
    Listed l;
    if (!(f >> t[0] >> t[1] >> t[2] >> t[3] >> t[4] >> t[5] >> t[6]) ||
        !Decimal(t[0], &n[0]) || !Decimal(t[1], &n[1]) || !Decimal(t[2], &n[2]) ||
        !Decimal(t[3], &n[3]) || !Decimal(t[4], &n[4]) || n[1] > kLockWrite ||
        n[2] > n[3] || n[4] > UINT32_MAX || !Unhex(t[5], &l.identity) ||
        !Unhex(t[6], &l.client_id))
      continue;  // torn by a crash while written: that lock is not reclaimed
    l.ino = n[0];
    l.type = uint8_t(n[1]);
    l.first = n[2];
    l.last = n[3];
    l.proc_id = uint32_t(n[4]);
    listed_.push_back(std::move(l));
  }
  if (!listed_.empty()) return true;
  unlink(marker_.c_str());  // only plain clients' locks, or none
  marker_exists_ = false;
  return false;
}

size_t LockTable::ToReclaim() const {
  std::lock_guard<std::mutex> g(mu_);
  size_t n = 0;
  for (const Listed& l : listed_) n += !l.taken;
  return n;
}

// The range must be covered by the owner's listed pieces on the inode,
// each of the same or a stronger type: the list is written when the server
// grants a change, the relay's record when it hears of it, so a kill
// between the two may leave a range the relay holds split in the list.
bool LockTable::MayReclaim(uint64_t ino, uint8_t type, uint64_t first, uint64_t last,
                           const LockOwner& owner) {
  if (!listed_known_) return true;
  std::vector<Listed*> mine;
  for (Listed& l : listed_)
    if (l.ino == ino && l.identity == owner.identity && l.proc_id == owner.proc_id &&
        l.client_id == owner.client_id && (type != kLockWrite || l.type == kLockWrite) &&
        l.last >= first && l.first <= last)
      mine.push_back(&l);
  std::sort(mine.begin(), mine.end(), [](Listed* a, Listed* b) { return a->first < b->first; });
  uint64_t next = first;  // the first byte not yet covered
  bool covered = false;
  for (Listed* l : mine) {
    if (l->first > next) return false;  // a gap
    if (l->last >= last) {
      covered = true;
      break;
    }
    next = std::max(next, l->last + 1);  // l->last < last: no overflow
  }
  if (!covered) return false;
  // What it covers whole, of its own type, is reclaimed (the grace period
  // ends when nothing listed is left).
  for (Listed* l : mine)
    if (l->first >= first && l->last <= last && l->type == type) l->taken = true;
  return true;
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
  bool all_taken = listed_known_ && !listed_.empty();
  for (const Listed& l : listed_) all_taken = all_taken && l.taken;
  if (grace_until_ != Clock::time_point{} && (now >= grace_until_ || all_taken)) {
    if (all_taken && now < grace_until_)
      Log("every lock listed in %s was reclaimed: the lock grace period ends early",
          marker_.c_str());
    grace_until_ = {};
    listed_.clear();
    UpdateMarker(true);
  }
}

void LockTable::UpdateMarker(bool changed) {
  if (marker_.empty()) return;
  bool want = listed_ranges_ > 0 || !kept_.empty() || grace_until_ != Clock::time_point{};
  if (want && (changed || !marker_exists_)) {
    WriteMarker();
  } else if (!want && marker_exists_) {
    unlink(marker_.c_str());
    marker_exists_ = false;
  }
}

// Not synced: it has to outlive the process (kill -9), not the machine.
// Written beside and renamed over, so a kill leaves the old list or the
// new one.
void LockTable::WriteMarker() {
  std::string text = std::string(kMarkerHeader) + "\n";
  auto line = [&](uint64_t ino, uint8_t type, uint64_t first, uint64_t last, uint32_t proc,
                  const std::string& identity, const std::string& client) {
    text += std::to_string(ino) + " " + std::to_string(type) + " " + std::to_string(first) + " " +
            std::to_string(last) + " " + std::to_string(proc) + " " + Hex(identity) + " " +
            Hex(client) + "\n";
  };
  for (auto& [ino, v] : locks_)
    for (const Range& r : v)
      if (r.listed)
        line(ino, r.type, r.first, r.last, r.owner.proc_id, r.owner.identity, r.owner.client_id);
  // Those still to be reclaimed stay listed through another restart, and
  // so do those of sessions that ended in a shutdown.
  for (const Listed& l : listed_)
    if (!l.taken) line(l.ino, l.type, l.first, l.last, l.proc_id, l.identity, l.client_id);
  for (const Listed& l : kept_) line(l.ino, l.type, l.first, l.last, l.proc_id, l.identity, l.client_id);
  std::string tmp = marker_ + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  bool ok = fd >= 0 && write(fd, text.data(), text.size()) == ssize_t(text.size());
  if (fd >= 0) close(fd);
  ok = ok && rename(tmp.c_str(), marker_.c_str()) == 0;
  if (!ok) {
    if (!write_failed_)
      Log("cannot write the lock list %s (%s): relays' locks granted now cannot be reclaimed "
          "after a restart",
          marker_.c_str(), strerror(errno));
    unlink(tmp.c_str());
  } else if (write_failed_) {
    Log("the lock list %s is written again", marker_.c_str());
  }
  write_failed_ = !ok;
  marker_exists_ = marker_exists_ || ok;
}

uint8_t LockTable::Lock(uint64_t ino, uint8_t type, uint64_t start,
                        uint64_t length, const LockOwner& owner, uint32_t flags,
                        bool grace_aware) {
  std::lock_guard<std::mutex> g(mu_);
  if (type > kLockUnlock) return kLockError;
  // A Linux client_id is the host's name: a longer one is refused, so
  // that a session's ranges are bounded in bytes too.
  if (type != kLockUnlock && owner.client_id.size() > kMaxClientId) return kLockError;
  UpdateGrace(Clock::now());
  bool grace = grace_until_ != Clock::time_point{};
  uint64_t first, last;
  Span(start, length, first, last);
  bool reclaim = type != kLockUnlock && (flags & kLockFlagReclaim);
  if (type != kLockUnlock) {
    if (grace && !reclaim) return grace_aware ? kLockGrace : kLockBlocked;
    if (!grace && reclaim) return kLockError;
  }
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
  auto listed = [](const std::vector<Range>& v) {
    size_t n = 0;
    for (const Range& r : v) n += r.listed;
    return n;
  };
  std::vector<Range> next = ranges;
  Subtract(next, first, last, owner);
  if (type != kLockUnlock) next.push_back({first, last, type, owner, grace_aware});
  size_t& held = ranges_of_[owner.session];
  size_t now_held = held - mine(ranges) + mine(next);
  // A reclaim only of what the last server listed for this identity and
  // owner (checked last: a refused reclaim must not count as taken).
  if (now_held > kMaxRangesPerSession ||
      (reclaim && !MayReclaim(ino, type, first, last, owner))) {
    if (held == 0) ranges_of_.erase(owner.session);
    if (ranges.empty()) locks_.erase(ino);
    return kLockError;
  }
  size_t listed_before = listed(ranges), listed_after = listed(next);
  listed_ranges_ += listed_after;
  listed_ranges_ -= listed_before;
  // The list is written again only when a listed range changed.
  bool relist = grace_aware && (listed_before || listed_after) && !SameRanges(ranges, next);
  ranges.swap(next);
  if (now_held == 0) ranges_of_.erase(owner.session);
  else held = now_held;
  if (ranges.empty()) locks_.erase(ino);
  if (reclaim) UpdateGrace(Clock::now());  // the last one reclaimed ends it
  UpdateMarker(relist);
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
  bool changed = false;
  for (auto it = locks_.begin(); it != locks_.end();) {
    auto& v = it->second;
    uint64_t ino = it->first;
    std::erase_if(v, [&](const Range& r) {
      if (r.owner.session != session) return false;
      if (r.listed) {
        listed_ranges_--;
        changed = true;
        // Shutting down: the lock stays listed, to be reclaimed.
        if (keep_marker_)
          kept_.push_back({ino, r.first, r.last, r.type, r.owner.proc_id, r.owner.identity,
                           r.owner.client_id});
      }
      return true;
    });
    it = v.empty() ? locks_.erase(it) : std::next(it);
  }
  ranges_of_.erase(session);
  UpdateMarker(changed);
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
