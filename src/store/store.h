// The content-addressed file tree: one SQLite database holding inodes,
// directory entries, extents, chunks and xattrs (schema: the CREATE TABLE
// statements at the top of schema.cc, and man/musclefs-store.5).
//
// File data is cut into content-defined chunks (chunker.h) named by their
// SHA-256 and stored once with a reference count; an extent maps a file
// range to a chunk. The chunks' bytes live in a ChunkStore
// (store/chunk_store.h: the pack directory, store/pack.h, unless the store
// is opened on another); the store talks to it only through that
// interface, and only one path (AppendChunk) puts bytes into it. Writes are buffered per file in memory and turned into
// chunks on Sync, FlushFile, a size threshold or Tick; metadata changes go
// into one open SQLite transaction that Sync and Tick commit, so a crash
// loses at most the last Tick interval of un-synced work and never leaves a
// half-applied operation (each operation runs inside a savepoint).
//
// Failure atomicity: a failed operation leaves memory and disk agreeing.
// An operation that fails inside its savepoint is undone in SQLite and in
// memory (write buffers it flushed are put back). A failed commit (or an
// I/O error that makes SQLite abandon the transaction) rolls back the work
// since the last commit exactly as a crash would: buffers are dropped,
// inodes created since then are gone and their numbers are never handed
// out again (fids still naming them get ESTALE). Tfsync's commit reports
// its failure, so nothing acknowledged as durable is lost.
//
// Disk full: the store keeps a reserve file next to the database. When a
// database write fails for lack of space the reserve is released and the
// write retried, so the commit that deletes files still completes; from
// then on (low-space mode) operations that add data answer ENOSPC before
// anything is acknowledged, until Tick finds room again (free space in the
// file system plus pages the database freed). Writes are also refused
// before they are buffered when that room runs short.
//
// Threading: a Store is not thread-safe. The server owns exactly one
// writer and calls it only from its store worker thread
// (server/store_worker.h). Reader stores (OpenReader) are further SQLite
// connections to the same file that only read: each is used by one thread
// of the reader pool (server/reader_pool.h), sees the last commit, and
// learns from the writer's ReadGate (store/read_gate.h) whether what it
// read is current.
#pragma once

#include <array>
#include <chrono>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "auth/access_rule.h"
#include "common/file_lock.h"
#include "common/progress.h"
#include "common/result.h"
#include "store/bucket_index.h"
#include "store/bucket_pack_store.h"
#include "store/chunk_naming.h"
#include "store/chunk_store.h"
#include "store/precut.h"
#include "store/read_gate.h"
#include "store/redo_log.h"
#include "store/sqlite.h"
#include "store/tree.h"
#include "store/tree_object.h"

namespace muscle::store {

// The store format this musclefs writes (meta.schema); older ones are
// migrated at open.
constexpr int kStoreFormat = 4;
constexpr uint64_t kRootIno = 1;
constexpr size_t kMaxNameLen = 255;
constexpr size_t kMaxXattrValue = 65536;

struct CheckReport {
  uint64_t chunks = 0, chunk_bytes = 0, inodes = 0, extents = 0;
  uint64_t packs = 0, pack_bytes = 0, unreferenced_bytes = 0;
  uint64_t objects = 0, snapshots = 0;  // tree objects (among the chunks)
  std::vector<std::string> problems;
  bool ok() const { return problems.empty(); }
};

using Hash = std::array<uint8_t, 32>;
std::string HexOf(const Hash& h);

class Store final : public Tree {
 public:
  // Opens or creates the store at `path` (":memory:" for an ephemeral one).
  // Chunk data goes to `chunks` (not yet opened; the store opens it and
  // owns it) or, when null, to the pack directory next to the database (a
  // temporary one for ":memory:").
  //
  // Encryption at rest (store/sealed_chunk_store.h, man/musclefs-store.5):
  // a store made with `key` (a new store: no tables yet) records the key's
  // id (meta 'key_id') and is encrypted for good: every record sealed,
  // chunks cut and named under keys derived from it (store/chunk_naming.h).
  // Opening an encrypted store without its key, or with another key, is
  // EACCES; a key for a store made without one is EINVAL (encryption is
  // chosen when a store is made).
  // Migrating a format 1 store (its chunk data moved into packs) is
  // reported to `progress` when given (see `progress` below; it is not
  // kept once Open returns).
  static Result<std::unique_ptr<Store>> Open(const std::string& path,
                                             std::unique_ptr<ChunkStore> chunks = nullptr,
                                             std::shared_ptr<const crypto::MasterKey> key = nullptr,
                                             ProgressSink* progress = nullptr);
  // Rebuilding a store from its bucket (rebuild.cc, musclefs restore-from):
  // a new store at `path` (EEXIST if one is there) whose packs are the
  // bucket's (its index objects), whose snapshots are the catalog's and
  // whose live tree is the newest snapshot's. The cache directory gets a
  // manifest naming every pack as uploaded. The bucket's store id becomes
  // this store's: the old store must not run on that bucket any more.
  // Reading the bucket's index objects (one per pack) is reported to
  // `progress` when given (see `progress` below).
  struct RebuildReport {
    uint64_t packs = 0, bytes = 0, snapshots = 0;
    double seconds = 0;
  };
  static Result<std::unique_ptr<Store>> RebuildFromBucket(
      const std::string& path, std::shared_ptr<s3::ObjectStore> bucket, const std::string& cache_dir,
      BucketPackStore::Options options, std::shared_ptr<const crypto::MasterKey> key,
      RebuildReport* report = nullptr, ProgressSink* progress = nullptr);
  // Converts a plain store whose chunks are local pack files to an
  // encrypted one under `key`, in place (convert.cc, musclefs upgrade
  // --encrypt): every chunk sealed and renamed, every tree object
  // re-encoded, the old packs removed. On failure the store must be closed
  // (it reopens plain, as before). EEXIST if encrypted already, EINVAL for
  // chunks in a bucket.
  Status ConvertToEncrypted(std::shared_ptr<const crypto::MasterKey> key);
  // Whether the store is encrypted (made with a key).
  bool encrypted() const { return naming_->keyed(); }
  // Key rotation (crypto/keyring.h; `musclefs key rotate`, server/main.cc).
  // The key an encrypted store is opened with must be its current key, or
  // the pending one: BeginKeyRotation records `next` as pending (meta
  // 'keyring_next': the keyring with `next` as its newest generation,
  // sealed under it) and changes nothing else, so the store still opens
  // with its current key, and now with `next` too. Opening it with the
  // pending key completes the rotation, in Open's first transaction: the
  // new generation starts past the highest committed container, the
  // keyring sealed under it replaces the old (meta 'keyring', 'key_id'),
  // the old key id joins meta 'old_key_ids', and the next write starts a
  // new container. From then on the older keys open nothing (EACCES, the
  // message says the key was rotated away). So the key files can be
  // replaced between the two steps, and a crash anywhere leaves a store
  // that opens with whichever key file exists. A second BeginKeyRotation
  // replaces the pending key. ENOTSUP for a store whose chunks are in a
  // bucket (not yet: restore-from reads one key), EINVAL for a plain one.
  Status BeginKeyRotation(const crypto::MasterKey& next);
  // The keyring (null for a plain store).
  std::shared_ptr<const crypto::Keyring> keyring() const { return keyring_; }
  // Packs per key generation (of the committed index), for `musclefs key
  // list` and the tests.
  Result<std::map<uint32_t, uint64_t>> PacksPerGeneration();
  // A read-only connection to the store a writer (Open) has open at
  // `path`; only the reading methods (GetAttr, Lookup, Parent, ReadDir,
  // GetStatFs, Read, ReadLink, GetXattr, ListXattr) may be called. Not for
  // ":memory:". The writer must outlive it; `gate` is the writer's.
  // `chunks` is a read-only chunk store on the writer's chunk data (the
  // writer's NewChunkReader); null reads the pack directory next to `path`.
  static Result<std::unique_ptr<Store>> OpenReader(const std::string& path,
                                                   std::shared_ptr<ReadGate> gate,
                                                   std::unique_ptr<ChunkStore> chunks = nullptr);
  // A read-only instance of this writer's chunk store, for OpenReader.
  Result<std::unique_ptr<ChunkStore>> NewChunkReader() { return chunks_->NewReader(); }
  // The chunk store's state (ChunkStore::StatusFields), for `muscle status`.
  std::vector<std::pair<std::string, std::string>> ChunkStatus() const {
    return chunks_->StatusFields();
  }
  // On a reader, between requests: drops cached descriptors (and data) of
  // packs the writer has removed since, so that their space is freed.
  void ReaderTick();
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // --- the tree (tree.h: what each operation means) ---
  // The live tree's attach: the directory at `aname` below the root.
  Result<Attr> Attach(std::string_view aname, const auth::AccessRule* rule) override;
  Result<Attr> GetAttr(uint64_t ino) override;
  Result<Attr> Lookup(uint64_t dir, std::string_view name) override;
  // The parent of a directory (the root is its own parent).
  Result<uint64_t> Parent(uint64_t dir);
  Result<Attr> Create(uint64_t dir, std::string_view name, uint32_t mode,
                      uint32_t uid, uint32_t gid, uint64_t rdev = 0,
                      std::string_view symlink_target = {}) override;
  Result<Attr> Link(uint64_t dir, std::string_view name, uint64_t ino) override;
  Status Unlink(uint64_t dir, std::string_view name, bool remove_dir) override;
  Status Rename(uint64_t old_dir, std::string_view old_name, uint64_t new_dir,
                std::string_view new_name) override;
  Result<Attr> SetAttr(uint64_t ino, const SetAttrRequest& req) override;
  Result<std::string> ReadLink(uint64_t ino) override;
  Result<std::pair<uint64_t, std::string>> FindName(uint64_t ino) override;
  Result<uint64_t> OrphanDir(uint64_t ino) override;
  using Tree::ReadDir;
  Status ReadDir(uint64_t dir, uint64_t cookie,
                 const std::function<bool(const DirEntry&)>& emit) override;
  Result<StatFs> GetStatFs() override;

  // --- data ---
  Status Read(uint64_t ino, uint64_t offset, uint32_t count, std::string& out) override;
  Result<uint32_t> Write(uint64_t ino, uint64_t offset, std::string_view data) override;
  // A write already acknowledged to the client (server/write_ahead.h):
  // taken into the write buffer even when space is short (the check still
  // runs and may start low-space mode), and room is made after the data
  // is buffered, not before. An error is that of the flush making room
  // (the data stays buffered) or of the file itself (a rolled-back inode:
  // ESTALE; then the data is gone with it, as in a crash).
  // `ahead_id`: the id under which the event loop logged it
  // (RedoLog::AppendAhead); 0 when it could not, then it is logged here.
  Status WriteAcknowledged(uint64_t ino, uint64_t offset, std::string_view data,
                           uint64_t ahead_id = 0);
  // Whether `size` bytes at `offset` are within the largest file (else
  // Write answers EFBIG).
  static bool Fits(uint64_t offset, size_t size);
  Status MayChange(uint64_t) override { return Status::Ok(); }

  // --- xattrs ---
  Result<std::string> GetXattr(uint64_t ino, std::string_view name) override;
  Result<std::string> ListXattr(uint64_t ino) override;
  Status SetXattr(uint64_t ino, std::string_view name, std::string_view value,
                  uint32_t flags) override;
  Status RemoveXattr(uint64_t ino, std::string_view name) override;

  // --- lifetime of open files ---
  // A reference held by a client (a fid). An inode whose link count falls to
  // zero lives until its last reference is dropped. The references live in
  // the gate, where readers take and drop them too (writer only).
  void Ref(uint64_t ino) override;
  Status Unref(uint64_t ino) override;

  // What readers may serve (writer only; null on a reader or in memory).
  std::shared_ptr<ReadGate> gate() const { return memory_ || read_only_ ? nullptr : gate_; }
  // The redo log (redo_log.h), where writes answered ahead of the store are
  // logged (null in memory, on a reader, before Open ends).
  std::shared_ptr<RedoLog> redo() const { return redo_; }
  // Operations replayed from the redo log by the last Open, and how many
  // of them failed (logged).
  uint64_t replayed() const { return replayed_; }

  // --- durability ---
  // Turns buffered writes of one file into chunks (inside the transaction).
  Status FlushFile(uint64_t ino);
  // Flushes every buffered write and commits; the commit is synced to disk
  // (WAL with synchronous=FULL) before this returns. `durable` documents
  // the caller's intent (Tfsync); every commit is durable.
  Status Sync(bool durable) override;
  // For the worker, when no request is waiting: flushes the front of a
  // write buffer whose chunks the helper already cut (precut.h), up to its
  // last cut, so that a stream's flushes fill the gaps between its writes
  // instead of stalling one of them at the buffer limit. True when it did.
  bool FlushAhead();
  // Called periodically: commits if work has waited longer than the commit
  // interval, and flushes files if buffers are large.
  Status Tick();
  // Frees the files held since Open (orphan_hold) that nobody references.
  Status ReleaseOrphans();
  // The server is stopping: from now on a file without names stays in the
  // store when its last reference goes (the clients' fids are being
  // closed, and they may come back for it after the restart; the next
  // Open holds it for orphan_hold, then frees it).
  void KeepOrphans() { keep_orphans_ = true; }
  // --- operation ids (op_results.cc; Tonce, musclefs(8) PROTOCOL) ---
  // Tree::Once on the op_results table: the lookup, run's changes and the
  // row recording its reply all go into the open transaction, so the
  // commit that keeps the changes keeps the row, and a crash before it
  // loses both (the resent request runs again). When run's failure cost
  // the transaction, its changes are gone and nothing is recorded; when
  // the row cannot be added, the transaction is given up as after a
  // failed commit (the changes must not stay without it).
  Result<std::string> Once(std::string_view identity, uint64_t op,
                           const std::function<std::string()>& run, bool* ran) override;
  // A reply is kept at least kOpRetention (by the wall clock, which goes
  // on across restarts), as a client resends what a restart left
  // unanswered within seconds to minutes, and nothing is pruned in the
  // first kOpRetention after the store opens (however long it was down);
  // and each identity keeps at most
  // kOpsPerIdentity (its oldest go first: its requests still in flight are
  // its newest). Tick prunes at most every op_prune_interval, and only
  // while a transaction is open, so an idle store never commits for it.
  static constexpr std::chrono::minutes kOpRetention{10};
  static constexpr int64_t kOpsPerIdentity = 65536;

  // While space is short (low_space()), commits at once when the open
  // transaction frees chunks, so that a delete gives its space back now,
  // not at the end of the commit interval (at most every 50 ms, and not
  // again for the same deletes after it failed). Called after each
  // request and at Tick.
  Status CommitIfFreeing();

  // --- space ---
  // Compacts packs whose live fraction fell below half (all packs with any
  // dead record when `all`): live chunks are copied into the open pack, the
  // index switches in one transaction, then the old pack is deleted; and
  // dead records still taking space get their holes punched. Tick runs it
  // in the background (one pack at a time); musclefs gc runs it with all.
  struct GcReport {
    uint64_t packs_removed = 0, bytes_copied = 0, bytes_freed = 0;
  };
  Result<GcReport> CollectGarbage(bool all);
  // Key rotation, continued (`musclefs key rewrite`, `key retire`): copies
  // every live chunk of a pack sealed under an older key generation into
  // new packs (the current generation's) and removes the old packs, as gc
  // compaction does; the highest pack stays if it holds no live chunk (a
  // pack number never goes back: crypto/keyring.h), its dead records
  // punched. Then RetireKey drops generation `number`'s key from the
  // keyring (committed before it returns); EBUSY while a live chunk is
  // still sealed under it, EINVAL for the current generation.
  Result<GcReport> RewriteOldKeys();
  Status RetireKey(uint32_t number);

  // --- verification ---
  // Full check: SQLite integrity, every chunk re-hashed, reference counts,
  // extents, link counts and directory structure.
  CheckReport Check();
  // Merkle hash of the tree under `ino` (a directory's hash covers its
  // sorted entries and their hashes; a file's its metadata and chunk list).
  Result<Hash> TreeHash(uint64_t ino = kRootIno);

  // --- snapshots (snapshots.cc: catalog and prune; snapshot_objects.cc:
  // tree objects; snapshot_history.cc: diff, history, restore; format in
  // man/musclefs-store.5) ---
  // A snapshot freezes the live tree into tree objects (tree_object.h)
  // stored as chunks; every inode caches its current object (inodes.obj,
  // one reference), a change to an inode drops the cache of it and of every
  // directory above it (at the next commit), so a snapshot builds objects
  // only for what changed since the last one and shares the rest.
  // References: an extent holds one on its chunk, an object one on each
  // child it names, an inode cache one on its object, a snapshot one on
  // its root object; a chunk whose count falls to zero is deleted, and a
  // dead object drops its children's references in turn.
  struct SnapshotInfo {
    int64_t id = 0;
    std::string name;
    int64_t created_ns = 0;
    ObjectHash root{};         // the root directory's object
    uint64_t added_bytes = 0;  // chunks and objects new since the previous snapshot
    Attr root_attr;            // the root directory's metadata
  };
  // Names the snapshot after its time (UTC, e.g. 2026-11-24T10:15:00Z)
  // when `name` is empty. Commits (durably) before it returns.
  Result<SnapshotInfo> TakeSnapshot(std::string_view name = {});
  Result<std::vector<SnapshotInfo>> ListSnapshots();  // oldest first
  // By name, else by root hash or a unique prefix of it (4+ hex digits).
  // With `confine` (a confined identity's root, relative), a hash names
  // first the snapshot whose `confine` directory has it (the hash that
  // identity is shown), then as without.
  Result<SnapshotInfo> FindSnapshot(std::string_view ref, std::string_view confine = {});
  // restic's forget policy; a snapshot kept by any rule stays. Returns the
  // snapshots removed (or that would be, with dry_run).
  struct PrunePolicy {
    int keep_last = 0, keep_hourly = 0, keep_daily = 0, keep_weekly = 0;
    bool dry_run = false;
  };
  Result<std::vector<SnapshotInfo>> Prune(const PrunePolicy& policy);
  // Added ('+'), removed ('-') and modified ('M') paths below `path`
  // between snapshot `a` and `b` ("" for b: the live tree now). Unchanged
  // subtrees (equal hashes) are skipped without being read.
  struct Change {
    char what;
    std::string path;  // relative to `path`; directories end in '/'
  };
  Result<std::vector<Change>> Diff(std::string_view a, std::string_view b, std::string_view path);
  // The snapshots in which `path` changed, newest first: its entry there
  // (absent when it was removed).
  struct PathVersion {
    SnapshotInfo snapshot;
    bool present = false;
    TreeEntry entry;
  };
  Result<std::vector<PathVersion>> History(std::string_view path);
  // Brings `path` of snapshot `snap` back into the live tree at `dest`
  // (default: the same path), sharing its chunks (no data is copied). A
  // regular file or symlink at dest is replaced; a directory must not exist.
  Result<Attr> Restore(std::string_view snap, std::string_view path, std::string_view dest);
  // The object named by `hash` (decoded, cached); ENOENT when no chunk of
  // that hash exists.
  Result<std::shared_ptr<const TreeObject>> LoadObject(const ObjectHash& hash);
  // The entry at `path` (slash-separated, relative) below a directory object.
  Result<TreeEntry> ResolveIn(const ObjectHash& dir, const Attr& dir_attr, std::string_view path);

  // `len` bytes at `offset` of the chunk named `hash` (file data or an
  // object) into `out`; ESTALE when no chunk of that hash exists (a
  // snapshot's, pruned meanwhile).
  Status ReadChunkOf(const ObjectHash& hash, uint64_t offset, size_t len, char* out);

  // For `muscle status` and the metrics (usage.cc; writer only). Usage
  // scans the extents and chunks tables (so is measured now and then, not
  // per request); Pending reads what is in memory.
  struct UsageFigures {
    uint64_t logical_bytes = 0;  // file data the live tree names (sum of extents)
    uint64_t stored_bytes = 0, chunks = 0;  // distinct chunks, data and objects
    uint64_t packs = 0, pack_bytes = 0, pack_live_bytes = 0;
    uint64_t snapshots = 0;
  };
  Result<UsageFigures> Usage();
  struct PendingFigures {
    double uncommitted_seconds = 0;  // age of the open transaction (0: none)
    uint64_t dirty_files = 0, buffered_bytes = 0;
    bool low_space = false;
  };
  PendingFigures Pending() const;

  // True while space is short (see "Disk full" above).
  bool low_space() const { return low_space_; }
  // How many times uncommitted work was rolled back by a failure.
  uint64_t rollbacks() const { return rollbacks_; }

  // SQLite's page cache for this connection (tests shrink it so that
  // statements spill to disk mid-transaction).
  Status SetCacheSize(int64_t kib);

  // Test seam for failures that are not I/O: when set, called at named
  // points of the data path ("put-chunk"); an error it returns is that
  // step's result. "committed": after a commit, before the redo log starts
  // again (its result is ignored; a test kills the process there).
  std::function<Status(const char* point)> fault_point;

  // Where Check, CollectGarbage, ConvertToEncrypted (and Open's migration) report their
  // progress (common/progress.h), phase by phase, with totals taken from
  // the index before each phase; null (the default, and in the server):
  // not reported. Not owned: the caller keeps it alive while it is set.
  // Called on the thread running the operation.
  ProgressSink* progress = nullptr;

  // Tunables (tests shrink them).
  std::chrono::milliseconds commit_interval{1000};
  // Commit before the redo log grows past this many bytes.
  uint64_t redo_limit = 256u << 20;
  // Size of the disk-full reserve (capped at 1/32 of the file system).
  uint64_t reserve_limit = 32u << 20;
  // How often Tick looks for space to leave low-space mode.
  std::chrono::milliseconds space_check_interval{500};
  // Least time between background compactions.
  std::chrono::milliseconds gc_interval{10000};
  // Tick takes a snapshot when the last one is this old (0: never).
  std::chrono::seconds snapshot_every{0};
  std::chrono::milliseconds op_retention{kOpRetention};
  int64_t ops_per_identity = kOpsPerIdentity;
  std::chrono::milliseconds op_prune_interval{60000};
  // Files found unlinked but open at Open (the last server stopped while a
  // client had them open) are kept this long after it, for clients that
  // reconnect and rebind them (the session lease); then Tick frees those
  // nobody opened again.
  std::chrono::milliseconds orphan_hold{0};
  // How many inode numbers one reservation covers (STORE-inos); tests make
  // it small. Set before any store is opened.
  static inline uint64_t ino_reservation = uint64_t(1) << 20;
  size_t file_buffer_limit = 8u << 20;   // per file, then flush it
  size_t total_buffer_limit = 64u << 20;  // all files, then flush the largest

 private:
  Store();
  struct Statements;
  struct DirtyFile {
    std::map<uint64_t, std::string> ranges;  // disjoint, non-adjacent
    size_t bytes = 0;
  };
  struct ExtentRow {
    uint64_t offset;
    uint64_t length;
    int64_t chunk;
    // From a row of (offset, length, chunk).
    static ExtentRow From(const Stmt& q) {
      return {uint64_t(q.Int(0)), uint64_t(q.Int(1)), q.Int(2)};
    }
  };

  // Opening (store.cc).
  Status Init(const std::string& path, std::unique_ptr<ChunkStore> chunks,
              std::shared_ptr<const crypto::MasterKey> key);
  Status InitReader(const std::string& path, std::shared_ptr<ReadGate> gate,
                    std::unique_ptr<ChunkStore> chunks);
  std::string PackDir() const;
  // Opens chunks_ against the index's committed container lengths.
  Status OpenChunks();
  // Refuses a chunk store elsewhere than where meta.chunks says; records it
  // the first time.
  Status CheckChunksLocation(bool has_packs);
  Result<std::string> StoreId();
  // Checks key_ against meta.key_id (recording it for a new store), loads
  // the keyring (meta 'keyring'; made from key_ for a store from before
  // keyrings, or a new one; a pending rotation completed when key_ is the
  // pending key: BeginKeyRotation) and, for an encrypted store, puts the
  // sealing layer in front of chunks_ and cuts and names chunks under the
  // keyring's naming keys. Before chunks_ is opened; `highest` is the
  // highest committed container (0: none).
  Status SetUpEncryption(bool new_store, const std::string& store_id, uint64_t highest);
  // Rebuilding (rebuild.cc): what the bucket holds, the index rows it
  // gives (in Init's first transaction), the tree after Init.
  struct RebuildSource {
    std::string store_id;
    std::vector<PackIndex> packs;
    std::vector<CatalogEntry> catalog;
  };
  static Result<std::unique_ptr<Store>> Rebuild(const std::string& path, std::unique_ptr<ChunkStore> chunks,
                                                std::shared_ptr<const crypto::MasterKey> key,
                                                const RebuildSource& source);
  Status LoadRebuildIndex();
  Status RebuildTree();
  // Hands the snapshot catalog to the chunk store (a bucket uploads it).
  Status PublishCatalog();
  // Schema and migrations (schema.cc): creates the tables of a new store
  // or migrates an older one; `version` is the format found (0: new).
  Status CreateOrMigrateSchema(int64_t& version);
  Status MigrateV1();
  // The one way chunk bytes enter the chunk store: appends the record and,
  // when that started a new container, records it (and the final length of
  // the one it sealed) in the index. The caller inserts the chunk's row.
  Result<ChunkLocation> AppendChunk(std::string_view data, const unsigned char (&hash)[32]);
  // Data before index: syncs the chunk store and records the open
  // container's length, in the open transaction, when it changed since
  // the last commit.
  Status SyncChunks();
  // Transactions and undo (transaction.cc). SQLite's rollback, update and
  // commit hooks, set once by Init.
  void InstallHooks();
  Status Begin();
  // The only way anything commits (see the commit hook in InstallHooks).
  Status Commit(const char* sql);
  // After a failed statement or commit: if SQLite abandoned the whole
  // transaction, forget every uncommitted change in memory too.
  void AfterFailure(const Status& why);
  void Settle() { AfterFailure(Status(EIO, "SQLite abandoned the transaction after an error")); }
  // Every public operation holds one: on entering and on leaving the
  // outermost operation, a transaction SQLite abandoned (an I/O error in
  // any statement, seen through the rollback hook) is forgotten in memory
  // too, before anything reads the write buffers again.
  struct OpScope {
    explicit OpScope(Store* st) : s(st) {
      if (s->op_depth_++ == 0) s->Settle();
    }
    ~OpScope() {
      if (--s->op_depth_ == 0) {
        s->Settle();
        s->FlushRedo();
      }
    }
    Store* s;
  };
  void ForgetUncommitted(const Status& why);
  // The redo log (redo.cc). Each public operation that changes the tree
  // adds its records to redo_batch_ when it succeeds; the end of the
  // outermost operation appends them as one group (FlushRedo), before the
  // reply. Where that fails, the transaction is committed instead.
  bool Recording() const { return redo_ && !replaying_ && redo_quiet_ == 0; }
  void FlushRedo();
  // Replays STORE-redo on top of the last commit (Init), then commits.
  Status Replay();
  Status ReplayGroup(std::string_view payload);
  // Holds the files without names (after Replay), frees such directories.
  Status HoldOrphans();
  // The records, one per kind of change (redo.cc reads them back).
  void RedoCreate(uint64_t dir, std::string_view name, const Attr& a, std::string_view target);
  void RedoLink(uint64_t dir, std::string_view name, uint64_t ino, int64_t now);
  void RedoUnlink(uint64_t dir, std::string_view name, bool remove_dir);
  void RedoRename(uint64_t old_dir, std::string_view old_name, uint64_t new_dir,
                  std::string_view new_name);
  void RedoSetAttr(uint64_t ino, const SetAttrRequest& req, int64_t now);
  void RedoWrite(uint64_t ino, uint64_t offset, std::string_view data, int64_t now);
  void RedoSetXattr(uint64_t ino, std::string_view name, std::string_view value, uint32_t flags);
  void RedoRemoveXattr(uint64_t ino, std::string_view name);
  void RedoOpResult(std::string_view identity, uint64_t op, std::string_view reply, int64_t now);
  // Write buffers set aside by FlushFile/PurgeInode inside a savepoint, put
  // back if it rolls back.
  void SetAside(uint64_t ino, DirtyFile&& f);
  // What a savepoint's rollback must undo outside SQLite.
  struct UndoMark {
    size_t set_aside, punches;
    ContainerMark chunks;
  };
  UndoMark MarkUndo() const { return {set_aside_.size(), punches_.size(), chunks_->mark()}; }
  void UndoTo(const UndoMark& mark);
  void DropSetAside();
  Result<uint64_t> AllocateIno();
  Status ReserveInos();
  // The reserve file: created when there is room, released on a full disk.
  void EnsureReserve();
  bool ReleaseReserve();
  // ENOSPC when an operation that adds data should not be accepted now.
  Status CheckSpace(size_t adding);
  // Free bytes for the database: the file system's plus its free pages.
  uint64_t Room();
  // In low-space mode, at most every space_check_interval: leaves it when
  // there is room again (Tick).
  void RecheckSpace();
  template <class F>
  auto Atomically(F&& f) -> decltype(f());

  Result<Attr> LoadAttr(uint64_t ino);
  Status StoreAttr(const Attr& a);
  Result<std::pair<int64_t, uint64_t>> LookupEntry(uint64_t dir,
                                                   std::string_view name);
  Status TouchDir(uint64_t dir, int nlink_delta);
  Status DropLink(uint64_t ino, bool is_dir, uint64_t from_dir);
  Status PurgeIfUnused(uint64_t ino);
  Status PurgeInode(uint64_t ino);
  Status CheckName(std::string_view name);
  Status CheckEmptyDir(uint64_t dir);

  // Snapshots (snapshot_objects.cc, snapshots.cc, snapshot_history.cc).
  Status ApplyInvalidations();
  Result<std::pair<int64_t, ObjectHash>> Freeze(uint64_t ino);
  Result<std::pair<int64_t, ObjectHash>> PutObject(const TreeObject& o,
                                                   const std::vector<int64_t>& child_ids);
  Result<std::pair<int64_t, ObjectHash>> FileObject(uint64_t ino, const Attr& a);
  Status RefChildren(const std::vector<int64_t>& ids);
  Result<int64_t> ChunkIdOf(const ObjectHash& h);
  Status DropCachedObject(uint64_t ino);
  Result<Attr> RestoreEntry(uint64_t dir, const std::string& name, const TreeEntry& e);
  struct SnapshotRow;
  // Changed inodes whose cached objects are dropped at the next commit.
  std::unordered_set<uint64_t> changed_;
  bool tracking_changes_ = true;
  bool objects_exist_ = false;  // some inode caches an object
  struct ObjectCache;
  std::unique_ptr<ObjectCache> object_cache_;
  Status CheckObjects(CheckReport& r, std::map<int64_t, int64_t>& refs);
  Result<std::pair<ChunkLocation, uint64_t>> FindChunk(const ObjectHash& hash);

  // Data path (file_data.cc).
  Status ReadLogical(uint64_t ino, uint64_t offset, size_t len, char* out);
  Status ReadStored(uint64_t ino, uint64_t offset, size_t len, char* out);
  // Where `len` bytes at `offset` of a chunk are, by the index, to be read
  // into `out`; ReadChunk reads them.
  Result<ChunkRead> ChunkRange(int64_t chunk, uint64_t offset, size_t len, char* out);
  Status ReadChunk(int64_t chunk, uint64_t offset, size_t len, char* out);
  // Write and WriteAcknowledged.
  Result<uint32_t> Take(uint64_t ino, uint64_t offset, std::string_view data, bool acknowledged,
                        bool logged_ahead = false);
  Status FlushRange(uint64_t ino, uint64_t lo, uint64_t hi, uint64_t size);
  Result<int64_t> PutChunk(std::string_view data);
  Result<int64_t> PutChunk(std::string_view data, const unsigned char (&hash)[32]);
  Status DropChunk(int64_t chunk);
  Status DeleteExtentsFrom(uint64_t ino, uint64_t from);
  Status TruncateData(uint64_t ino, uint64_t old_size, uint64_t new_size);
  Status FlushLargest();
  // Operation ids past their retention or their identity's cap (Tick).
  Status PruneOpResults();
  std::chrono::steady_clock::time_point last_op_prune_{};
  std::vector<uint64_t> orphans_;  // held since Open (orphan_hold)
  bool keep_orphans_ = false;      // KeepOrphans
  std::chrono::steady_clock::time_point opened_at_ = std::chrono::steady_clock::now();

  std::unique_ptr<FileLock> lock_;  // held while open (store.db-lock)
  Db db_;
  std::unique_ptr<Statements> st_;
  bool memory_ = false;
  bool read_only_ = false;  // a reader connection (OpenReader)
  // Dirty inodes, commits and fid references (see read_gate.h).
  std::shared_ptr<ReadGate> gate_ = std::make_shared<ReadGate>();
  uint64_t packs_removed_seen_ = 0;  // a reader's view of gate_->packs_removed()
  std::string path_;
  bool in_txn_ = false;
  std::chrono::steady_clock::time_point txn_started_;
  std::unordered_map<uint64_t, DirtyFile> dirty_;
  size_t dirty_bytes_ = 0;
  std::vector<std::pair<uint64_t, DirtyFile>> set_aside_;
  int savepoint_depth_ = 0;
  int op_depth_ = 0;
  bool txn_lost_ = false;  // set by SQLite's rollback hook
  bool committing_ = false;  // inside Commit(): the commit hook lets it through
  // Inode numbers are never handed out twice, even after a rollback or a
  // kill -9: meta.next_ino holds the next one as of the last commit, and
  // numbers are handed out only below ino_reserved_, which the file
  // STORE-inos records (written and synced before any number past the
  // last reservation is handed out: ReserveInos). Open starts above both.
  uint64_t next_ino_ = 0;
  uint64_t persisted_next_ino_ = 0;
  uint64_t ino_reserved_ = UINT64_MAX;  // no limit without the file (:memory:)
  uint64_t forced_ino_ = 0;  // Replay: the number the next Create gets
  // The redo log: meta.commit counts commits; the log names the one it
  // follows. redo_quiet_: inside an operation that commits before it
  // returns instead (Restore, Prune), whose inner operations log nothing.
  std::shared_ptr<RedoLog> redo_;
  RedoBatch redo_batch_;
  uint64_t commit_number_ = 0;
  bool replaying_ = false;
  bool redo_failing_ = false;  // FlushRedo: the last append failed (logged once)
  int redo_quiet_ = 0;
  uint64_t replayed_ = 0;
  int ino_fd_ = -1;                     // STORE-inos, open once reserved
  static Result<uint64_t> ReadInoReservation(const std::string& file);
  uint64_t rollbacks_ = 0;
  std::string reserve_path_;
  bool low_space_ = false;
  // CommitIfFreeing: when it last committed, and how many punches were
  // pending when it last failed (SIZE_MAX: it did not).
  std::chrono::steady_clock::time_point last_freeing_commit_{};
  size_t freeing_failed_at_ = SIZE_MAX;
  uint64_t avail_bytes_ = UINT64_MAX;  // free space at the last statvfs
  size_t written_since_statvfs_ = 0;
  std::chrono::steady_clock::time_point statvfs_at_;
  // Chunk data (format 2) and what the last commit recorded of it.
  std::unique_ptr<ChunkStore> chunks_;
  ContainerMark committed_;
  // Space of chunks deleted in the open transaction, freed after it commits.
  struct Punch {
    ChunkLocation at;
    uint64_t length;
  };
  std::vector<Punch> punches_;
  bool punch_failed_ = false;
  bool garbage_since_gc_ = false;
  std::chrono::steady_clock::time_point last_gc_;
  std::string flush_scratch_[2];  // FlushRange's block buffers, kept for reuse
  std::string spare_buffer_;      // a flushed write buffer, kept for reuse
  // Cuts and hashes appends ahead of their flush (file_data.cc); last, so
  // that its helper stops before the buffers it reads are freed.
  Precut precut_;
  // Encryption at rest: the master key (null for a plain store), and how
  // chunks are cut and named (keyed when encrypted).
  std::shared_ptr<const crypto::MasterKey> key_;
  std::shared_ptr<const crypto::Keyring> keyring_;
  // While RewriteOldKeys runs: packs below this are compacted whatever
  // their live share (0: none).
  uint64_t rewrite_below_ = 0;
  std::shared_ptr<const ChunkNaming> naming_ = ChunkNaming::Plain();
  bool new_store_ = false;  // Init made the tables
  const RebuildSource* rebuild_ = nullptr;  // during Rebuild
};

int64_t NowNs();
// Replay (redo.cc): NowNs returns `ns` on this thread while it is set
// (0: the clock again), so that replayed changes get their first times.
void FixClock(int64_t ns);
// The redo record of a write of `data` (not copied) at `offset` of `ino`:
// what an event loop logs for a write it answers before the store takes it
// (RedoLog::AppendAhead).
RedoBatch RedoWriteRecord(uint64_t ino, uint64_t offset, std::string_view data);
// A time (ns since the epoch) in UTC, by strftime's `format`; the default
// is how snapshots are named and listed (2026-11-24T10:15:00Z).
std::string UtcTime(int64_t ns, const char* format = "%Y-%m-%dT%H:%M:%SZ");

}  // namespace muscle::store
