// Key rotation of an encrypted store (crypto/keyring.h, Store::BeginKeyRotation):
// data written before and after a rotation reads back, each pack is sealed
// under its generation's key (checked on the pack file itself), the old key
// opens the store no more, a rotation cut at any step leaves a store that
// opens with the key files that exist, a store from before keyrings
// (format 3) opens and gains one, and a tampered keyring is refused.
#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <sstream>

#include "crypto/keyring.h"
#include "crypto/seal.h"
#include "s3/dir_object_store.h"
#include "store/bucket_pack_store.h"
#include "store/store.h"
#include "store/vfs.h"
#include "tests/store/store_test_util.h"
#include "tests/test_util.h"

using namespace muscle;
using namespace muscle::store;
using namespace muscle::test;

namespace {

std::unique_ptr<Store> OpenWith(const std::string& path, std::shared_ptr<const crypto::MasterKey> key) {
  auto s = Store::Open(path, nullptr, std::move(key));
  INFO(s.status().ToString());
  REQUIRE(s.ok());
  return std::move(*s);
}

void Exec(const std::string& db, const std::string& sql) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(h, sql.c_str(), nullptr, nullptr, &err);
  INFO((err ? err : ""));
  sqlite3_free(err);
  sqlite3_close(h);
  REQUIRE(rc == SQLITE_OK);
}

std::string MetaText(const std::string& db, const char* key) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(h, "SELECT value FROM meta WHERE key=?", -1, &st, nullptr);
  sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
  std::string out;
  if (sqlite3_step(st) == SQLITE_ROW)
    out.assign(static_cast<const char*>(sqlite3_column_blob(st, 0)), size_t(sqlite3_column_bytes(st, 0)));
  sqlite3_finalize(st);
  sqlite3_close(h);
  return out;
}

std::string Le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; i++) s[i] = char(v >> (8 * i));
  return s;
}

// Opens the sealed record of the chunk at (pack, offset) named `hash`,
// `size` bytes, straight from the pack file under `key` (generation key).
Status OpenOnDisk(const std::string& dir, const std::string& store_id, uint64_t pack, uint64_t offset,
                  uint64_t size, const std::string& hash, const crypto::MasterKey& key) {
  std::ifstream f(PackPath(dir, pack), std::ios::binary);
  std::string sealed(size + crypto::kSealOverhead, '\0');
  f.seekg(std::streamoff(offset));
  f.read(sealed.data(), std::streamsize(sealed.size()));
  REQUIRE(f.good());
  auto ad = crypto::AssociatedData::ForRecord(crypto::SealKind::kChunk, store_id, Le64(pack), offset, hash);
  REQUIRE(ad.ok());
  std::string out(size, '\0');
  return crypto::Open(crypto::PackKey(key, store_id + Le64(pack)), *ad, sealed, out);
}

struct ChunkRow {
  uint64_t pack, offset, size;
  std::string hash;
};

std::vector<ChunkRow> Chunks(const std::string& db) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(h, "SELECT pack, offset, size, hash FROM chunks ORDER BY pack, offset", -1, &st, nullptr);
  std::vector<ChunkRow> out;
  while (sqlite3_step(st) == SQLITE_ROW)
    out.push_back({uint64_t(sqlite3_column_int64(st, 0)), uint64_t(sqlite3_column_int64(st, 1)),
                   uint64_t(sqlite3_column_int64(st, 2)),
                   std::string(static_cast<const char*>(sqlite3_column_blob(st, 3)),
                               size_t(sqlite3_column_bytes(st, 3)))});
  sqlite3_finalize(st);
  sqlite3_close(h);
  return out;
}

}  // namespace

TEST_CASE("key rotation: old and new data read back, each pack sealed under its generation's key, "
          "the old key refused", "[keys]") {
  TempDir dir;
  std::string path = dir.path + "/store.db";
  auto k1 = KeyOf('1'), k2 = KeyOf('2');
  std::string before = RandomBytes(3 << 20, 1), after = RandomBytes(3 << 20, 2);
  uint64_t a = 0, b = 0;
  {
    auto s = OpenWith(path, k1);
    a = WriteFile(*s, "before", before);
    REQUIRE(s->Sync(true).ok());
    REQUIRE(s->BeginKeyRotation(*k2).ok());
  }
  uint64_t first = 0;
  {
    auto s = OpenWith(path, k2);  // completes the rotation
    REQUIRE(s->keyring()->current().number == 2);
    REQUIRE(s->keyring()->current().id == crypto::KeyIdOf(*k2));
    first = s->keyring()->current().first;
    CHECK(first == 2);  // pack 1 was open: it keeps key 1, new data starts pack 2
    CHECK(ReadAll(*s, a) == before);
    b = WriteFile(*s, "after", after);
    REQUIRE(s->Sync(true).ok());
    CHECK(ReadAll(*s, b) == after);
    auto per = s->PacksPerGeneration();
    REQUIRE(per.ok());
    CHECK((*per)[1] == 1);
    CHECK((*per)[2] >= 1);
    RequireClean(*s);
  }
  // On disk: every record opens under its own generation's key, and only that.
  std::string id = MetaText(path, "store_id");
  size_t old_records = 0, new_records = 0;
  for (const ChunkRow& c : Chunks(path)) {
    const auto& own = c.pack < first ? *k1 : *k2;
    const auto& other = c.pack < first ? *k2 : *k1;
    CHECK(OpenOnDisk(dir.path, id, c.pack, c.offset, c.size, c.hash, own).ok());
    CHECK(OpenOnDisk(dir.path, id, c.pack, c.offset, c.size, c.hash, other).err() == EIO);
    (c.pack < first ? old_records : new_records)++;
  }
  CHECK(old_records > 0);
  CHECK(new_records > 0);
  // The old key opens the store no more, and says why.
  auto old = Store::Open(path, nullptr, k1);
  REQUIRE_FALSE(old.ok());
  CHECK(old.status().err() == EACCES);
  CHECK(old.status().message().find("before a rotation") != std::string::npos);
  // The names did not change: the same bytes deduplicate across the rotation.
  {
    auto s = OpenWith(path, k2);
    uint64_t chunks_before = uint64_t(Count(path, "SELECT count(*) FROM chunks"));
    uint64_t c = WriteFile(*s, "copy-of-before", before);
    REQUIRE(s->Sync(true).ok());
    CHECK(uint64_t(Count(path, "SELECT count(*) FROM chunks")) == chunks_before);
    CHECK(ReadAll(*s, c) == before);
  }
}

TEST_CASE("key rotation cut between its steps: the store opens with either key file until it "
          "completes, and data written meanwhile stays readable", "[keys]") {
  TempDir dir;
  std::string path = dir.path + "/store.db";
  auto k1 = KeyOf('1'), k2 = KeyOf('2');
  std::string x = RandomBytes(1 << 20, 3), y = RandomBytes(1 << 20, 4);
  uint64_t xi = 0, yi = 0;
  {
    auto s = OpenWith(path, k1);
    xi = WriteFile(*s, "x", x);
    REQUIRE(s->Sync(true).ok());
    REQUIRE(s->BeginKeyRotation(*k2).ok());
  }
  // Cut before the key file was replaced: the old key file opens the store,
  // which writes on under the old key, into new packs too (past the start
  // the pending generation was given).
  std::vector<std::pair<uint64_t, std::string>> zs;
  {
    auto s = OpenWith(path, k1);
    CHECK(s->keyring()->current().number == 1);
    yi = WriteFile(*s, "y", y);
    for (int i = 0; i < 40; i++) {
      std::string z = RandomBytes(1 << 20, 10 + i);
      zs.push_back({WriteFile(*s, "z" + std::to_string(i), z), z});
    }
    REQUIRE(s->Sync(true).ok());
  }
  uint64_t highest = uint64_t(Count(path, "SELECT max(id) FROM packs"));
  CHECK(highest >= 2);
  // Then the new key file: the rotation completes past every pack written.
  {
    auto s = OpenWith(path, k2);
    CHECK(s->keyring()->current().number == 2);
    CHECK(s->keyring()->current().first == highest + 1);
    CHECK(ReadAll(*s, xi) == x);
    CHECK(ReadAll(*s, yi) == y);
    for (const auto& [ino, z] : zs) CHECK(ReadAll(*s, ino) == z);
    RequireClean(*s);
  }
  CHECK(MetaText(path, "keyring_next").empty());
  CHECK_FALSE(Store::Open(path, nullptr, k1).ok());
}

TEST_CASE("key rotation: a failed commit of the pending key leaves the store as it was", "[keys]") {
  TempDir dir;
  std::string path = dir.path + "/store.db";
  auto k1 = KeyOf('1'), k2 = KeyOf('2');
  std::string x = RandomBytes(100000, 5);
  uint64_t xi = 0;
  {
    auto s = OpenWith(path, k1);
    xi = WriteFile(*s, "x", x);
    REQUIRE(s->Sync(true).ok());
    vfs::InjectFault(vfs::kWrite | vfs::kSync, 1, SQLITE_IOERR_WRITE, true);
    Status b = s->BeginKeyRotation(*k2);
    bool fired = vfs::FaultFired();
    vfs::ClearFault();
    CHECK(fired);
    CHECK_FALSE(b.ok());
  }
  CHECK(MetaText(path, "keyring_next").empty());
  CHECK_FALSE(Store::Open(path, nullptr, k2).ok());
  auto s = OpenWith(path, k1);
  CHECK(ReadAll(*s, xi) == x);
}

TEST_CASE("a store from before keyrings (format 3) opens with its key and gains a keyring", "[keys]") {
  TempDir dir;
  std::string path = dir.path + "/store.db";
  auto k1 = KeyOf('1');
  std::string x = RandomBytes(2 << 20, 6);
  uint64_t xi = 0;
  {
    auto s = OpenWith(path, k1);
    xi = WriteFile(*s, "x", x);
    REQUIRE(s->Sync(true).ok());
  }
  // What the previous musclefs wrote: format 3, meta key_id, no keyring.
  Exec(path, "DELETE FROM meta WHERE key='keyring'; UPDATE meta SET value=3 WHERE key='schema';");
  REQUIRE(MetaText(path, "keyring").empty());
  CHECK_FALSE(Store::Open(path, nullptr, KeyOf('2')).ok());
  REQUIRE(MetaText(path, "keyring").empty());
  {
    auto s = OpenWith(path, k1);
    CHECK(s->keyring()->current().number == 1);
    CHECK(s->keyring()->current().first == 0);
    CHECK(ReadAll(*s, xi) == x);
    RequireClean(*s);
  }
  CHECK(Count(path, "SELECT value FROM meta WHERE key='schema'") == kStoreFormat);
  auto sealed = MetaText(path, "keyring");
  REQUIRE_FALSE(sealed.empty());
  auto ring = crypto::Keyring::Open(sealed, *k1, MetaText(path, "store_id"));
  REQUIRE(ring.ok());
  CHECK(ring->generations().size() == 1);
  // And it rotates like any other.
  {
    auto s = OpenWith(path, k1);
    REQUIRE(s->BeginKeyRotation(*KeyOf('2')).ok());
  }
  auto s = OpenWith(path, KeyOf('2'));
  CHECK(ReadAll(*s, xi) == x);
}

TEST_CASE("a tampered keyring is refused", "[keys]") {
  TempDir dir;
  std::string path = dir.path + "/store.db";
  {
    auto s = OpenWith(path, KeyOf('1'));
    WriteFile(*s, "x", RandomBytes(1000, 7));
    REQUIRE(s->Sync(true).ok());
  }
  std::string sealed = MetaText(path, "keyring");
  REQUIRE(sealed.size() > 200);
  sealed[sealed.size() - 100] ^= 1;
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &h) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(h, "UPDATE meta SET value=? WHERE key='keyring'", -1, &st, nullptr);
  sqlite3_bind_blob(st, 1, sealed.data(), int(sealed.size()), SQLITE_TRANSIENT);
  REQUIRE(sqlite3_step(st) == SQLITE_DONE);
  sqlite3_finalize(st);
  sqlite3_close(h);
  auto s = Store::Open(path, nullptr, KeyOf('1'));
  REQUIRE_FALSE(s.ok());
  CHECK(s.status().err() == EIO);
}

TEST_CASE("key rotation: rewrite moves every live chunk under the current key, then the old key "
          "retires; retiring is refused while a chunk needs the key", "[keys]") {
  TempDir dir;
  std::string path = dir.path + "/store.db";
  auto k1 = KeyOf('1'), k2 = KeyOf('2');
  std::string x = RandomBytes(3 << 20, 8), y = RandomBytes(1 << 20, 9);
  uint64_t xi = 0, yi = 0;
  {
    auto s = OpenWith(path, k1);
    xi = WriteFile(*s, "x", x);
    REQUIRE(s->Sync(true).ok());
    REQUIRE(s->BeginKeyRotation(*k2).ok());
  }
  {
    auto s = OpenWith(path, k2);
    yi = WriteFile(*s, "y", y);
    REQUIRE(s->Sync(true).ok());
    Status early = s->RetireKey(1);
    CHECK(early.err() == EBUSY);
    CHECK(early.message().find("musclefs key rewrite") != std::string::npos);
    CHECK(s->RetireKey(2).err() == EINVAL);  // the current one
  }
  uint64_t first = 0;
  {
    auto s = OpenWith(path, k2);
    first = s->keyring()->current().first;
    auto r = s->RewriteOldKeys();
    REQUIRE(r.ok());
    CHECK(r->packs_removed == 1);  // pack 1, the open one at the rotation
    CHECK(Count(path, ("SELECT count(*) FROM chunks WHERE pack<" + std::to_string(first)).c_str()) == 0);
    REQUIRE(s->RetireKey(1).ok());
    CHECK_FALSE(s->keyring()->generations()[0].key);
    CHECK(ReadAll(*s, xi) == x);
    RequireClean(*s);
  }
  // Reopened: the keyring holds no generation-1 key, and everything reads.
  auto s = OpenWith(path, k2);
  CHECK_FALSE(s->keyring()->generations()[0].key);
  CHECK(s->keyring()->generations()[0].id == crypto::KeyIdOf(*k1));
  CHECK(ReadAll(*s, xi) == x);
  CHECK(ReadAll(*s, yi) == y);
  RequireClean(*s);
  std::string id = MetaText(path, "store_id");
  for (const ChunkRow& c : Chunks(path)) {
    CHECK(c.pack >= first);
    CHECK(OpenOnDisk(dir.path, id, c.pack, c.offset, c.size, c.hash, *k2).ok());
  }
}

TEST_CASE("key rotation: a store whose chunks are in a bucket refuses it and stays as it was", "[keys]") {
  TempDir dir;
  auto bucket = std::make_shared<s3::DirObjectStore>(dir.path + "/bucket");
  BucketPackStore::Options o;
  o.retry_first_s = 0.01;
  auto s = Store::Open(dir.path + "/store.db",
                       std::make_unique<BucketPackStore>(bucket, dir.path + "/cache", o), KeyOf('1'));
  INFO(s.status().ToString());
  REQUIRE(s.ok());
  uint64_t x = WriteFile(**s, "x", RandomBytes(1000, 11));
  REQUIRE((*s)->Sync(true).ok());
  Status r = (*s)->BeginKeyRotation(*KeyOf('2'));
  CHECK(r.err() == ENOTSUP);
  CHECK(MetaText(dir.path + "/store.db", "keyring_next").empty());
  CHECK(ReadAll(**s, x) == RandomBytes(1000, 11));
}
