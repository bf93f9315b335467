// Cutting and hashing a stream of appends ahead of its flush.
//
// A sequential writer fills a file's write buffer and the store flushes it
// every few MiB; cutting (gear hash) and hashing (SHA-256) that data is
// most of a flush's CPU, and while the store thread did it no write was
// taken. Precut does that work on a helper thread as the appends arrive,
// over the buffer in place, so the flush finds the chunks of most of the
// buffer already cut and hashed and only writes them out.
//
// The chain of cuts starts at the buffer's first byte; a flush starts at
// the start of the stored extent before it, so it cuts as before until one
// of its cut points is the start of a chain cut and takes the chain from
// there (cut points depend only on the chunk start and the bytes, so from a
// common cut on both are the same: nothing changes on disk).
//
// Ownership and threading: owned by the Store and called only on its
// thread; runs one helper thread of its own ("precut" in common/threads.h),
// which shares the chain's state below with it under mu_. The helper reads the buffer
// the store thread appends to: the store keeps the bytes already offered
// in place and unchanged (an append within the buffer's capacity only
// writes past them) and calls Pause before anything else touches that
// buffer (reallocating, overwriting, moving its bytes, freeing it) and
// Drop when the bytes may no longer be what was offered.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "store/chunk_naming.h"
#include "common/thread_annotations.h"

namespace muscle::store {

class Precut {
 public:
  struct Cut {
    uint64_t offset;  // in the file
    uint32_t length;
    unsigned char hash[32];
  };

  Precut() = default;
  // Cuts and names with `naming` from now on (before the first Offered).
  void SetNaming(std::shared_ptr<const ChunkNaming> naming) { naming_ = std::move(naming); }
  ~Precut();
  Precut(const Precut&) = delete;
  Precut& operator=(const Precut&) = delete;

  // After an append to the buffered range of `ino` that starts at file
  // offset `lo` and now holds `size` bytes at `base`. Continues the chain
  // when this is its range; else starts a new chain there (dropping the
  // old one) if the helper is free and the range is big enough. Hands new
  // bytes to the helper once there are enough of them. Never waits.
  void Offered(uint64_t ino, uint64_t lo, const char* base, size_t size);
  // When the chain is `ino`'s: stops the helper at its next chunk and
  // waits until it is not reading the buffer (it resumes at the next
  // Offered). Cuts made so far are kept.
  void Pause(uint64_t ino);
  // Pause, then forget the chain of `ino` (of any file with kAll).
  static constexpr uint64_t kAll = ~uint64_t(0);
  void Drop(uint64_t ino);
  // Pause, then the cuts of `ino`'s chain (ordered, contiguous; empty when
  // the chain is another file's or there is none). Valid until the next
  // call on this object.
  const std::vector<Cut>& CutsOf(uint64_t ino);
  // Without waiting: the chain's file and range start, and where its cuts
  // end so far. False when there is no chain.
  bool Peek(uint64_t* ino, uint64_t* lo, uint64_t* cut_end);
  // After the store flushed [lo, new_lo) of the chain's range and moved the
  // rest to the front of the buffer (now at `base`, `size` bytes): the
  // chain goes on from new_lo, a cut point of it. Call Pause first.
  void Rebase(uint64_t new_lo, const char* base, size_t size);

 private:
  void Main() EXCLUDES(mu_);
  void StartLocked() REQUIRES(mu_);
  void WaitIdle() REQUIRES(mu_);

  // Set before the helper starts (SetNaming); read by it.
  std::shared_ptr<const ChunkNaming> naming_ = ChunkNaming::Plain();
  Mutex mu_;
  CondVar cv_;
  std::thread thread_;  // started and joined by the store thread
  bool stopping_ GUARDED_BY(mu_) = false;
  bool busy_ GUARDED_BY(mu_) = false;  // the helper is reading the buffer
  std::atomic<bool> stop_{false};  // asks the helper to stop at its next chunk
  // The chain: the buffered range [lo_, lo_ + size_) at base_, cut from
  // lo_ up to next_; the helper may cut up to avail_.
  uint64_t ino_ GUARDED_BY(mu_) = 0;
  bool active_ GUARDED_BY(mu_) = false;
  uint64_t lo_ GUARDED_BY(mu_) = 0;
  const char* base_ GUARDED_BY(mu_) = nullptr;
  size_t size_ GUARDED_BY(mu_) = 0;
  uint64_t next_ GUARDED_BY(mu_) = 0;
  uint64_t avail_ GUARDED_BY(mu_) = 0;
  std::vector<Cut> cuts_ GUARDED_BY(mu_);
};

}  // namespace muscle::store
