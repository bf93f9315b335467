// Flushing ahead (Store::FlushAhead, store/precut.h): a sequential stream's
// chunks are cut and hashed by a helper as the appends arrive, and the
// worker flushes them between requests. Nothing on disk may differ from a
// single pass, reads must see every byte written at every moment, and a
// failed flush ahead must leave the buffer as it was.
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <random>

#include "store/sqlite.h"
#include "store/store.h"
#include "store/vfs.h"
#include "tests/store/store_test_util.h"

using namespace muscle;
using namespace muscle::store;
using namespace muscle::test;

namespace {

// FlushAhead once the helper has cut enough (it runs on its own thread).
bool FlushAheadSoon(Store& s) {
  for (int i = 0; i < 3000; i++) {
    if (s.FlushAhead()) return true;
    usleep(1000);
  }
  return false;
}

}  // namespace

TEST_CASE("flush ahead: a stream flushed between its writes chunks like one pass and reads back") {
  TempDir dir;
  std::string path = dir.path + "/s.db";
  auto s = OpenStore(path);
  std::string data = RandomBytes(24 << 20, 11);
  auto a = s->Create(kRootIno, "a", S_IFREG | 0644, 0, 0);
  auto b = s->Create(kRootIno, "b", S_IFREG | 0644, 0, 0);
  REQUIRE(s->Write(a->ino, 0, data).ok());
  REQUIRE(s->Sync(true).ok());
  int64_t chunks = Count(path, "SELECT count(*) FROM chunks");
  // b as a client streams it: 64 KiB appends, flushed ahead every 3 MiB.
  int ahead = 0;
  for (size_t off = 0; off < data.size(); off += 65536) {
    REQUIRE(s->Write(b->ino, off, std::string_view(data).substr(off, 65536)).ok());
    if ((off + 65536) % (3 << 20) == 0) {
      if (FlushAheadSoon(*s)) ahead++;
      // Every byte so far reads back, across the flushed prefix and the
      // buffer that is left.
      std::string part;
      REQUIRE(s->Read(b->ino, 0, uint32_t(off + 65536), part).ok());
      REQUIRE(part == data.substr(0, off + 65536));
    }
  }
  CHECK(ahead >= 4);
  REQUIRE(s->Sync(true).ok());
  CHECK(ReadAll(*s, b->ino) == data);
  // The same chunks as the single pass: all of b's are a's.
  CHECK(Count(path, "SELECT count(*) FROM chunks") == chunks);
  CHECK(Count(path, "SELECT min(refs) FROM chunks") == 2);
  auto r = s->Check();
  for (auto& p : r.problems) FAIL_CHECK(p);
}

TEST_CASE("flush ahead: a failed flush keeps the buffer; the data survives to the next commit") {
  TempDir dir;
  std::string path = dir.path + "/s.db";
  auto s = OpenStore(path);
  std::string data = RandomBytes(6 << 20, 12);
  auto f = s->Create(kRootIno, "f", S_IFREG | 0644, 0, 0);
  REQUIRE(s->Sync(true).ok());
  for (size_t off = 0; off < (4u << 20); off += 65536)
    REQUIRE(s->Write(f->ino, off, std::string_view(data).substr(off, 65536)).ok());
  // Let the helper cut, then fail the flush's first pack write.
  usleep(200000);
  vfs::InjectFault(vfs::kWrite, 1, SQLITE_IOERR_WRITE, false);
  CHECK(!s->FlushAhead());
  CHECK(vfs::FaultFired());
  vfs::ClearFault();
  std::string part;
  REQUIRE(s->Read(f->ino, 0, 4u << 20, part).ok());
  CHECK(part == data.substr(0, 4u << 20));
  // The stream goes on and flushes ahead after all.
  for (size_t off = 4u << 20; off < data.size(); off += 65536)
    REQUIRE(s->Write(f->ino, off, std::string_view(data).substr(off, 65536)).ok());
  CHECK(FlushAheadSoon(*s));
  REQUIRE(s->Sync(true).ok());
  s.reset();
  s = OpenStore(path);
  CHECK(ReadAll(*s, f->ino) == data);
  auto r = s->Check();
  for (auto& p : r.problems) FAIL_CHECK(p);
}
