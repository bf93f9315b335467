// The store's life and its transactions: schema and migrations, opening
// (writer and readers), the open transaction, savepoint undo, commits and
// rollbacks, Sync and Tick. The namespace lives in namespace.cc, disk
// space in space.cc, data chunks in file_data.cc, verification in
// check.cc, snapshots in snapshot_objects.cc, snapshots.cc and
// snapshot_history.cc.
#include "store/store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <map>

#include "common/file_lock.h"
#include "common/log.h"
#include "store/pack.h"
#include "store/snapshot_internal.h"
#include "store/statements.h"
#include "store/vfs.h"

namespace muscle::store {

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

namespace {

const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS inodes(
  ino INTEGER PRIMARY KEY, parent INTEGER NOT NULL, mode INTEGER NOT NULL,
  uid INTEGER NOT NULL, gid INTEGER NOT NULL, nlink INTEGER NOT NULL,
  rdev INTEGER NOT NULL, size INTEGER NOT NULL, atime INTEGER NOT NULL,
  mtime INTEGER NOT NULL, ctime INTEGER NOT NULL, btime INTEGER NOT NULL,
  version INTEGER NOT NULL, target BLOB, obj INTEGER);
CREATE TABLE IF NOT EXISTS dirents(
  id INTEGER PRIMARY KEY, parent INTEGER NOT NULL, name BLOB NOT NULL,
  ino INTEGER NOT NULL, UNIQUE(parent, name));
CREATE INDEX IF NOT EXISTS dirents_order ON dirents(parent, id);
CREATE INDEX IF NOT EXISTS dirents_by_ino ON dirents(ino);
CREATE TABLE IF NOT EXISTS extents(
  ino INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL,
  chunk INTEGER NOT NULL, PRIMARY KEY(ino, offset)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS xattrs(
  ino INTEGER NOT NULL, name BLOB NOT NULL, value BLOB NOT NULL,
  PRIMARY KEY(ino, name)) WITHOUT ROWID;
)sql";

// Format 3: snapshots (tree objects as chunks of kind 1, inodes.obj,
// the snapshots table); format 2 put chunk data in pack files
// (store/pack.h); format 1 kept it in chunks.data. Older formats are
// migrated at open.
constexpr int kSchemaVersion = kStoreFormat;
const char* kChunksV2 = R"sql(
CREATE TABLE chunks(
  id INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, size INTEGER NOT NULL,
  refs INTEGER NOT NULL, pack INTEGER NOT NULL, offset INTEGER NOT NULL,
  kind INTEGER NOT NULL DEFAULT 0);
CREATE INDEX chunks_by_pack ON chunks(pack, offset);
CREATE TABLE packs(id INTEGER PRIMARY KEY, size INTEGER NOT NULL);
)sql";
const char* kSnapshotsV3 = R"sql(
CREATE TABLE snapshots(
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created INTEGER NOT NULL,
  root INTEGER NOT NULL, last_chunk INTEGER NOT NULL, added INTEGER NOT NULL,
  mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,
  mtime INTEGER NOT NULL, ctime INTEGER NOT NULL, btime INTEGER NOT NULL);
)sql";
// Format 2 -> 3: the v2 schema had an unused snapshots table and an
// unused inodes.merkle column (kept: columns are not dropped in place).
const char* kMigrateV2 = R"sql(
ALTER TABLE inodes ADD COLUMN obj INTEGER;
ALTER TABLE chunks ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;
DROP TABLE IF EXISTS snapshots;
)sql";


}  // namespace

Store::Store() = default;

Store::~Store() {
  st_.reset();
  if (!memory_ && !read_only_) vfs::SetFullHandler(path_, nullptr);
}

Result<std::unique_ptr<Store>> Store::Open(const std::string& path,
                                           std::unique_ptr<ChunkStore> chunks) {
  std::unique_ptr<Store> s(new Store());
  Status st = s->Init(path, std::move(chunks));
  if (!st.ok()) return st;
  return s;
}

Result<std::unique_ptr<Store>> Store::OpenReader(const std::string& path,
                                                 std::shared_ptr<ReadGate> gate,
                                                 std::unique_ptr<ChunkStore> chunks) {
  std::unique_ptr<Store> s(new Store());
  Status st = s->InitReader(path, std::move(gate), std::move(chunks));
  if (!st.ok()) return st;
  return s;
}

Status Store::InitReader(const std::string& path, std::shared_ptr<ReadGate> gate,
                         std::unique_ptr<ChunkStore> chunks) {
  path_ = path;
  read_only_ = true;
  gate_ = std::move(gate);
  packs_removed_seen_ = gate_->packs_removed();
  if (path == ":memory:") return Status(EINVAL, "an in-memory store has no reader connections");
  MUSCLE_RETURN_IF_ERROR(db_.Open(path));
  sqlite3_busy_timeout(db_.raw(), 5000);
  MUSCLE_RETURN_IF_ERROR(db_.Exec("PRAGMA query_only=1; PRAGMA cache_size=-16384;"));
  st_ = std::make_unique<Statements>(db_);
  chunks_ = chunks ? std::move(chunks)
                  : std::make_unique<LocalPackStore>(PackDir(), LocalPackStore::Mode::kReadOnly);
  return Status::Ok();
}

void Store::ReaderTick() {
  uint64_t removed = gate_->packs_removed();
  if (removed == packs_removed_seen_) return;
  packs_removed_seen_ = removed;
  chunks_->ForgetCached();
}

Status Store::Init(const std::string& path, std::unique_ptr<ChunkStore> chunks) {
  path_ = path;
  memory_ = path == ":memory:";
  if (!memory_) {
    reserve_path_ = path + "-reserve";
    vfs::SetFullHandler(path_, [this] { return ReleaseReserve(); });
  }
  if (chunks) {
    chunks_ = std::move(chunks);
  } else if (memory_) {
    auto packs = LocalPackStore::Temporary();
    if (!packs.ok()) return packs.status();
    chunks_ = std::move(*packs);
  } else {
    auto packs = std::make_unique<LocalPackStore>(PackDir(), LocalPackStore::Mode::kWrite);
    packs->on_full = [this] { return ReleaseReserve(); };
    chunks_ = std::move(packs);
  }
  if (!memory_) {
    // One user of a store at a time: a second server, or `musclefs check`
    // next to a running one (it would purge files the server keeps open).
    auto lock = FileLock::Exclusive(path + "-lock");
    if (!lock.ok())
      return Status(EBUSY, "store " + path + " is in use (a musclefs serving it?): " +
                               lock.status().message());
    lock_ = std::move(*lock);
  }
  MUSCLE_RETURN_IF_ERROR(db_.Open(path));
  sqlite3_busy_timeout(db_.raw(), 5000);
  sqlite3_rollback_hook(db_.raw(), [](void* self) { static_cast<Store*>(self)->txn_lost_ = true; }, this);
  // Every change to an inode's entries, data or xattrs also updates its
  // row, so a changed inode row is what makes an inode dirty for readers.
  sqlite3_update_hook(
      db_.raw(),
      [](void* self, int, const char*, const char* table, sqlite3_int64 row) {
        if (strcmp(table, "inodes") == 0) {
          auto* st = static_cast<Store*>(self);
          st->gate_->MarkDirty(uint64_t(row));
          if (st->tracking_changes_) st->changed_.insert(uint64_t(row));
        }
      },
      this);
  // Nothing commits but an explicit Commit(): after SQLite abandons a
  // transaction, statements of the failing operation would otherwise each
  // commit on their own (autocommit) while memory believes them rolled back.
  sqlite3_commit_hook(db_.raw(), [](void* self) { return static_cast<Store*>(self)->committing_ ? 0 : 1; }, this);
  // (Switching to WAL writes the database header: a commit of its own.)
  MUSCLE_RETURN_IF_ERROR(Commit(
      "PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
      "PRAGMA cache_size=-65536; PRAGMA temp_store=MEMORY;"));
  MUSCLE_RETURN_IF_ERROR(db_.Exec("BEGIN IMMEDIATE"));
  Status s = db_.Exec(kSchema);
  int64_t version = 0;
  if (s.ok()) {
    Stmt v(db_, "SELECT value FROM meta WHERE key='schema'");
    if (v.Step()) version = v.Int(0);
  }
  if (s.ok() && version == 0) {
    s = db_.Exec(kChunksV2);
    if (s.ok()) s = db_.Exec(kSnapshotsV3);
    Stmt ins(db_, "INSERT INTO meta(key, value) VALUES('schema', ?)");
    ins.Bind(1, int64_t(kSchemaVersion));
    if (s.ok()) s = ins.Run();
  } else if (s.ok() && version == 1) {
    s = MigrateV1();
  } else if (s.ok() && version != 2 && version != kSchemaVersion) {
    s = Status(EINVAL, "store " + path + " has schema version " + std::to_string(version) +
                           ", this musclefs reads 1 to " + std::to_string(kSchemaVersion));
  }
  if (s.ok() && (version == 1 || version == 2)) {
    s = db_.Exec(kMigrateV2);
    if (s.ok()) s = db_.Exec(kSnapshotsV3);
    if (s.ok()) s = db_.Exec("UPDATE meta SET value=3 WHERE key='schema'");
    if (s.ok()) Log("store: %s upgraded to format 3 (snapshots)", path.c_str());
  }
  if (s.ok() && version != 1) s = OpenChunks();
  if (s.ok()) {
    Stmt root(db_, "SELECT 1 FROM inodes WHERE ino=1");
    if (!root.Step()) {
      int64_t now = NowNs();
      Stmt ins(db_,
               "INSERT INTO inodes(ino,parent,mode,uid,gid,nlink,rdev,size,atime,mtime,"
               "ctime,btime,version) VALUES(1,1,?,?,?,2,0,0,?,?,?,?,1)");
      ins.Bind(1, int64_t(S_IFDIR | 0755)).Bind(2, int64_t(getuid()))
          .Bind(3, int64_t(getgid())).Bind(4, now).Bind(5, now).Bind(6, now)
          .Bind(7, now);
      s = ins.Run();
    }
  }
  if (s.ok()) {
    // Inode numbers continue after the highest ever handed out.
    Stmt hi(db_, "SELECT max(coalesce((SELECT value FROM meta WHERE key='next_ino'), 0), "
                 "(SELECT max(ino) + 1 FROM inodes))");
    next_ino_ = hi.Step() ? uint64_t(hi.Int(0)) : 2;
    persisted_next_ino_ = next_ino_;
  }
  if (s.ok()) {
    Stmt any(db_, "SELECT 1 FROM inodes WHERE obj IS NOT NULL LIMIT 1");
    objects_exist_ = any.Step();
  }
  if (s.ok()) {
    // Files unlinked while open when the server last stopped.
    Stmt orphans(db_, "SELECT ino FROM inodes WHERE nlink=0 AND ino<>1");
    std::vector<uint64_t> list;
    while (orphans.Step()) list.push_back(uint64_t(orphans.Int(0)));
    orphans.Reset();
    st_ = std::make_unique<Statements>(db_);
    for (uint64_t ino : list) {
      s = PurgeInode(ino);
      if (!s.ok()) break;
    }
  }
  if (!s.ok()) {
    db_.Exec("ROLLBACK");
    return s;
  }
  MUSCLE_RETURN_IF_ERROR(Commit("COMMIT"));
  if (version == 1) {
    Log("store: migrated %s to format 2; compacting the database", path.c_str());
    Status v = Commit("VACUUM");
    if (!v.ok()) Log("store: VACUUM after migration failed (the store is fine, only larger): %s",
                     v.ToString().c_str());
  }
  EnsureReserve();
  return Status::Ok();
}

std::string Store::PackDir() const {
  std::string dir = path_.substr(0, path_.rfind('/') + 1);
  return (dir.empty() ? "./" : dir) + "packs";
}

// A random id made with the store (meta.store_id), written into packs/owner.
Result<std::string> Store::StoreId() {
  {
    Stmt q(db_, "SELECT value FROM meta WHERE key='store_id'");
    if (q.Step()) return std::string(q.Blob(0));
    if (q.failed()) return q.Error("store id");
  }
  unsigned char raw[16];
  sqlite3_randomness(sizeof raw, raw);
  static const char* kDigits = "0123456789abcdef";
  std::string id;
  for (unsigned char b : raw) {
    id += kDigits[b >> 4];
    id += kDigits[b & 15];
  }
  Stmt ins(db_, "INSERT INTO meta(key, value) VALUES('store_id', ?)");
  ins.BindText(1, id);
  MUSCLE_RETURN_IF_ERROR(ins.Run());
  return id;
}

Status Store::OpenChunks() {
  std::map<uint64_t, uint64_t> committed;
  {
    Stmt q(db_, "SELECT id, size FROM packs");
    while (q.Step()) committed[uint64_t(q.Int(0))] = uint64_t(q.Int(1));
    if (q.failed()) return q.Error("packs");
  }
  auto id = StoreId();
  if (!id.ok()) return id.status();
  MUSCLE_RETURN_IF_ERROR(chunks_->Open(*id, committed));
  committed_ = chunks_->mark();
  return Status::Ok();
}

// Format 1 -> 2, inside Init's transaction: every chunk's data is appended
// to packs (synced), then the chunk table is rebuilt without it. A crash
// before the commit leaves format 1 and pack files no index names (removed
// at the next open, which migrates again).
Status Store::MigrateV1() {
  auto t0 = std::chrono::steady_clock::now();
  Log("store: migrating %s from format 1 (chunk data in SQLite) to format 2 (pack files in %s)",
      path_.c_str(), PackDir().c_str());
  auto id = StoreId();
  if (!id.ok()) return id.status();
  // The id is committed before any pack is written, so a migration cut
  // short finds its own packs again (and removes them) next time.
  MUSCLE_RETURN_IF_ERROR(Commit("COMMIT; BEGIN IMMEDIATE"));
  MUSCLE_RETURN_IF_ERROR(chunks_->Open(*id, {}));
  MUSCLE_RETURN_IF_ERROR(db_.Exec(
      "CREATE TABLE chunks_v2(id INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, "
      "size INTEGER NOT NULL, refs INTEGER NOT NULL, pack INTEGER NOT NULL, "
      "offset INTEGER NOT NULL);"
      "CREATE TABLE packs(id INTEGER PRIMARY KEY, size INTEGER NOT NULL);"));
  uint64_t n = 0, bytes = 0;
  {
    Stmt q(db_, "SELECT id, hash, size, refs, data FROM chunks ORDER BY id");
    Stmt ins(db_, "INSERT INTO chunks_v2 VALUES(?,?,?,?,?,?)");
    while (q.Step()) {
      std::string_view hash = q.Blob(1), data = q.Blob(4);
      if (hash.size() != 32) return Status(EIO, "chunk " + std::to_string(q.Int(0)) + " has a bad hash");
      unsigned char h[32];
      memcpy(h, hash.data(), 32);
      auto at = AppendChunk(data, h);
      if (!at.ok()) return at.status();
      ins.Bind(1, q.Int(0)).Bind(2, hash).Bind(3, q.Int(2)).Bind(4, q.Int(3))
          .Bind(5, int64_t(at->container)).Bind(6, int64_t(at->offset));
      MUSCLE_RETURN_IF_ERROR(ins.Run());
      n++;
      bytes += data.size();
    }
    if (q.failed()) return q.Error("migrate chunks");
  }
  MUSCLE_RETURN_IF_ERROR(SyncChunks());
  MUSCLE_RETURN_IF_ERROR(db_.Exec(
      "DROP TABLE chunks; ALTER TABLE chunks_v2 RENAME TO chunks;"
      "CREATE INDEX chunks_by_pack ON chunks(pack, offset);"
      "UPDATE meta SET value=2 WHERE key='schema';"));
  committed_ = chunks_->mark();
  Log("store: %llu chunks (%llu MiB) moved into packs in %.1f s",
      (unsigned long long)n, (unsigned long long)(bytes >> 20),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return Status::Ok();
}

Result<ChunkLocation> Store::AppendChunk(std::string_view data, const unsigned char (&hash)[32]) {
  auto put = chunks_->Put(data, hash);
  if (!put.ok()) return put.status();
  if (put->started) {
    // The index rows for the container just started (and the final length
    // of the one it sealed, when there was one).
    if (put->sealed.container != 0) {
      Stmt up(db_, "UPDATE packs SET size=? WHERE id=?");
      up.Bind(1, int64_t(put->sealed.size)).Bind(2, int64_t(put->sealed.container));
      MUSCLE_RETURN_IF_ERROR(up.Run());
    }
    Stmt ins(db_, "INSERT INTO packs(id, size) VALUES(?, ?)");
    ins.Bind(1, int64_t(put->at.container)).Bind(2, int64_t(kContainerHeaderSize));
    MUSCLE_RETURN_IF_ERROR(ins.Run());
  }
  return put->at;
}

Status Store::SyncChunks() {
  MUSCLE_RETURN_IF_ERROR(chunks_->Sync());
  ContainerMark now = chunks_->mark();
  if (now.container == 0 || now == committed_) return Status::Ok();
  Stmt q(db_, "UPDATE packs SET size=? WHERE id=?");
  q.Bind(1, int64_t(now.size)).Bind(2, int64_t(now.container));
  return q.Run();
}

Status Store::SetCacheSize(int64_t kib) {
  return db_.Exec(("PRAGMA cache_size=-" + std::to_string(kib)).c_str());
}

Result<uint64_t> Store::AllocateIno() {
  if (next_ino_ >= (uint64_t(1) << 62)) return Status(ENOSPC, "inode numbers exhausted");
  return next_ino_++;
}

void Store::AfterFailure(const Status& why) {
  if (in_txn_ && (txn_lost_ || sqlite3_get_autocommit(db_.raw()))) ForgetUncommitted(why);
  txn_lost_ = false;
}

void Store::ForgetUncommitted(const Status& why) {
  if (sqlite3_get_autocommit(db_.raw()) == 0) db_.Exec("ROLLBACK");
  in_txn_ = false;
  savepoint_depth_ = 0;
  txn_lost_ = false;
  punches_.clear();
  changed_.clear();  // the changes are gone with the transaction
  Status p = chunks_->RollBackTo(committed_);
  if (!p.ok()) Log("store: rolling the open pack back failed: %s", p.ToString().c_str());
  size_t files = dirty_.size();
  precut_.Drop(Precut::kAll);
  dirty_.clear();
  dirty_bytes_ = 0;
  set_aside_.clear();
  gate_->Published();  // the committed state is the writer's again
  rollbacks_++;
  Log("store: %s; the changes since the last commit were rolled back "
      "(%zu files had buffered writes); files created since then are gone",
      why.ToString().c_str(), files);
}

void Store::SetAside(uint64_t ino, DirtyFile&& f) {
  precut_.Drop(ino);
  dirty_bytes_ -= f.bytes;
  if (savepoint_depth_ > 0) set_aside_.emplace_back(ino, std::move(f));
}

void Store::UndoTo(const UndoMark& mark) {
  punches_.resize(mark.punches);
  if (chunks_->mark() != mark.chunks) {
    Status p = chunks_->RollBackTo(mark.chunks);
    if (!p.ok()) Log("store: rolling the open pack back failed: %s", p.ToString().c_str());
  }
  while (set_aside_.size() > mark.set_aside) {
    auto& [ino, f] = set_aside_.back();
    // Nothing writes to a file between its flush and the end of the
    // operation, so the slot is free; keep the newer one if it is not.
    if (!dirty_.count(ino)) {
      dirty_bytes_ += f.bytes;
      dirty_.emplace(ino, std::move(f));
    }
    set_aside_.pop_back();
  }
}

void Store::DropSetAside() {
  for (auto& [ino, f] : set_aside_)
    for (auto& [off, buf] : f.ranges)
      if (buf.capacity() >= file_buffer_limit && spare_buffer_.capacity() < file_buffer_limit) {
        buf.clear();
        spare_buffer_.swap(buf);
      }
  set_aside_.clear();
}

Status Store::Commit(const char* sql) {
  committing_ = true;
  Status s = db_.Exec(sql);
  committing_ = false;
  // Readers see the commit from now on (and must not trust reads that
  // raced it); only then may its freed pack space be punched or removed.
  if (s.ok()) gate_->Published();
  return s;
}

Status Store::Begin() {
  // A transaction SQLite abandoned is not silently replaced: the operation
  // fails, and the end of it forgets the lost work (OpScope).
  if (in_txn_ && (txn_lost_ || sqlite3_get_autocommit(db_.raw())))
    return Status(EIO, "the transaction was abandoned after an I/O error");
  if (in_txn_) return Status::Ok();
  MUSCLE_RETURN_IF_ERROR(db_.Exec("BEGIN IMMEDIATE"));
  in_txn_ = true;
  txn_lost_ = false;
  txn_started_ = std::chrono::steady_clock::now();
  return Status::Ok();
}

Status Store::Sync(bool durable) {
  OpScope op(this);
  while (!dirty_.empty()) {
    uint64_t ino = dirty_.begin()->first;
    Status s = Atomically([&]() -> Status { return FlushFile(ino); });
    if (!s.ok()) return s;
  }
  if (!in_txn_) return Status::Ok();
  // synchronous=FULL syncs the WAL at every commit. Commits are batched
  // (one per commit interval or Tfsync), so this costs one fsync per batch
  // and makes every commit, not only Tfsync's, survive power loss.
  // Pack data is synced first: no committed row ever names unsynced data.
  Status s = ApplyInvalidations();
  if (s.ok()) s = SyncChunks();
  if (s.ok() && next_ino_ != persisted_next_ino_) {
    Stmt q(db_, "INSERT OR REPLACE INTO meta(key, value) VALUES('next_ino', ?)");
    q.Bind(1, int64_t(next_ino_));
    s = q.Run();
  }
  if (s.ok()) s = Commit("COMMIT");
  if (!s.ok()) {
    ForgetUncommitted(s);
    return s;
  }
  changed_.clear();  // their invalidations are committed with them
  in_txn_ = false;
  persisted_next_ino_ = next_ino_;
  committed_ = chunks_->mark();
  // The deletes are durable: give the dead chunks' space back.
  for (const Punch& p : punches_) {
    Status ps = chunks_->Punch(p.at, p.length);
    if (!ps.ok()) {
      if (!punch_failed_) Log("store: cannot free space in packs (%s); musclefs gc compacts them", ps.ToString().c_str());
      punch_failed_ = true;
      break;
    }
  }
  punches_.clear();
  // Tfsync (and the tests) return with the space given back; the other
  // commits leave the punching to the pack helper.
  if (durable) {
    Status ps = chunks_->WaitIdle();
    if (!ps.ok() && !punch_failed_) {
      Log("store: cannot free space in packs (%s); musclefs gc compacts them", ps.ToString().c_str());
      punch_failed_ = true;
    }
  }
  return Status::Ok();
}

Status Store::Tick() {
  OpScope op(this);
  RecheckSpace();
  while (dirty_bytes_ > total_buffer_limit) MUSCLE_RETURN_IF_ERROR(FlushLargest());
  // Background compaction: at most one pack per pass, at most every 10 s,
  // and only after deletes, so a busy server is not slowed by it.
  if (garbage_since_gc_ && !low_space_ &&
      std::chrono::steady_clock::now() - last_gc_ >= gc_interval) {
    garbage_since_gc_ = false;
    auto gc = CollectGarbage(false);
    if (!gc.ok()) Log("store: background compaction failed: %s", gc.status().ToString().c_str());
    else if (gc->packs_removed) garbage_since_gc_ = true;  // maybe more to do
  }
  if (snapshot_every.count() > 0 && !low_space_) {
    int64_t now = NowNs(), last = 0;
    {
      Stmt q(db_, "SELECT coalesce(max(created), 0) FROM snapshots");
      if (q.Step()) last = q.Int(0);
    }
    if (now - last >= int64_t(snapshot_every.count()) * 1000000000) {
      auto snap = TakeSnapshot();
      if (!snap.ok()) Log("store: scheduled snapshot failed: %s", snap.status().ToString().c_str());
    }
  }
  if (!in_txn_ && dirty_.empty()) return Status::Ok();
  auto age = std::chrono::steady_clock::now() - txn_started_;
  if (!in_txn_ || age >= commit_interval) return Sync(false);
  return Status::Ok();
}

}  // namespace muscle::store
