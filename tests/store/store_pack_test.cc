// Store format 2: chunk data in pack files. Torn tails, space given back on
// delete, compaction, and migration of a format-1 store made by the
// previous release (tests/store/fixtures/v1-store.db).
#include <sqlite3.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "store/sha256.h"
#include "store/sqlite.h"
#include "store/store.h"
#include "store/vfs.h"
#include "tests/store/store_test_util.h"

using namespace muscle;
using namespace muscle::store;
using namespace muscle::test;

namespace {

struct stat Stat(const std::string& p) {
  struct stat st {};
  REQUIRE(stat(p.c_str(), &st) == 0);
  return st;
}

std::string Hex(const std::string& data) {
  unsigned char h[32];
  Sha256(data.data(), data.size(), h);
  Hash hash;
  memcpy(hash.data(), h, 32);
  return HexOf(hash);
}

}  // namespace

TEST_CASE("packs: a tail past the last commit is cut at open; a short pack is reported") {
  TempDir base;
  std::string path = base.path + "/store.db";
  std::string data = RandomBytes(3 << 20, 1);
  uint64_t ino;
  {
    auto s = OpenStore(path);
    auto f = s->Create(kRootIno, "f", S_IFREG | 0644, 0, 0);
    ino = f->ino;
    REQUIRE(s->Write(ino, 0, data).ok());
    REQUIRE(s->Sync(true).ok());
  }
  uint64_t committed = uint64_t(Stat(PackPath(base.path, 1)).st_size);
  {
    // A torn append: half a record after the committed end.
    std::ofstream out(PackPath(base.path, 1), std::ios::app | std::ios::binary);
    out << RandomBytes(70000, 2);
  }
  {
    auto s = OpenStore(path);
    CHECK(uint64_t(Stat(PackPath(base.path, 1)).st_size) == committed);
    CHECK(ReadAll(*s, ino) == data);
    RequireClean(*s);
  }
  REQUIRE(truncate(PackPath(base.path, 1).c_str(), off_t(committed - 1000)) == 0);
  auto s = Store::Open(path);
  REQUIRE_FALSE(s.ok());
  CHECK(s.status().ToString().find("shorter than its committed") != std::string::npos);
}

TEST_CASE("packs: deleting data gives its space back; gc compacts and removes sparse packs") {
  TempDir base;
  std::string path = base.path + "/store.db";
  auto s = OpenStore(path);
  std::vector<std::string> files;
  for (int i = 0; i < 6; i++) {
    auto f = s->Create(kRootIno, "f" + std::to_string(i), S_IFREG | 0644, 0, 0);
    files.push_back(RandomBytes(8 << 20, 10 + i));
    REQUIRE(s->Write(f->ino, 0, files.back()).ok());
  }
  REQUIRE(s->Sync(true).ok());
  auto blocks = [&] {
    uint64_t n = 0;
    for (uint64_t id = 1; id < 20; id++) {
      struct stat st;
      if (stat(PackPath(base.path, id).c_str(), &st) == 0) n += uint64_t(st.st_blocks) * 512;
    }
    return n;
  };
  uint64_t full = blocks();
  CHECK(full >= (48u << 20));
  for (int i = 0; i < 6; i += 2) REQUIRE(s->Unlink(kRootIno, "f" + std::to_string(i), false).ok());
  REQUIRE(s->Sync(true).ok());
  uint64_t after_delete = blocks();
  INFO("allocated " << full << " -> " << after_delete);
  CHECK(after_delete < full - (20u << 20));  // holes punched for 24 MiB
  auto r = s->Check();
  CHECK(r.ok());
  CHECK(r.unreferenced_bytes >= (23u << 20));
  auto gc = s->CollectGarbage(true);
  REQUIRE(gc.ok());
  CHECK(gc->packs_removed >= 1);
  r = s->Check();
  for (auto& p : r.problems) FAIL_CHECK(p);
  CHECK(r.unreferenced_bytes < (9u << 20));
  for (int i = 1; i < 6; i += 2) {
    auto a = s->Lookup(kRootIno, "f" + std::to_string(i));
    REQUIRE(a.ok());
    CHECK(ReadAll(*s, a->ino) == files[size_t(i)]);
  }
  s.reset();
  s = OpenStore(path);
  RequireClean(*s);
}

TEST_CASE("format 1 stores made by the previous release are migrated at open") {
  TempDir base;
  std::string path = base.path + "/store.db";
  {
    std::ifstream in(MUSCLE_SOURCE_DIR "/tests/store/fixtures/v1-store.db", std::ios::binary);
    REQUIRE(in);
    std::ofstream out(path, std::ios::binary);
    out << in.rdbuf();
  }
  std::string numbers;
  for (int i = 1; i <= 20000; i++) numbers += std::to_string(i) + "\n";
  // Migrations cut short by I/O errors leave format 1, migrated next time.
  for (uint64_t n : {1, 4, 9}) {
    vfs::InjectFault(vfs::kWrite | vfs::kSync, n, SQLITE_IOERR_WRITE, true);
    auto s = Store::Open(path);
    bool fired = vfs::FaultFired();
    vfs::ClearFault();
    CHECK(fired);
    CHECK_FALSE(s.ok());
    Db db;
    REQUIRE(db.Open(path, true).ok());
    Stmt v(db, "SELECT value FROM meta WHERE key='schema'");
    REQUIRE(v.Step());
    CHECK(v.Int(0) == 1);
  }
  for (int round = 0; round < 2; round++) {  // the second open finds the current format
    auto s = OpenStore(path);
    auto docs = s->Lookup(kRootIno, "docs");
    REQUIRE(docs.ok());
    auto a = s->Lookup(docs->ino, "a.bin");
    auto copy = s->Lookup(docs->ino, "a-copy.bin");
    auto hello = s->Lookup(kRootIno, "hello.txt");
    auto nums = s->Lookup(kRootIno, "numbers.txt");
    REQUIRE((a.ok() && copy.ok() && hello.ok() && nums.ok()));
    CHECK(Hex(ReadAll(*s, a->ino)) == "576f6fdf25d7b9de060ee4215881c040f989a89eff3499647409d02cf1123b3a");
    CHECK(ReadAll(*s, copy->ino) == ReadAll(*s, a->ino));
    CHECK(ReadAll(*s, hello->ino) == "hello v1\n");
    CHECK(ReadAll(*s, nums->ino) == numbers);
    RequireClean(*s);
    // And it takes new data.
    auto f = s->Create(kRootIno, "new" + std::to_string(round), S_IFREG | 0644, 0, 0);
    REQUIRE(f.ok());
    REQUIRE(s->Write(f->ino, 0, "after migration").ok());
    REQUIRE(s->Sync(true).ok());
  }
  Db db;
  REQUIRE(db.Open(path, true).ok());
  Stmt v(db, "SELECT value FROM meta WHERE key='schema'");
  REQUIRE(v.Step());
  CHECK(v.Int(0) == kStoreFormat);
  CHECK(Stat(PackPath(base.path, 1)).st_size > 300000);
}

TEST_CASE("packs: a second store in the same directory is refused, not cleaned") {
  TempDir base;
  {
    auto a = OpenStore(base.path + "/a.db");
    auto f = a->Create(kRootIno, "f", S_IFREG | 0644, 0, 0);
    REQUIRE(a->Write(f->ino, 0, "a's data").ok());
    REQUIRE(a->Sync(true).ok());
  }
  auto b = Store::Open(base.path + "/b.db");
  REQUIRE_FALSE(b.ok());
  CHECK(b.status().ToString().find("belongs to another store") != std::string::npos);
  auto a = OpenStore(base.path + "/a.db");
  auto f = a->Lookup(kRootIno, "f");
  REQUIRE(f.ok());
  CHECK(ReadAll(*a, f->ino) == "a's data");
}
