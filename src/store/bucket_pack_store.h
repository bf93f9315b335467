// Chunk data in a bucket: a ChunkStore (store/chunk_store.h) whose sealed
// containers are immutable objects in an ObjectStore (s3/object_store.h: an
// S3 bucket, or a directory in tests), with the local pack directory as a
// write-back cache in front of it.
//
// Writes. Put appends to the open pack in the cache directory exactly as
// the local pack store does (store/pack.h), and Sync makes it durable on
// the local disk: that is what Tfsync waits for, so a write is acknowledged
// as durable once it is on the local disk. A pack sealed at its target size
// (~32 MiB) is immutable from then on: it is queued for upload at once and uploaded by the
// "bucket-upload" thread as one object, packs/<32 random hex digits> (never
// a name derived from content; multipart above the client's part size).
// Until then it exists only in the cache. The open pack is sealed early
// once its oldest not-uploaded byte is `seal_after_s` old (at a Sync, or at
// Idle while the store has nothing uncommitted), and uploaded then; an open
// pack sealed early and uploaded stays sealed across a restart (the next
// Put starts a new one). It is also sealed early when the store goes
// quiet (a "quiet seal", at Idle): no Put for `quiet_seal_s`, every byte
// synced and committed, and no upload queued or in flight (a backlog of
// uploads would delay this pack anyway, and writes that resume meanwhile
// fill it instead), and not within `seal_after_s` of the last early seal
// (quiet or by age) unless the open pack holds at least a quarter of the
// pack target: so a trickle of writes still makes at most one small pack
// per `seal_after_s`, not a stream of tiny ones. So the end of
// a large write reaches the bucket about `quiet_seal_s` after the uploads
// before it, not `seal_after_s` after its first byte. `stats()` says how
// much is not yet uploaded.
//
// The manifest (DIR/bucket-manifest, appended and fsynced, rewritten
// compactly at Open) records each uploaded pack as "U <id> <name> <size>"
// once its upload completed, and "D <id>" when it is forgotten (removed by
// gc, or voided by a roll-back). An upload counts only while the index's
// committed length of that pack equals the uploaded size: at Open an
// upload of a pack the index does not name, or names with another length,
// is voided and its object deleted; objects under packs/ that the manifest
// does not name (an upload cut by a crash before its "U" line) are deleted.
// So a crash at any point between upload and index commit leaves neither a
// dangling index row (a pack the index names is in the cache or uploaded)
// nor a lost acknowledged write (the cache keeps a pack until its upload is
// recorded). The bucket's "owner" object holds the store's id: a bucket
// prefix that belongs to another store is refused (EEXIST).
//
// The cache. Local packs whose upload is recorded may be evicted (least
// recently read first) once the cache directory holds more than
// `cache_limit` bytes. Packs not yet uploaded are never evicted: when the
// sealed ones alone fill the limit (the open pack adds at most its target
// size), a Put waits for the uploads to make room while they
// succeed (back-pressure, up to `full_wait_s`), and answers ENOSPC at once
// while they fail (the bucket unreachable), with a message naming the bucket
// and the last upload error; nothing already acknowledged is touched.
//
// Reads. A pack in the cache is read from its file; any other from the
// bucket, in ranges: range k of an object is its bytes [k * read_ahead,
// (k + 1) * read_ahead), the last one shorter. A range is fetched by one
// ranged GET into one of `read_ahead_slots` buffers of `read_ahead` bytes
// shared by the writer and all its readers (allocated on first use, never
// zero-filled, reused; so the read-ahead memory is read_ahead *
// read_ahead_slots, 32 MiB by default, whatever the number of readers),
// and every read of bytes in it is a copy out of that buffer: several
// readers of one range wait for the same GET, never send their own. When
// reads are sequential (a read lands in a range that was fetched ahead, or
// in the range after one that is held), the next `read_ahead_depth` ranges
// are fetched in the background by as many "bucket-fetch" threads
// (started at the first bucket read), continuing into the next uploaded
// pack that is not in the cache (packs are numbered in write order, so a
// stream written at once goes on there). A fetch that a read waits for is
// queued before the fetches ahead (after those other reads wait for,
// oldest first; a queued fetch ahead moves up once a read waits for it).
// A fetch ahead only takes a buffer
// that is free or whose range was read already; a read that finds every
// buffer in use GETs its bytes straight into the caller's memory.
// A GET is bounded by the client's timeouts (s3/s3_client.h: a connect
// timeout and a minimum transfer speed, with its retries), so a reader
// waiting for a fetch is never left waiting on a bucket that hangs longer
// than that.
//
// Failures. Uploads and deletes that fail are retried by the thread with
// back-off (0.5 s doubling to 30 s; one log line per failure, with what is
// pending); reads that fail answer the error (EIO) to every read waiting
// for that range, and the next read of it fetches it again. Roll-backs (RollBackTo) void uploads of every pack from the
// mark's on: an upload in flight when that happens is deleted when it ends.
//
// Ownership and threading. Owned by one Store and used on its thread, like
// every ChunkStore. The writer runs the "bucket-upload" thread; it reads the
// cache files through descriptors of its own and shares the upload queue,
// the manifest and the table of uploaded packs with the writer and the
// readers through `Shared` (under its mutex). Readers (NewReader) share
// that table, the read-ahead buffers and the object store and read the
// cache directory through descriptors of their own. The "bucket-fetch"
// threads touch only the read-ahead buffers (a buffer is written by its
// fetch alone, and read by readers only once it is ready, pinned so that it
// is not reused under them) and the object store. The writer's destructor
// stops and joins the uploader and the fetchers (a fetch in flight ends
// first; queued ones fail with ECANCELED); readers outliving it read with
// GETs of their own.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "common/result.h"
#include "common/thread_annotations.h"
#include "s3/object_store.h"
#include "store/chunk_store.h"
#include "store/pack.h"

namespace muscle::store {

struct BucketStats {
  uint64_t pending_packs = 0, pending_bytes = 0;    // sealed, not yet uploaded
  uint64_t open_bytes = 0;                          // the open pack (uploaded once sealed)
  uint64_t uploaded_packs = 0, uploaded_bytes = 0;  // recorded in the manifest
  uint64_t cached_bytes = 0;                        // pack files in the cache directory
  uint64_t uploads = 0, upload_failures = 0, bucket_reads = 0, evictions = 0;
  uint64_t reads_ahead = 0;  // of bucket_reads: GETs of ranges fetched ahead
  std::string last_error;  // of the last failed upload or delete, "" after a success
};

class BucketPackStore final : public ContainerChunkStore {
 public:
  struct Options {
    uint64_t pack_target = 32u << 20;
    uint64_t cache_limit = 4ull << 30;
    // Reads from the bucket (Reads, above): the range size, the number of
    // range buffers (the read-ahead memory is their product), and how many
    // ranges a sequential read fetches ahead (the fetch threads, and so
    // the GETs in flight for read-ahead; below read_ahead_slots).
    size_t read_ahead = 4u << 20;
    size_t read_ahead_slots = 8;
    size_t read_ahead_depth = 3;
    // Back-off between retries of a failed upload or delete.
    double retry_first_s = 0.5, retry_max_s = 30;
    // A Put over the cache limit waits this long for uploads to make room
    // (while they succeed) before it answers ENOSPC.
    double full_wait_s = 30;
    // An open pack whose oldest not-uploaded byte is this old is sealed
    // early (at the next Sync, or while the store is idle) and uploaded, so
    // that a trickle of writes, or the last writes before a quiet spell,
    // reach the bucket within about this long, not only once 32 MiB are
    // written. Smaller packs are the price (at most one per this interval).
    double seal_after_s = 10;
    // A quiet seal (above) once no Put came for this long (0: none).
    double quiet_seal_s = 1;
    // Delete, at Open, the objects the manifest does not name (uploads cut
    // short, voided ones). Off for restore-from's first open: its manifest
    // is built from what the bucket shows, and it must change nothing.
    bool sweep = true;
    // restore-from's first open: the bucket's owner token (below) may be
    // another instance's; the rebuild takes the bucket over once it is done
    // (TakeOver).
    bool taking_over = false;
  };
  // A writer (to be Opened) on `bucket` with its cache in `cache_dir`.
  BucketPackStore(std::shared_ptr<s3::ObjectStore> bucket, std::string cache_dir, Options options);
  ~BucketPackStore() override;
  BucketPackStore(const BucketPackStore&) = delete;
  BucketPackStore& operator=(const BucketPackStore&) = delete;

  Status Open(const std::string& owner, const std::map<uint64_t, uint64_t>& committed) override;
  Result<PutResult> Put(std::string_view data, const unsigned char (&hash)[32]) override;
  ChunkLocation PlaceOf(size_t length) const override {
    return cache_ ? cache_->PlaceOf(length) : ChunkLocation{};
  }
  Status Sync() override;
  void Idle() override;
  ContainerMark mark() const override;
  Status RollBackTo(const ContainerMark& mark) override;
  Status Punch(ChunkLocation at, uint64_t length) override;
  Status WaitIdle() override;
  std::vector<uint64_t> Containers() override;
  Status Records(uint64_t container, uint64_t size, std::vector<ChunkRecord>& out) override;
  Status Remove(uint64_t container) override;
  void ForgetCached() override;
  Result<std::unique_ptr<ChunkStore>> NewReader() override;
  std::string Location() const override { return bucket_->Location(); }
  // chunks, bucket (Describe), not-uploaded-bytes (sealed pending + the
  // open pack), not-uploaded-packs, uploaded-packs, uploaded-bytes,
  // cached-bytes, cache-limit, upload-failures, last-error.
  std::vector<std::pair<std::string, std::string>> StatusFields() const override;

  // Index objects and the catalog (store/bucket_index.h) are sealed under
  // `key` (before Open).
  void SetMasterKey(std::shared_ptr<const crypto::MasterKey> key) override;
  // Uploads `text` as the catalog once the packs written so far are.
  void PublishCatalog(std::string text) override;
  // A manifest for a new cache directory `dir` of store `owner` (made if
  // missing; EEXIST if it has a manifest) naming these packs as uploaded:
  // restore-from's.
  struct ManifestEntry {
    uint64_t container;
    std::string name;
    uint64_t size;
  };
  static Status WriteManifest(const std::string& dir, const std::string& owner,
                              const std::vector<ManifestEntry>& entries);
  // The bucket's "owner" object is "<store id> <token>": the token names the
  // instance of the store that uses the bucket (kept in DIR/bucket-owner).
  // An instance whose token is not the bucket's was taken over (by
  // restore-from on another host) and refuses to open (EEXIST), so that an
  // old server brought back cannot delete what the new one uploads.
  // TakeOver writes a new token for `owner` to the bucket and `dir`.
  static Status TakeOver(s3::ObjectStore& bucket, const std::string& dir, const std::string& owner);
  // Waits up to `seconds` until every queued upload and delete is done;
  // ETIMEDOUT (with what is left) otherwise.
  Status Drain(double seconds);
  BucketStats stats() const;
  const std::string& cache_dir() const { return dir_; }

 private:
  struct Shared;
  BucketPackStore(std::shared_ptr<Shared> shared, std::shared_ptr<s3::ObjectStore> bucket,
                  std::string cache_dir, Options options);
  Status ReadRaw(uint64_t id, uint64_t offset, size_t len, char* out) override;
  // The cache file of `id` for reading (a descriptor of this instance's), or
  // -1 when it is not in the cache.
  int LocalFd(uint64_t id);
  void CloseFds();
  // Evicts uploaded packs, least recently read first, while the cache holds
  // more than the limit.
  void Evict();
  void UploaderMain();
  // The index object of uploaded pack `id` (`size` bytes, object `name`)
  // from its bytes `body`, or (WriteIndexOf) read from the cache or bucket.
  Status PutIndex(uint64_t id, uint64_t size, const std::string& name, std::string_view body);
  Status WriteIndexOf(uint64_t id, uint64_t size, const std::string& name);
  // Seals the open pack and queues its upload if its oldest not-uploaded
  // byte is older than seal_after_s (its bytes are synced). True if sealed.
  bool MaybeSealEarly();
  // The quiet seal (above), at Idle.
  void MaybeSealQuiet();
  void SealOpen();
  // Bytes [offset, +len) of uploaded object `key` (`size` bytes, pack
  // `id`) through the shared range buffers (Reads, above).
  Status ReadBucket(uint64_t id, const std::string& key, uint64_t size, uint64_t offset, size_t len, char* out);

  std::shared_ptr<Shared> shared_;
  std::shared_ptr<s3::ObjectStore> bucket_;
  std::string dir_;
  Options options_;
  bool read_only_ = false;
  std::unique_ptr<LocalPackStore> cache_;  // the writer's packs (null on a reader)
  uint64_t evict_seen_ = 0;  // the evictions this reader has dropped descriptors for
  std::map<uint64_t, int> fds_;            // read descriptors of cache files
  std::thread uploader_;
  // The uploader's buffer for the pack it uploads: grown to the largest
  // pack, reused, never zero-filled (the uploader's alone).
  std::unique_ptr<char[]> upload_buf_;
  size_t upload_cap_ = 0;
  // The writer's open pack: when its first not-uploaded byte was put, and
  // the id of an open pack already sealed early (and queued) whose seal
  // the next Put's result reports again.
  bool open_dirty_ = false;
  std::chrono::steady_clock::time_point open_since_;
  uint64_t sealed_early_ = 0;
  // The last Put, and the last early seal (none yet: the epoch).
  std::chrono::steady_clock::time_point last_put_, last_early_seal_;
  // The open pack at the last Sync (or Open, or roll-back): what a failed
  // commit rolls back to and appends to again, so never evicted.
  uint64_t floor_ = 0;
};

}  // namespace muscle::store
