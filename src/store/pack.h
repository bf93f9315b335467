// Pack files: append-only files holding the store's chunk data (format v2,
// man/musclefs-store.5). SQLite keeps the index (chunk -> pack, offset).
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
// reader store has its own PackSet opened for reading). Holes are punched
// on a helper thread of its own ("punch-holes" in common/threads.h), through
// descriptors of its own; the hole queue is shared with it under punch_mu_.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "common/result.h"
#include "common/thread_annotations.h"

namespace muscle::store {

class PackSet {
 public:
  static constexpr size_t kHeaderSize = 16;
  static constexpr size_t kRecordHeader = 36;  // length + hash
  // A pack is sealed and a new one opened once it reaches this size.
  uint64_t pack_target = 32u << 20;
  // Called when a write fails for lack of space; returns true when it
  // freed some (the store's reserve), and the write is tried once more.
  std::function<bool()> on_full;

  struct Location {
    uint64_t pack;
    uint64_t offset;  // of the data, past the record header
  };
  struct Record {
    uint64_t offset;  // of the data
    uint32_t length;
    unsigned char hash[32];
  };

  PackSet() = default;
  ~PackSet();
  PackSet(const PackSet&) = delete;
  PackSet& operator=(const PackSet&) = delete;

  // Opens the packs in `dir` (created if missing). `committed` maps each
  // pack id to its committed length; longer files are truncated, files of
  // unknown packs deleted. The highest id is the open pack (a new one is
  // started if there is none). `owner` (the store's id) is kept in
  // dir/owner: a directory that belongs to another store, or holds packs
  // but no owner, is refused rather than cleaned.
  Status Open(const std::string& dir, const std::string& owner,
              const std::map<uint64_t, uint64_t>& committed);

  // For a reader: only Read is used, on descriptors of its own opened
  // read-only; nothing is checked or truncated (the writer did that).
  void OpenForReading(const std::string& dir) {
    dir_ = dir;
    read_only_ = true;
  }

  // Appends a record; new_pack is set when the append started a new pack
  // (the caller records it in the index).
  Result<Location> Append(std::string_view data, const unsigned char (&hash)[32],
                          bool* new_pack);
  Status Read(uint64_t pack, uint64_t offset, size_t len, char* out);
  // Syncs every pack written since the last Sync (data before index).
  Status Sync();
  // Forgets everything after (pack, size): removes newer packs, truncates.
  Status RollBackTo(uint64_t pack, uint64_t size);
  // Gives back the space of a dead record's data. The hole is punched by a
  // helper thread (with the file system's discard, a punch can take a
  // quarter of a millisecond, and a large delete makes thousands); an
  // error shows at WaitPunches.
  Status Punch(uint64_t pack, uint64_t offset, uint64_t length);
  // Waits until every hole asked for is punched; the first error since the
  // last call, if any.
  Status WaitPunches();
  // Every record of a pack up to `size`, in order.
  Status Walk(uint64_t pack, uint64_t size, std::vector<Record>& out);
  Status Remove(uint64_t pack);
  // Closes every cached descriptor (a reader's, after packs were removed).
  void CloseAll();

  uint64_t open_pack() const { return open_id_; }
  uint64_t open_size() const { return open_size_; }
  // Ids of the pack files present.
  std::vector<uint64_t> Packs() const;
  const std::string& dir() const { return dir_; }

 private:
  std::string PathOf(uint64_t id) const;
  Result<int> Fd(uint64_t id);
  Status Create(uint64_t id);
  void Close(uint64_t id);
  // Starts (does not wait for) the disk writes of the open pack's bytes
  // appended since the last call, once there are kWritebackStep of them
  // (or any, with `all`).
  void StartWriteback(int fd, bool all);
  static constexpr uint64_t kWritebackStep = 4u << 20;

  std::string dir_;
  bool read_only_ = false;
  uint64_t open_id_ = 0;
  uint64_t open_size_ = 0;
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

}  // namespace muscle::store
