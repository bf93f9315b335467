// The seam between the tree and chunk data: where the bytes of chunks live.
//
// The Store keeps the tree and the chunk index in SQLite (chunks: hash ->
// container, offset, size; packs: container -> committed length) and asks
// a ChunkStore for the bytes. A ChunkStore knows nothing of files, inodes,
// reference counts or transactions; it stores records and hands back where
// it put them. Implementations: LocalPackStore (store/pack.h, the pack
// directory next to the database, format 2 of man/musclefs-store.5) and
// MemoryChunkStore (store/memory_chunk_store.h, for tests), both on
// ContainerChunkStore (below), which reads the layout over byte ranges.
//
// Data model. Chunks are appended as records to containers (a pack file, an
// object): an append-only byte sequence numbered by a 64-bit id, starting
// with a kContainerHeaderSize-byte header, then for each chunk a
// kRecordHeaderSize-byte record header (4-byte little-endian length, the
// chunk's SHA-256) and the data. Every implementation keeps that layout and
// its offsets (the index stores them, gc and check count with them), so a
// location names the same bytes whatever the backend. Exactly one container
// is open for appends at a time: the one with the highest id. Once it
// reaches its target size the next Put seals it and starts the next id;
// sealed containers never change again except that a dead record's data
// may be punched (read back as zeros) and a whole container removed. That
// is the shape of an object store: a sealed container is one immutable
// object (~32 MiB), written whole; reads are ranged reads of it.
//
// Durability contract. Nothing Put returns is durable until Sync returns
// OK. The Store calls Sync before it commits any index row naming a new
// record, and records mark() (the open container and its length) in that
// same commit. After a failed transaction it calls RollBackTo(the mark of
// the last commit): everything appended since is forgotten, containers
// started since are gone. At open (Open), the committed lengths are given
// back: a longer container (a torn or uncommitted tail) is cut back,
// containers the index does not name are deleted, a missing or shorter one
// is an error (EIO). Punch and Remove are only ever called for space the
// committed index no longer names.
//
// Reads and latency. ReadBatch takes a batch of ranges so that a backend whose
// reads cost tens of milliseconds (ranged GETs) can merge neighbours, read
// ahead and serve from a local cache in front; the local pack directory
// simply reads each range. A range must lie inside its record (EINVAL
// otherwise). A read of a punched record returns zeros; a read of a removed
// container fails (ENOENT or EIO).
//
// Errors are Status values carrying errno, with a message naming the
// container; no exceptions leave a ChunkStore.
//
// Ownership and threading. A ChunkStore is owned by one Store and, like
// it, is not thread-safe: every method is called from the owning Store's
// thread. An implementation may run helper threads of its own (the pack
// directory punches holes on one); their errors show at WaitIdle. Reader
// stores (Store::OpenReader, one per reader-pool thread) each own a
// read-only instance (NewReader, or LocalPackStore's read-only mode) that
// serves the reads (ReadBatch, ReadRecord, Records) and may be used on another thread
// than the writer's, concurrently with it: an implementation makes that
// safe (separate descriptors, or a lock around shared state).
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "crypto/keys.h"

namespace muscle::store {

// Layout facts shared by every implementation (man/musclefs-store.5).
inline constexpr uint64_t kContainerHeaderSize = 16;
inline constexpr uint64_t kRecordHeaderSize = 36;  // length + hash
// A container's header: "musclefs pack", two zero bytes, version 1.
inline constexpr unsigned char kContainerMagic[kContainerHeaderSize] = {
    'm', 'u', 's', 'c', 'l', 'e', 'f', 's', ' ', 'p', 'a', 'c', 'k', 0, 0, 1};

// Where a chunk's data is: the container and the offset of the data (past
// its record header).
struct ChunkLocation {
  uint64_t container = 0;
  uint64_t offset = 0;
};

// A record as stored: where its data starts, its length and hash.
struct ChunkRecord {
  uint64_t offset = 0;  // of the data
  uint32_t length = 0;
  unsigned char hash[32] = {};
};

// The open container and its length (container 0: none yet). What a
// commit records and what RollBackTo returns to.
struct ContainerMark {
  uint64_t container = 0;
  uint64_t size = 0;
  bool operator==(const ContainerMark&) const = default;
};

// What Put did. When `started` is set the put began container
// at.container (the index records it with length kContainerHeaderSize)
// and, if sealed.container is not 0, sealed that one at sealed.size (the
// index records its final length).
struct PutResult {
  ChunkLocation at;
  bool started = false;
  ContainerMark sealed;
};

// One range of a Read batch: `len` bytes at `from` inside the chunk at
// `at`, whose data is `size` bytes (from the index), into `out`.
struct ChunkRead {
  ChunkLocation at;
  uint64_t size = 0;
  uint64_t from = 0;
  size_t len = 0;
  char* out = nullptr;
  // The chunk's name as the index gives it, when the reader knows it: a
  // sealed store (sealed_chunk_store.h) refuses (EIO) a record that holds
  // another chunk than the index names. Plain stores ignore it (check
  // compares names there).
  bool named = false;
  unsigned char name[32] = {};
};

class ChunkStore {
 public:
  virtual ~ChunkStore() = default;

  // Recovers the containers against the index: `committed` maps each
  // container the index names to its committed length (see "Durability").
  // `owner` (the store's id) ties the containers to one store: containers
  // that belong to another store are refused (EEXIST), never cleaned.
  // Called once, before anything else, on a writer's instance.
  virtual Status Open(const std::string& owner,
                      const std::map<uint64_t, uint64_t>& committed) = 0;

  // Appends a record of `data` (not empty, at most 4 GiB - 1) named by
  // `hash` (its SHA-256; not checked) to the open container. Not durable
  // before Sync. On failure nothing the index could name was added.
  virtual Result<PutResult> Put(std::string_view data, const unsigned char (&hash)[32]) = 0;
  // Where the data of a Put of `length` bytes would go if it were the next
  // call: Put's `at` (a new container's first record when it would start
  // one). For a layer that must know a record's place before it writes it
  // (sealing binds the place: store/sealed_chunk_store.h).
  virtual ChunkLocation PlaceOf(size_t length) const = 0;
  // The bytes a record takes in its container beyond the data the index
  // counts (a chunk's size): the record header, and what sealing adds.
  virtual uint64_t RecordOverhead() const { return kRecordHeaderSize; }

  // Reads every range of the batch (see ChunkRead); the first error fails
  // the call (the contents of `out` buffers are then unspecified). EINVAL
  // when a range does not lie inside its record.
  virtual Status ReadBatch(std::span<const ChunkRead> reads) = 0;
  // One range: `len` bytes at `from` inside the `size`-byte chunk at `at`.
  Status Read(ChunkLocation at, uint64_t size, uint64_t from, size_t len, char* out,
              const uint8_t* name = nullptr) {
    ChunkRead r{at, size, from, len, out};
    if (name) {
      r.named = true;
      memcpy(r.name, name, 32);
    }
    return ReadBatch(std::span<const ChunkRead>(&r, 1));
  }
  // The whole record whose data is at `at` (`size` bytes by the index):
  // its header as stored (which may disagree with the index: check
  // compares them) and its data into `data` (resized to `size`).
  virtual Status ReadRecord(ChunkLocation at, uint64_t size, ChunkRecord* header,
                            std::string& data) = 0;

  // Makes every record appended since the last Sync durable (data before
  // index). For an object backend: the open container's new bytes are
  // uploaded (or staged durably) before this returns.
  virtual Status Sync() = 0;
  // The open container and its length now.
  virtual ContainerMark mark() const = 0;
  // Forgets everything appended after `mark` (a mark taken earlier on this
  // instance, or the last committed one): containers started since are
  // removed, the open one is cut back to mark.size.
  virtual Status RollBackTo(const ContainerMark& mark) = 0;

  // Gives back the space of a dead record's data (`length` bytes at `at`):
  // whole 4 KiB pages inside it read back as zeros from then on; headers
  // stay, so a container can always be walked. May happen in the
  // background: an error shows at WaitIdle. A backend with immutable
  // containers may only account for it (gc compaction frees the space).
  virtual Status Punch(ChunkLocation at, uint64_t length) = 0;
  // Waits until all background work asked for so far (punches) is done;
  // the first error since the last call, if any.
  virtual Status WaitIdle() = 0;

  // Ids of the containers present, in increasing order.
  virtual std::vector<uint64_t> Containers() = 0;
  // Every record of `container` up to `size` (its committed length), in
  // order; EIO when the container is not one or a record is torn.
  virtual Status Records(uint64_t container, uint64_t size, std::vector<ChunkRecord>& out) = 0;
  // Deletes a whole container (gc, after the index stopped naming it).
  // Removing one that is not there is not an error.
  virtual Status Remove(uint64_t container) = 0;

  // On a reader, after the writer removed containers: drops cached handles
  // and cached data so that their space is really freed.
  virtual void ForgetCached() = 0;
  // A read-only instance on the same containers for a reader store, usable
  // on another thread (see "Ownership and threading").
  virtual Result<std::unique_ptr<ChunkStore>> NewReader() = 0;
  // Where the containers live, for the index to remember (meta 'chunks'):
  // "local" (the pack directory), "memory", or a bucket's Location
  // (s3/object_store.h). A store refuses to open on another place than the
  // one it was made with.
  virtual std::string Location() const = 0;
  // Called on the writer now and then while every append is synced and
  // committed (the store has no transaction open): a bucket store seals
  // and uploads an open pack that has waited long enough.
  virtual void Idle() {}
  // Makes the next Put start a new container, though the open one has
  // room (a key rotation: the open container keeps the key it was begun
  // with). Not kept across a restart. Backends that cannot: nothing.
  virtual void SealOpen() {}
  // For a backend that keeps objects of its own beside the records (a
  // bucket's index objects and catalog, store/bucket_index.h): the key to
  // seal them under (an encrypted store's; before Open), and the snapshot
  // catalog to publish once the records it names are stored for good.
  virtual void SetMasterKey(std::shared_ptr<const crypto::MasterKey>) {}
  virtual void PublishCatalog(std::string) {}
  // Name/value pairs saying how the store is doing, for `muscle status`
  // ("chunks" = Location() first). Called on the owner's thread.
  virtual std::vector<std::pair<std::string, std::string>> StatusFields() const {
    return {{"chunks", Location()}};
  }
};

// A ChunkStore whose containers are byte sequences read by offset (a pack
// file, memory, an object read with ranged GETs): the reads of the layout
// are written once here, over ReadRaw.
class ContainerChunkStore : public ChunkStore {
 public:
  Status ReadBatch(std::span<const ChunkRead> reads) override;
  // Reads the header, then the data into `data` (two ReadRaw calls).
  Status ReadRecord(ChunkLocation at, uint64_t size, ChunkRecord* header,
                    std::string& data) override;

 protected:
  // `len` bytes at `offset` of container `id`, header or not; an error
  // when the container is missing or shorter.
  virtual Status ReadRaw(uint64_t id, uint64_t offset, size_t len, char* out) = 0;
};

// --- helpers for implementations of the layout above (chunk_store.cc) ---

// The record header of a chunk: length (little-endian) and hash.
void EncodeRecordHeader(uint32_t length, const unsigned char (&hash)[32],
                        unsigned char (&out)[kRecordHeaderSize]);
// The record whose header is `head` and whose data starts at data_offset.
ChunkRecord DecodeRecordHeader(const unsigned char (&head)[kRecordHeaderSize],
                               uint64_t data_offset);
// EINVAL unless [from, from + len) lies inside a `size`-byte record.
Status CheckRange(const ChunkRead& r);
// The 4 KiB pages wholly inside [offset, offset + length): [*lo, *hi)
// (empty when *lo >= *hi). Only these are punched.
void PunchablePages(uint64_t offset, uint64_t length, uint64_t* lo, uint64_t* hi);
// Walks the records of a container of `size` bytes whose bytes `read`
// returns (read(buf, len, at) -> errno or 0), checking its header
// (kContainerMagic) and that no record is torn; `name` (the container's)
// is used in messages.
Status WalkRecords(const std::function<int(void*, size_t, uint64_t)>& read, uint64_t size,
                   const std::string& name, std::vector<ChunkRecord>& out);
// A Status for errno `e`: "what: strerror(e)".
Status ErrnoStatus(int e, const std::string& what);

}  // namespace muscle::store
