// The schema: the tables a new store is created with, and the migrations
// that bring an older store up to the current format (1 -> 2: chunk data
// out of SQLite into pack files; 2 -> 3: snapshots), recorded in the meta
// row 'schema'. Runs once, inside Init's first transaction, on the thread
// opening the writer, before anything else uses the store.
#include "store/store.h"

#include <chrono>
#include <cstring>

#include "common/log.h"
#include "store/sqlite.h"

namespace muscle::store {

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
CREATE TABLE IF NOT EXISTS op_results(
  identity TEXT NOT NULL, op INTEGER NOT NULL, reply BLOB NOT NULL, at INTEGER NOT NULL,
  PRIMARY KEY(identity, op)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS op_results_by_age ON op_results(at);
)sql";

// op_results (operation ids, op_results.cc) came within format 4: a table
// only the server uses, made at open when missing (kSchema runs at every
// open), which an older musclefs leaves alone.
// Format 4: an encrypted store keeps a keyring (meta 'keyring',
// crypto/keyring.h) so that its key can rotate; no table changes, and
// format 3's encrypted stores get theirs (their key as generation 1) at
// open (Store::SetUpEncryption, in the same transaction). Format 3 refuses
// to open a format 4 store, which may hold packs sealed under a later key.
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

// Creates the tables of a new store, or migrates an older one (the format
// it had is left in `version`: 0 for a new store).
Status Store::CreateOrMigrateSchema(int64_t& version) {
  Status s = db_.Exec(kSchema);
  version = 0;
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
  } else if (s.ok() && version != 2 && version != 3 && version != kSchemaVersion) {
    s = Status(EINVAL, "store " + path_ + " has schema version " + std::to_string(version) +
                           ", this musclefs reads 1 to " + std::to_string(kSchemaVersion));
  }
  if (s.ok() && (version == 1 || version == 2)) {
    s = db_.Exec(kMigrateV2);
    if (s.ok()) s = db_.Exec(kSnapshotsV3);
    if (s.ok()) s = db_.Exec("UPDATE meta SET value=3 WHERE key='schema'");
    if (s.ok()) Log("store: %s upgraded to format 3 (snapshots)", path_.c_str());
  }
  if (s.ok() && version >= 1 && version <= 3) {
    s = db_.Exec("UPDATE meta SET value=4 WHERE key='schema'");
    if (s.ok()) Log("store: %s upgraded to format 4 (keyring)", path_.c_str());
  }
  return s;
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
  MUSCLE_RETURN_IF_ERROR(CheckChunksLocation(false));
  MUSCLE_RETURN_IF_ERROR(chunks_->Open(*id, {}));
  MUSCLE_RETURN_IF_ERROR(db_.Exec(
      "CREATE TABLE chunks_v2(id INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, "
      "size INTEGER NOT NULL, refs INTEGER NOT NULL, pack INTEGER NOT NULL, "
      "offset INTEGER NOT NULL);"
      "CREATE TABLE packs(id INTEGER PRIMARY KEY, size INTEGER NOT NULL);"));
  uint64_t n = 0, bytes = 0;
  if (progress) {
    Stmt total(db_, "SELECT coalesce(sum(length(data)), 0) FROM chunks");
    progress->Begin("upgrade: moving chunks into packs", ProgressUnit::kBytes,
                    total.Step() ? uint64_t(total.Int(0)) : 0);
  }
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
      if (progress) progress->Add(data.size());
    }
    if (q.failed()) return q.Error("migrate chunks");
  }
  if (progress) progress->End();
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

}  // namespace muscle::store
