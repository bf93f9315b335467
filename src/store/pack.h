// Pack files: append-only files holding the store's chunk data (format v2,
// man/musclefs-store.5); the local implementation of ChunkStore
// (store/chunk_store.h). SQLite keeps the index (chunk -> pack, offset).
//
// A pack is PACKDIR/NNNNNNNN.pack: a 16-byte header ("musclefs pack" and
// a version), then one record per chunk: a 4-byte little-endian length,
// the chunk's 32-byte SHA-256, the data. Records are only ever appended;
// space of dead chunks is given back by punching holes in their data
// (headers stay, so a pack can always be walked).
//
// Durability: the store syncs the open pack (Sync) before it commits the
// index rows that name its new records, and records the pack's committed
// length in SQLite in the same transaction. At open, a pack longer than its
// committed length (a torn or uncommitted tail) is truncated back.
//
// I/O passes through the same seams as SQLite's (store/vfs.h): injected
// faults and power-loss simulation apply to packs too.
//
// Threading: not thread-safe; owned by the Store, used on its thread (each
// reader store has its own LocalPackStore opened read-only, with
// descriptors of its own). Holes are punched on a helper thread of its own
// ("punch-holes" in common/threads.h), through descriptors of its own; the
// hole queue is shared with it under punch_mu_.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "common/result.h"
#include "common/thread_annotations.h"
#include "store/chunk_store.h"

namespace muscle::store {

// The pack directory as a ChunkStore (chunk_store.h): a container is a
// pack file.
class LocalPackStore final : public ContainerChunkStore {
 public:
  static constexpr size_t kHeaderSize = kContainerHeaderSize;
  static constexpr size_t kRecordHeader = kRecordHeaderSize;
  // A pack is sealed and a new one opened once it reaches this size.
  uint64_t pack_target = 32u << 20;
  // Called when a write fails for lack of space; returns true when it
  // freed some (the store's reserve), and the write is tried once more.
  std::function<bool()> on_full;

  enum class Mode { kWrite, kReadOnly };
  // The packs in `dir`. A writer (kWrite) must be Opened before use; a
  // reader (kReadOnly) only reads, on descriptors of its own opened
  // read-only: nothing is checked or truncated (the writer did that), and
  // the changing methods answer EROFS.
  LocalPackStore(std::string dir, Mode mode);
  // A writer on a fresh temporary directory (for ":memory:" stores),
  // removed with everything in it when the store is destroyed.
  static Result<std::unique_ptr<LocalPackStore>> Temporary();
  ~LocalPackStore() override;
  LocalPackStore(const LocalPackStore&) = delete;
  LocalPackStore& operator=(const LocalPackStore&) = delete;

  // Opens the packs in the directory (created if missing). `committed`
  // maps each pack id to its committed length; longer files are
  // truncated, files of unknown packs deleted. The highest id is the open
  // pack (the first Put starts pack 1 if there is none). `owner` (the
  // store's id) is kept in dir/owner: a directory that belongs to another
  // store, or holds packs but no owner, is refused rather than cleaned.
  Status Open(const std::string& owner, const std::map<uint64_t, uint64_t>& committed) override;
  // Appends a record to the open pack; writeback of the written bytes is
  // started early (sync_file_range) so that Sync finds them mostly written.
  Result<PutResult> Put(std::string_view data, const unsigned char (&hash)[32]) override;
  ChunkLocation PlaceOf(size_t length) const override;
  // Syncs every pack written since the last Sync (data before index).
  Status Sync() override;
  ContainerMark mark() const override { return {open_id_, open_size_}; }
  // Removes newer packs, truncates the open one (and undoes SealOpen).
  Status RollBackTo(const ContainerMark& mark) override;
  // Seals the open pack early: the next Put starts a new one (and reports
  // this one as sealed) though it has room. For a bucket, whose packs are
  // uploaded once sealed.
  void SealOpen() override { seal_next_ = open_id_ != 0; }
  // The hole is punched by a helper thread (with the file system's
  // discard, a punch can take a quarter of a millisecond, and a large
  // delete makes thousands); an error shows at WaitIdle.
  Status Punch(ChunkLocation at, uint64_t length) override;
  // Waits until every hole asked for is punched.
  Status WaitIdle() override;
  std::vector<uint64_t> Containers() override;
  Status Records(uint64_t pack, uint64_t size, std::vector<ChunkRecord>& out) override;
  Status Remove(uint64_t pack) override;
  // Closes every cached descriptor.
  void ForgetCached() override;
  Result<std::unique_ptr<ChunkStore>> NewReader() override;
  std::string Location() const override { return "local"; }

  const std::string& dir() const { return dir_; }
  // The file of pack `id` in the directory.
  std::string PathOf(uint64_t id) const;

 private:
  // Whether a Put of `length` bytes starts the next pack.
  bool StartsPack(size_t length) const;
  Result<int> Fd(uint64_t id);
  Status Create(uint64_t id);
  void Close(uint64_t id);
  Status ReadRaw(uint64_t pack, uint64_t offset, size_t len, char* out) override;
  // Starts (does not wait for) the disk writes of the open pack's bytes
  // appended since the last call, once there are kWritebackStep of them
  // (or any, with `all`).
  void StartWriteback(int fd, bool all);
  static constexpr uint64_t kWritebackStep = 4u << 20;

  std::string dir_;
  bool read_only_ = false;
  bool temporary_ = false;  // dir_ is removed in the destructor
  uint64_t open_id_ = 0;
  uint64_t open_size_ = 0;
  bool seal_next_ = false;  // SealOpen: the next Put starts a new pack
  uint64_t writeback_from_ = 0;  // open pack bytes before this: writeback started
  // The punching helper: (descriptor of its own, offset, length) to do.
  struct Hole {
    int fd;
    uint64_t offset, length;
  };
  void PunchMain() EXCLUDES(punch_mu_);
  Mutex punch_mu_;
  CondVar punch_cv_;
  std::deque<Hole> holes_ GUARDED_BY(punch_mu_);
  bool punching_ GUARDED_BY(punch_mu_) = false;
  bool punch_stop_ GUARDED_BY(punch_mu_) = false;
  int punch_errno_ GUARDED_BY(punch_mu_) = 0;
  std::string punch_error_ GUARDED_BY(punch_mu_);
  std::thread puncher_ GUARDED_BY(punch_mu_);  // joined (by the destructor) without it
  std::map<uint64_t, int> fds_;       // open descriptors (a small cache)
  std::vector<uint64_t> unsynced_;   // packs written since the last Sync
};

// fsync of a directory, so that a file created (or removed) in it stays.
Status SyncDir(const std::string& dir);

}  // namespace muscle::store
