// The chunks an encrypted store opened last, shared by the writer's
// SealedChunkStore and every reader's (store/sealed_chunk_store.h), so
// that a chunk read in pieces by several threads is decrypted once.
//
// Why shared. A sealed record authenticates only whole, so a read of part
// of a chunk opens all of it. Sequential reads come in msize pieces (64 KiB
// for the Linux client with diod's msize, chunks average 64 KiB), several
// in flight, answered by the writer and the reader threads at once: a
// chunk cut across two or three Treads would be opened on each thread that
// answers one of them. Here the first thread to want a chunk claims it and
// opens it; the others wait for it (a few microseconds) and copy from it.
//
// Entries are keyed by the record's place (container, offset) and its
// size, and hold the name it was sealed under (the caller still compares it
// with the index's) and the plaintext. A place names the same committed
// bytes while its container lives (committed container numbers are never
// reused); Clear drops everything (a roll-back reuses uncommitted places)
// and makes a claim taken before it unable to fill (its opener's bytes may
// be of the old place).
//
// Memory: at most `capacity` entries of at most one chunk each (256 KiB),
// least recently used first out; plaintext in this process's memory only,
// as the page cache holds it after a read anyway.
//
// Threading: every method is thread-safe (one mutex; a waiter sleeps on a
// condition variable). The data handed out is immutable and shared.
#pragma once

#include <cstdint>
#include <list>
#include <memory>

#include "common/mutex.h"
#include "common/thread_annotations.h"
#include "store/chunk_store.h"

namespace muscle::store {

class OpenedChunks {
 public:
  explicit OpenedChunks(size_t capacity) : capacity_(capacity) {}

  // A chunk's plaintext (its size is the entry's), shared and immutable.
  using Data = std::shared_ptr<const char[]>;
  // What Find gives: the chunk's plaintext and the name it was sealed
  // under (after waiting while another thread opens it); or no data and a
  // claim: the caller opens it and must then call Fill, or Abandon when it
  // fails, with the claim.
  struct Found {
    Data data;
    unsigned char name[32] = {};
    uint64_t claim = 0;
  };
  Found Find(ChunkLocation at, uint64_t size);
  void Fill(uint64_t claim, const unsigned char* name, Data data);
  void Abandon(uint64_t claim);
  // Forgets every entry, and every claim not yet filled.
  void Clear();

 private:
  struct Entry {
    ChunkLocation at;
    uint64_t size = 0;
    uint64_t claim = 0;  // non-zero while its opener has not filled it
    unsigned char name[32] = {};
    Data data;
  };
  std::list<Entry>::iterator Locate(ChunkLocation at, uint64_t size) REQUIRES(mu_);
  void Trim() REQUIRES(mu_);

  const size_t capacity_;
  Mutex mu_;
  CondVar filled_;                          // an entry was filled or abandoned
  std::list<Entry> entries_ GUARDED_BY(mu_);  // most recently used first
  uint64_t next_claim_ GUARDED_BY(mu_) = 1;
};

}  // namespace muscle::store
