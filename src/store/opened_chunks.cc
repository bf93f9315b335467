#include "store/opened_chunks.h"

#include <cstring>

namespace muscle::store {

std::list<OpenedChunks::Entry>::iterator OpenedChunks::Locate(ChunkLocation at, uint64_t size) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it)
    if (it->at.container == at.container && it->at.offset == at.offset && it->size == size)
      return it;
  return entries_.end();
}

OpenedChunks::Found OpenedChunks::Find(ChunkLocation at, uint64_t size) {
  MutexLock lock(&mu_);
  Found f;
  for (;;) {
    auto it = Locate(at, size);
    if (it == entries_.end()) break;
    if (!it->claim) {
      entries_.splice(entries_.begin(), entries_, it);  // most recently used
      f.data = it->data;
      memcpy(f.name, it->name, 32);
      return f;
    }
    // Another thread is opening it: wait for its bytes (or its failure,
    // after which this one claims it in turn).
    filled_.Wait(&mu_);
  }
  Entry e;
  e.at = at;
  e.size = size;
  e.claim = next_claim_++;
  f.claim = e.claim;
  entries_.push_front(std::move(e));
  Trim();
  return f;
}

void OpenedChunks::Fill(uint64_t claim, const unsigned char* name, Data data) {
  MutexLock lock(&mu_);
  for (Entry& e : entries_)
    if (e.claim == claim) {
      e.claim = 0;
      memcpy(e.name, name, 32);
      e.data = std::move(data);
      break;
    }
  filled_.SignalAll();
}

void OpenedChunks::Abandon(uint64_t claim) {
  MutexLock lock(&mu_);
  for (auto it = entries_.begin(); it != entries_.end(); ++it)
    if (it->claim == claim) {
      entries_.erase(it);
      break;
    }
  filled_.SignalAll();
}

void OpenedChunks::Clear() {
  MutexLock lock(&mu_);
  entries_.clear();
  filled_.SignalAll();  // waiters find nothing and claim it themselves
}

void OpenedChunks::Trim() {
  // Filled entries only: a claimed one has a thread about to fill it (and
  // others waiting for it); the claims in flight are few (one per thread).
  size_t n = entries_.size();
  for (auto it = entries_.end(); n > capacity_ && it != entries_.begin();) {
    --it;
    if (it->claim) continue;
    it = entries_.erase(it);
    n--;
  }
}

}  // namespace muscle::store
