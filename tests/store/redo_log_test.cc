// The redo log's file (store/redo_log.h): groups read back in order, a
// write logged ahead of the store kept across a commit until the store has
// taken it, and the records' encoding failing whole on a short payload.
// (Replay through the store: store_failure_test.cc.)
#include "store/redo_log.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "tests/test_util.h"

using namespace muscle;
using namespace muscle::store;
using namespace muscle::test;

namespace {

RedoBatch Batch(uint64_t n, std::string_view data) {
  RedoBatch b;
  b.Begin(1);
  b.Put64(n);
  b.PutData(data);
  b.PutString("tail");
  return b;
}

std::vector<std::string> Groups(const std::string& path, uint64_t commit) {
  std::vector<std::string> out;
  REQUIRE(RedoLog::ForEachGroup(path, commit, [&](std::string_view p) {
    RedoReader r(p);
    CHECK(r.Get8() == 1);
    uint64_t n = r.Get64();
    std::string data(r.GetString());
    std::string tail(r.GetString());
    std::string s = std::to_string(n) + ":" + data + ":" + tail;
    CHECK(r.ok());
    CHECK(r.done());
    out.push_back(s);
    return Status::Ok();
  }).ok());
  return out;
}

}  // namespace

TEST_CASE("redo log: groups come back in order; a write logged ahead outlives commits until taken") {
  TempDir dir;
  std::string path = dir.path + "/store.db-redo";
  auto log = RedoLog::Open(path, 5, dir.path);
  REQUIRE(log.ok());
  REQUIRE((*log)->Append(Batch(1, "one")).ok());
  std::string big(100000, 'x');  // not copied: lives until Taken
  REQUIRE((*log)->AppendAhead(7, Batch(2, big)).ok());
  REQUIRE((*log)->Append(Batch(3, "")).ok());
  auto g = Groups(path, 5);
  REQUIRE(g.size() == 3);
  CHECK(g[0] == "1:one:tail");
  CHECK(g[1] == "2:" + std::string(100000, 'x') + ":tail");
  CHECK(g[2] == "3::tail");
  CHECK(Groups(path, 4).empty());  // another commit's
  // Commit 6 included 1 and 3, not the write the store has not taken.
  REQUIRE((*log)->Reset(6).ok());
  g = Groups(path, 6);
  REQUIRE(g.size() == 1);
  CHECK(g[0].substr(0, 2) == "2:");
  CHECK(Groups(path, 5).empty());
  (*log)->Taken(7);
  REQUIRE((*log)->Reset(7).ok());
  CHECK(Groups(path, 7).empty());
  CHECK((*log)->size() == 0);
}

TEST_CASE("redo log: a record read past its group's end fails the whole group") {
  RedoBatch b = Batch(9, "data");
  std::string p = b.Flatten();
  RedoReader whole(p);
  whole.Get8();
  whole.Get64();
  CHECK(whole.GetString() == "data");
  CHECK(whole.GetString() == "tail");
  CHECK(whole.ok());
  RedoReader cut(std::string_view(p).substr(0, p.size() - 2));
  cut.Get8();
  cut.Get64();
  cut.GetString();
  CHECK(cut.GetString().empty());
  CHECK_FALSE(cut.ok());
}
