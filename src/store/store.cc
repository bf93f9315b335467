// The store's life: opening (the writer, which creates or migrates the
// schema, and reader connections) and closing, the chunk store it is
// attached to (the pack directory, the store id, the one append path and
// its sync before a commit), inode numbers, and Tick, the periodic work.
// The schema lives in schema.cc, transactions and undo in transaction.cc,
// the namespace in namespace.cc, disk space in space.cc, data chunks in
// file_data.cc, verification in check.cc, snapshots in snapshot_objects.cc,
// snapshots.cc and snapshot_history.cc. Threading: Open and OpenReader run
// on the caller's thread, before the store worker (or a reader thread)
// takes the store; Tick on the store worker, ReaderTick on the reader's
// thread.
#include "store/store.h"

#include "store/sealed_chunk_store.h"

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
#include "store/sealed_chunk_store.h"
#include "store/snapshot_internal.h"
#include "store/statements.h"
#include "store/vfs.h"

namespace muscle::store {

Store::Store() = default;

Store::~Store() {
  if (ino_fd_ >= 0) close(ino_fd_);
  st_.reset();
  if (!memory_ && !read_only_) vfs::SetFullHandler(path_, nullptr);
}

Result<std::unique_ptr<Store>> Store::Open(const std::string& path,
                                           std::unique_ptr<ChunkStore> chunks,
                                           std::shared_ptr<const crypto::MasterKey> key,
                                           ProgressSink* progress) {
  std::unique_ptr<Store> s(new Store());
  s->progress = progress;
  Status st = s->Init(path, std::move(chunks), std::move(key));
  s->progress = nullptr;
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

Status Store::Init(const std::string& path, std::unique_ptr<ChunkStore> chunks,
                   std::shared_ptr<const crypto::MasterKey> key) {
  path_ = path;
  key_ = std::move(key);
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
  InstallHooks();
  // (Switching to WAL writes the database header: a commit of its own.)
  MUSCLE_RETURN_IF_ERROR(Commit(
      "PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
      "PRAGMA cache_size=-65536; PRAGMA temp_store=MEMORY;"));
  MUSCLE_RETURN_IF_ERROR(db_.Exec("BEGIN IMMEDIATE"));
  int64_t version = 0;
  Status s = CreateOrMigrateSchema(version);
  new_store_ = version == 0;
  if (s.ok() && rebuild_) s = new_store_ ? LoadRebuildIndex() : Status(EEXIST, "a store exists at " + path);
  if (s.ok() && version == 1 && key_)
    s = Status(EINVAL, "store " + path + " is in format 1 and was made without encryption; "
                       "encryption is chosen when a store is made");
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
    // Inode numbers continue after the highest ever handed out: above the
    // last commit's and the last reservation's (numbers handed out after
    // the last commit, before a crash, are below it).
    Stmt hi(db_, "SELECT max(coalesce((SELECT value FROM meta WHERE key='next_ino'), 0), "
                 "(SELECT max(ino) + 1 FROM inodes))");
    next_ino_ = hi.Step() ? uint64_t(hi.Int(0)) : 2;
    hi.Reset();
    if (!memory_) {
      auto reserved = ReadInoReservation(path + "-inos");
      if (!reserved.ok()) s = reserved.status();
      else next_ino_ = std::max(next_ino_, *reserved);
      if (s.ok()) s = ReserveInos();
    }
    persisted_next_ino_ = next_ino_;
  }
  if (s.ok()) {
    Stmt any(db_, "SELECT 1 FROM inodes WHERE obj IS NOT NULL LIMIT 1");
    objects_exist_ = any.Step();
  }
  if (s.ok()) {
    Stmt q(db_, "SELECT value FROM meta WHERE key='commit'");
    commit_number_ = q.Step() ? uint64_t(q.Int(0)) : 0;
    st_ = std::make_unique<Statements>(db_);
  }
  if (!s.ok()) {
    db_.Exec("ROLLBACK");
    return s;
  }
  MUSCLE_RETURN_IF_ERROR(Commit("COMMIT"));
  opened_at_ = std::chrono::steady_clock::now();  // orphan_hold counts from here
  if (version == 1) {
    Log("store: migrated %s to format 2; compacting the database", path.c_str());
    Status v = Commit("VACUUM");
    if (!v.ok()) Log("store: VACUUM after migration failed (the store is fine, only larger): %s",
                     v.ToString().c_str());
  }
  EnsureReserve();
  // What was acknowledged after the last commit (a kill -9), then the
  // files left without names: replayed unlinks leave some.
  if (!memory_) MUSCLE_RETURN_IF_ERROR(Replay());
  return HoldOrphans();
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
  MUSCLE_RETURN_IF_ERROR(CheckChunksLocation(!committed.empty() && !rebuild_));
  MUSCLE_RETURN_IF_ERROR(
      SetUpEncryption(new_store_, *id, committed.empty() ? 0 : committed.rbegin()->first));
  MUSCLE_RETURN_IF_ERROR(chunks_->Open(*id, committed));
  committed_ = chunks_->mark();
  // After a rotation the open container keeps its key; new data starts a
  // container of the new generation.
  if (keyring_ && committed_.container != 0 && committed_.container < keyring_->current().first)
    chunks_->SealOpen();
  // The bucket's copy of the catalog may predate a crash: publish it again.
  Stmt any(db_, "SELECT 1 FROM snapshots LIMIT 1");
  if (any.Step()) MUSCLE_RETURN_IF_ERROR(PublishCatalog());
  return Status::Ok();
}

namespace {

// meta[key] as bytes ("" when absent).
Result<std::string> MetaValue(Db& db, const char* key) {
  Stmt q(db, "SELECT value FROM meta WHERE key=?");
  q.BindText(1, key);
  if (q.Step()) return std::string(q.Blob(0));
  if (q.failed()) return q.Error(key);
  return std::string();
}

// Text, or a blob (a sealed keyring).
Status SetMeta(Db& db, const char* key, std::string_view value, bool blob = false) {
  Stmt ins(db, "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)");
  ins.BindText(1, key);
  if (blob) ins.Bind(2, value);
  else ins.BindText(2, value);
  return ins.Run();
}

}  // namespace

Status Store::SetUpEncryption(bool new_store, const std::string& store_id, uint64_t highest) {
  auto recorded_v = MetaValue(db_, "key_id");
  if (!recorded_v.ok()) return recorded_v.status();
  std::string recorded = *recorded_v;
  if (recorded.empty() && !key_) return Status::Ok();
  if (recorded.empty()) {
    if (!new_store)
      return Status(EINVAL, "store " + path_ + " was made without encryption: serve it without a key, "
                            "or convert it first (musclefs upgrade --encrypt)");
    recorded = crypto::KeyIdOf(*key_).Hex();
    MUSCLE_RETURN_IF_ERROR(SetMeta(db_, "key_id", recorded));
  }
  if (!key_)
    return Status(EACCES, "store " + path_ + " is encrypted (key id " + recorded +
                              "): give its key file (--key-file)");
  auto sealed = MetaValue(db_, "keyring");
  if (!sealed.ok()) return sealed.status();
  auto pending = MetaValue(db_, "keyring_next");
  if (!pending.ok()) return pending.status();
  std::string have = crypto::KeyIdOf(*key_).Hex();
  if (have == recorded && sealed->empty()) {
    // A store from before keyrings (format 3), or a new one: its one key
    // is generation 1 from container 0 on.
    keyring_ = std::make_shared<const crypto::Keyring>(crypto::Keyring::First(*key_));
    auto text = keyring_->Seal(store_id);
    if (!text.ok()) return text.status();
    MUSCLE_RETURN_IF_ERROR(SetMeta(db_, "keyring", *text, true));
  } else if (have == recorded) {
    auto ring = crypto::Keyring::Open(*sealed, *key_, store_id);
    if (!ring.ok())
      return Status(ring.status().err(), "store " + path_ + ": " + ring.status().message());
    keyring_ = std::make_shared<const crypto::Keyring>(std::move(*ring));
  } else if (!pending->empty() && crypto::Keyring::SealedUnder(*pending).ok() &&
             crypto::Keyring::SealedUnder(*pending)->Hex() == have) {
    // The pending key of a rotation (BeginKeyRotation): complete it.
    auto next = crypto::Keyring::Open(*pending, *key_, store_id);
    if (!next.ok())
      return Status(next.status().err(), "store " + path_ + " (its pending key): " + next.status().message());
    // The new generation starts past every container written so far
    // (some may have been, under the old key, after BeginKeyRotation).
    auto moved = next->WithCurrentFirst(std::max(next->current().first, highest + 1));
    if (!moved.ok()) return moved.status();
    std::optional<crypto::Keyring> ring(std::move(*moved));
    auto text = ring->Seal(store_id);
    if (!text.ok()) return text.status();
    auto old_ids = MetaValue(db_, "old_key_ids");
    if (!old_ids.ok()) return old_ids.status();
    MUSCLE_RETURN_IF_ERROR(SetMeta(db_, "keyring", *text, true));
    MUSCLE_RETURN_IF_ERROR(SetMeta(db_, "key_id", have));
    MUSCLE_RETURN_IF_ERROR(SetMeta(db_, "old_key_ids", *old_ids + (old_ids->empty() ? "" : " ") + recorded));
    {
      Stmt del(db_, "DELETE FROM meta WHERE key='keyring_next'");
      MUSCLE_RETURN_IF_ERROR(del.Run());
    }
    Log("store: %s: key rotated: generation %u (key id %s) seals new packs from pack %llu on; "
        "key id %s opens the store no more",
        path_.c_str(), unsigned(ring->current().number), have.c_str(),
        (unsigned long long)ring->current().first, recorded.c_str());
    keyring_ = std::make_shared<const crypto::Keyring>(std::move(*ring));
    recorded = have;
  } else {
    auto old_ids = MetaValue(db_, "old_key_ids");
    if (!old_ids.ok()) return old_ids.status();
    if ((" " + *old_ids + " ").find(" " + have + " ") != std::string::npos)
      return Status(EACCES, "the key given (key id " + have + ") was store " + path_ +
                                "'s key before a rotation (musclefs key rotate) and opens it no more; "
                                "use a key file that holds its current key (key id " + recorded + ")");
    return Status(EACCES, "the key given (key id " + have + ") is not the key of store " + path_ +
                              " (key id " + recorded + ")");
  }
  chunks_ = std::make_unique<SealedChunkStore>(std::move(chunks_), keyring_);
  naming_ = ChunkNaming::Keyed(*keyring_);
  precut_.SetNaming(naming_);
  return Status::Ok();
}

Status Store::BeginKeyRotation(const crypto::MasterKey& next) {
  if (!keyring_) return Status(EINVAL, "store " + path_ + " is not encrypted: it has no key to rotate");
  if (chunks_->Location() != "local" && chunks_->Location() != "memory")
    return Status(ENOTSUP, "store " + path_ + " keeps its chunks in " + chunks_->Location() +
                               ": its key cannot rotate yet (restore-from would need the older keys)");
  OpScope op(this);
  MUSCLE_RETURN_IF_ERROR(Sync(true));
  auto id = StoreId();
  if (!id.ok()) return id.status();
  auto ring = keyring_->Rotated(next, std::max(keyring_->current().first, committed_.container + 1));
  if (!ring.ok()) return ring.status();
  auto text = ring->Seal(*id);
  if (!text.ok()) return text.status();
  MUSCLE_RETURN_IF_ERROR(Atomically([&]() -> Status { return SetMeta(db_, "keyring_next", *text, true); }));
  return Sync(true);
}

Result<Store::GcReport> Store::RewriteOldKeys() {
  if (!keyring_) return Status(EINVAL, "store " + path_ + " is not encrypted: it has no keys");
  rewrite_below_ = keyring_->current().first;
  auto r = CollectGarbage(true);
  rewrite_below_ = 0;
  return r;
}

Status Store::RetireKey(uint32_t number) {
  if (!keyring_) return Status(EINVAL, "store " + path_ + " is not encrypted: it has no keys");
  auto ring = keyring_->Retired(number);
  if (!ring.ok()) return ring.status();
  OpScope op(this);
  MUSCLE_RETURN_IF_ERROR(Sync(true));
  {
    auto pending = MetaValue(db_, "keyring_next");
    if (!pending.ok()) return pending.status();
    // The pending keyring still holds the key: completing the rotation
    // would bring it back.
    if (!pending->empty())
      return Status(EBUSY, "a key rotation of store " + path_ +
                               " is pending: open the store with its new key file first (or rotate again)");
  }
  const auto& g = keyring_->generations()[number - 1];
  {
    Stmt q(db_, "SELECT count(*), count(DISTINCT pack) FROM chunks WHERE pack>=? AND pack<?");
    q.Bind(1, int64_t(g.first)).Bind(2, int64_t(std::min<uint64_t>(keyring_->EndOf(number), INT64_MAX)));
    if (!q.Step()) return q.Error("chunks");
    if (q.Int(0) > 0)
      return Status(EBUSY, std::to_string(q.Int(0)) + " chunks in " + std::to_string(q.Int(1)) +
                               " packs are still sealed under key generation " + std::to_string(number) +
                               " (key id " + g.id.Hex() + "): rewrite them first (musclefs key rewrite)");
  }
  auto id = StoreId();
  if (!id.ok()) return id.status();
  auto text = ring->Seal(*id);
  if (!text.ok()) return text.status();
  MUSCLE_RETURN_IF_ERROR(Atomically([&]() -> Status { return SetMeta(db_, "keyring", *text, true); }));
  MUSCLE_RETURN_IF_ERROR(Sync(true));
  keyring_ = std::make_shared<const crypto::Keyring>(std::move(*ring));
  return Status::Ok();
}

Result<std::map<uint32_t, uint64_t>> Store::PacksPerGeneration() {
  std::map<uint32_t, uint64_t> out;
  if (!keyring_) return out;
  Stmt q(db_, "SELECT id FROM packs");
  while (q.Step()) out[keyring_->ForContainer(uint64_t(q.Int(0))).number]++;
  if (q.failed()) return q.Error("packs");
  return out;
}

// meta.chunks names where the chunk data lives ("local", "s3://b/p"); a
// store made before it was recorded and holding packs keeps them locally.
// In-memory chunk stores (tests) are neither recorded nor checked.
Status Store::CheckChunksLocation(bool has_packs) {
  std::string here = chunks_->Location();
  if (here == "memory") return Status::Ok();
  std::string recorded;
  {
    Stmt q(db_, "SELECT value FROM meta WHERE key='chunks'");
    if (q.Step()) recorded = std::string(q.Blob(0));
    else if (q.failed()) return q.Error("chunks location");
  }
  if (recorded.empty() && has_packs) recorded = "local";
  auto name = [](const std::string& where) {
    return where == "local" ? std::string("local pack files (no --chunks)") : where;
  };
  if (!recorded.empty() && recorded != here)
    return Status(EINVAL, "store " + path_ + " keeps its chunk data in " + name(recorded) +
                              ", not in " + name(here) +
                              ": open it with the same chunks setting it was made with");
  if (recorded.empty()) {
    Stmt ins(db_, "INSERT OR REPLACE INTO meta(key, value) VALUES('chunks', ?)");
    ins.BindText(1, here);
    MUSCLE_RETURN_IF_ERROR(ins.Run());
  }
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
  if (forced_ino_) {  // Replay: the number it had
    next_ino_ = std::max(next_ino_, forced_ino_ + 1);
    return forced_ino_;
  }
  if (next_ino_ >= (uint64_t(1) << 62)) return Status(ENOSPC, "inode numbers exhausted");
  if (next_ino_ >= ino_reserved_) MUSCLE_RETURN_IF_ERROR(ReserveInos());
  return next_ino_++;
}

namespace {
// STORE-inos: one record, the decimal number below which inode numbers may
// have been handed out, padded to a fixed size and rewritten in place.
constexpr size_t kInoRecord = 24;
}  // namespace

Result<uint64_t> Store::ReadInoReservation(const std::string& file) {
  int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return uint64_t(0);  // a store from before the file
    return Status(errno, "open " + file);
  }
  char buf[kInoRecord + 1] = {};
  ssize_t n = pread(fd, buf, kInoRecord, 0);
  int err = errno;
  close(fd);
  if (n < 0) return Status(err, "read " + file);
  // Digits, spaces, a newline: anything else is not ours to guess at.
  char* end = buf;
  errno = 0;
  unsigned long long v = buf[0] >= '0' && buf[0] <= '9' ? strtoull(buf, &end, 10) : 0;
  while (end < buf + kInoRecord - 1 && *end == ' ') end++;
  if (n != ssize_t(kInoRecord) || end != buf + kInoRecord - 1 || *end != '\n' || errno ||
      v > (uint64_t(1) << 62))
    return Status(EIO, file + " is damaged (the inode numbers handed out are unknown); "
                       "if the store is otherwise fine, remove it and start again");
  return uint64_t(v);
}

// Records, synced, that numbers below next_ino_ + ino_reservation may be
// handed out: once per reservation, before the first number past the last.
Status Store::ReserveInos() {
  if (memory_) return Status::Ok();
  std::string file = path_ + "-inos";
  if (ino_fd_ < 0) {
    bool created = access(file.c_str(), F_OK) != 0;
    ino_fd_ = open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (ino_fd_ < 0) return Status(errno, "open " + file);
    struct stat db;
    // Made by root for a store served as another user: that user's.
    if (created && geteuid() == 0 && stat(path_.c_str(), &db) == 0 && db.st_uid != 0 &&
        fchown(ino_fd_, db.st_uid, db.st_gid) != 0)
      return Status(errno, "chown " + file);
    if (created) {
      std::string dir = path_.substr(0, path_.rfind('/') + 1);
      MUSCLE_RETURN_IF_ERROR(SyncDir(dir.empty() ? "." : dir));
    }
  }
  uint64_t upto = std::min(next_ino_ + ino_reservation, uint64_t(1) << 62);
  char buf[kInoRecord];
  memset(buf, ' ', sizeof buf);
  int len = snprintf(buf, sizeof buf, "%llu", (unsigned long long)upto);
  buf[len] = ' ';
  buf[kInoRecord - 1] = '\n';
  for (int attempt = 0;; attempt++) {
    ssize_t n = pwrite(ino_fd_, buf, sizeof buf, 0);
    int err = n < 0 ? errno : n != ssize_t(sizeof buf) ? ENOSPC : fdatasync(ino_fd_) != 0 ? errno : 0;
    if (!err) break;
    // The first write of the file needs a block: the reserve gives one.
    if (err == ENOSPC && attempt == 0 && ReleaseReserve()) continue;
    return Status(err, "write " + file);
  }
  ino_reserved_ = upto;
  return Status::Ok();
}

Status Store::Tick() {
  OpScope op(this);
  RecheckSpace();
  if (!orphans_.empty() && std::chrono::steady_clock::now() - opened_at_ >= orphan_hold) {
    if (Status o = ReleaseOrphans(); !o.ok())
      Log("store: freeing files unlinked before the restart failed: %s", o.ToString().c_str());
  }
  if (Status f = CommitIfFreeing(); !f.ok())
    Log("store: commit after a delete failed: %s", f.ToString().c_str());
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
  if (!in_txn_ && dirty_.empty()) {
    chunks_->Idle();
    return Status::Ok();
  }
  if (in_txn_ && std::chrono::steady_clock::now() - last_op_prune_ >= op_prune_interval) {
    last_op_prune_ = std::chrono::steady_clock::now();
    if (Status p = PruneOpResults(); !p.ok())
      Log("store: pruning operation ids failed: %s", p.ToString().c_str());
  }
  auto age = std::chrono::steady_clock::now() - txn_started_;
  if (!in_txn_ || age >= commit_interval) return Sync(false);
  // The redo log holds everything since the last commit: a commit keeps it
  // (and the replay after a crash) short under a fast stream of writes.
  if (redo_ && redo_->size() >= redo_limit) return Sync(false);
  return Status::Ok();
}

Status Store::ReleaseOrphans() {
  OpScope op(this);
  std::vector<uint64_t> list;
  list.swap(orphans_);
  Status first;
  for (uint64_t ino : list) {
    Status s = Unref(ino);
    if (!s.ok()) {  // held again; the next Tick tries again
      gate_->Ref(ino);
      orphans_.push_back(ino);
      if (first.ok()) first = s;
    }
  }
  return first;
}

Status Store::CommitIfFreeing() {
  if (!low_space_ || !in_txn_ || punches_.empty()) return Status::Ok();
  // Not again for the same deletes after a failure (buffered writes that
  // cannot be flushed on the full disk): the commit interval retries it.
  // And at most every 50 ms, so that deleting many files is not a commit
  // (and a WAL fsync) per file; Tick commits what is left.
  auto now = std::chrono::steady_clock::now();
  if (punches_.size() == freeing_failed_at_) return Status::Ok();
  if (now - last_freeing_commit_ < std::chrono::milliseconds(50)) return Status::Ok();
  OpScope op(this);
  last_freeing_commit_ = now;
  size_t punches = punches_.size();
  Status s = Sync(false);
  freeing_failed_at_ = s.ok() ? SIZE_MAX : punches;
  return s;
}

}  // namespace muscle::store
