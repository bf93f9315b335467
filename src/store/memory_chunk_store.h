// A ChunkStore (store/chunk_store.h) that keeps its containers in memory,
// for tests: the same layout and offsets as the pack directory, so a store
// on it indexes, checks and compacts exactly as on disk, without touching
// the file system.
//
// Durability: Sync only moves the synced mark (there is nothing below
// memory); what was appended and not rolled back lives as long as the
// containers do. The containers are shared (std::shared_ptr) between the
// instance that made them and its readers (NewReader), and outlive any of
// them; a new writer on the same containers (Reopen) sees what was synced,
// the unsynced tails dropped, as a crash would leave a pack directory.
//
// Threading: one instance is used by one thread at a time, like any
// ChunkStore; the containers' shared state is guarded by a mutex, so a
// writer and its readers may run on different threads.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "store/chunk_store.h"

namespace muscle::store {

class MemoryChunkStore final : public ContainerChunkStore {
 public:
  // A container is sealed once it would grow past `container_target`.
  explicit MemoryChunkStore(uint64_t container_target = 32u << 20);
  ~MemoryChunkStore() override;
  MemoryChunkStore(const MemoryChunkStore&) = delete;
  MemoryChunkStore& operator=(const MemoryChunkStore&) = delete;

  // A new writer on this instance's containers, as after a crash: what was
  // not synced is gone (it must be Opened, like any writer).
  std::unique_ptr<MemoryChunkStore> Reopen() const;

  Status Open(const std::string& owner, const std::map<uint64_t, uint64_t>& committed) override;
  Result<PutResult> Put(std::string_view data, const unsigned char (&hash)[32]) override;
  ChunkLocation PlaceOf(size_t length) const override;
  Status Sync() override;
  ContainerMark mark() const override { return open_; }
  Status RollBackTo(const ContainerMark& mark) override;
  Status Punch(ChunkLocation at, uint64_t length) override;
  Status WaitIdle() override { return Status::Ok(); }  // punches are done at once
  std::vector<uint64_t> Containers() override;
  Status Records(uint64_t container, uint64_t size, std::vector<ChunkRecord>& out) override;
  Status Remove(uint64_t container) override;
  void ForgetCached() override {}  // nothing cached
  Result<std::unique_ptr<ChunkStore>> NewReader() override;
  std::string Location() const override { return "memory"; }

  // Bytes of record data punched so far (whole pages, as on disk).
  uint64_t punched_bytes() const;

 private:
  bool StartsContainer(size_t length) const;
  struct Shared;
  MemoryChunkStore(std::shared_ptr<Shared> shared, bool read_only, uint64_t target);
  static std::string NameOf(uint64_t id);
  // Copies `len` bytes at `offset` of container `id`; EIO past its end,
  // ENOENT when there is no such container.
  Status ReadRaw(uint64_t id, uint64_t offset, size_t len, char* out) override;

  std::shared_ptr<Shared> shared_;
  bool read_only_ = false;
  uint64_t target_;
  ContainerMark open_;
};

}  // namespace muscle::store
