#include "store/precut.h"

#include <algorithm>
#include <system_error>

#include "common/threads.h"
#include "store/chunker.h"
#include "store/sha256.h"

namespace muscle::store {

namespace {
// Hand the helper at least this much new data at a time (fewer wake-ups).
constexpr size_t kPrecutStep = 256u << 10;
}  // namespace

Precut::~Precut() {
  {
    MutexLock l(&mu_);
    stopping_ = true;
  }
  cv_.SignalAll();
  if (thread_.joinable()) thread_.join();
}

void Precut::Offered(uint64_t ino, uint64_t lo, const char* base, size_t size) {
  MutexLock l(&mu_);
  if (!active_ || ino != ino_ || lo != lo_ || size < size_t(next_ - lo_)) {
    // Another stream (or a new range of this one) takes the helper over
    // only when it is free, and only for a buffer worth cutting ahead: a
    // write never waits for that, and small files leave the chain alone.
    if (busy_ || size < kPrecutStep) return;
    active_ = true;
    ino_ = ino;
    lo_ = lo;
    next_ = lo;
    cuts_.clear();
  }
  base_ = base;
  size_ = size;
  if (lo_ + size_ - next_ < kPrecutStep || busy_) {
    // The helper picks the new bytes up when it finishes the ones it has.
    avail_ = lo_ + size_;
    return;
  }
  avail_ = lo_ + size_;
  StartLocked();
  l.Unlock();
  cv_.SignalAll();
}

void Precut::StartLocked() {
  busy_ = true;
  if (!thread_.joinable()) {
    try {
      thread_ = StartThread("precut", [this] { Main(); });
    } catch (const std::system_error&) {
      busy_ = false;  // no helper to be had: flushes cut everything
    }
  }
}

void Precut::Main() {
  MutexLock l(&mu_);
  for (;;) {
    while (!stopping_ && !busy_) cv_.Wait(&mu_);
    if (stopping_) return;
    // Cut [next_, avail_) of the buffer without the lock; the store thread
    // only appends past avail_ meanwhile (or waits in Pause).
    const auto* p = reinterpret_cast<const uint8_t*>(base_);
    uint64_t lo = lo_, at = next_, end = avail_;
    l.Unlock();
    std::vector<Cut> made;
    while (!stop_.load(std::memory_order_relaxed)) {
      size_t len = naming_->CutEnd(p + (at - lo), size_t(end - at), false);
      if (len == 0) break;
      Cut c{at, uint32_t(len), {}};
      naming_->Name(p + (at - lo), len, c.hash);
      made.push_back(c);
      at += len;
    }
    l.Lock();
    cuts_.insert(cuts_.end(), made.begin(), made.end());
    next_ = at;
    // More arrived meanwhile: go on (unless nothing new can be cut).
    if (avail_ > end && avail_ - next_ >= kPrecutStep && !stopping_ && !stop_) continue;
    busy_ = false;
    cv_.SignalAll();
  }
}

void Precut::WaitIdle() {
  if (!busy_) return;
  // The helper stops at its next chunk; what it cut so far is kept.
  stop_ = true;
  while (busy_) cv_.Wait(&mu_);
  stop_ = false;
}

void Precut::Pause(uint64_t ino) {
  MutexLock l(&mu_);
  if (active_ && ino == ino_) WaitIdle();
}

void Precut::Drop(uint64_t ino) {
  MutexLock l(&mu_);
  if (!active_ || (ino != kAll && ino != ino_)) return;
  WaitIdle();
  active_ = false;
  cuts_.clear();
  base_ = nullptr;
}

bool Precut::Peek(uint64_t* ino, uint64_t* lo, uint64_t* cut_end) {
  MutexLock l(&mu_);
  if (!active_) return false;
  *ino = ino_;
  *lo = lo_;
  *cut_end = next_;
  return true;
}

void Precut::Rebase(uint64_t new_lo, const char* base, size_t size) {
  MutexLock l(&mu_);
  WaitIdle();
  auto keep = std::lower_bound(cuts_.begin(), cuts_.end(), new_lo,
                               [](const Cut& c, uint64_t o) { return c.offset < o; });
  cuts_.erase(cuts_.begin(), keep);
  lo_ = new_lo;
  base_ = base;
  size_ = size;
  if (next_ < new_lo) next_ = new_lo;
  avail_ = lo_ + size_;
}

const std::vector<Precut::Cut>& Precut::CutsOf(uint64_t ino) {
  static const std::vector<Cut> kNone;
  MutexLock l(&mu_);
  if (!active_ || ino != ino_) return kNone;
  WaitIdle();
  return cuts_;
}

}  // namespace muscle::store
