#include "tests/store/store_test_util.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <cstdio>

namespace muscle::test {

std::unique_ptr<store::Store> OpenStore(const std::string& path) {
  auto s = store::Store::Open(path);
  INFO(s.status().ToString());
  REQUIRE(s.ok());
  return std::move(*s);
}

std::string ReadAll(store::Tree& s, uint64_t ino) {
  auto a = s.GetAttr(ino);
  REQUIRE(a.ok());
  std::string out, part;
  for (uint64_t off = 0; off < a->size; off += part.size()) {
    REQUIRE(s.Read(ino, off, 1 << 20, part).ok());
    REQUIRE(!part.empty());
    out += part;
  }
  return out;
}

std::string PackPath(const std::string& dir, uint64_t id) {
  char name[32];
  snprintf(name, sizeof name, "/packs/%016llx.pack", (unsigned long long)id);
  return dir + name;
}

void RequireClean(store::Store& s) {
  auto r = s.Check();
  for (auto& p : r.problems) FAIL_CHECK(p);
}

uint64_t WriteFile(store::Store& s, const std::string& name, const std::string& data, uint64_t dir,
                   uint32_t mode, uint32_t uid) {
  auto f = s.Create(dir, name, S_IFREG | mode, uid, uid);
  INFO(f.status().ToString());
  REQUIRE(f.ok());
  for (size_t off = 0; off < data.size(); off += 1 << 20) {
    auto n = s.Write(f->ino, off, std::string_view(data).substr(off, 1 << 20));
    REQUIRE(n.ok());
  }
  return f->ino;
}

std::shared_ptr<const crypto::MasterKey> KeyOf(char fill) {
  auto k = crypto::MasterKey::FromBytes(std::string(32, fill));
  REQUIRE(k.ok());
  return std::make_shared<const crypto::MasterKey>(std::move(*k));
}

int64_t Count(const std::string& db, const char* sql) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(h, sql, -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(h);
  return v;
}

}  // namespace muscle::test
