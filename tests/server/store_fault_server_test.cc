// The server over a failing disk: I/O errors and a full disk injected under
// SQLite (store/vfs.h) while clients work. Fsync reports the failure, work
// that was rolled back answers ESTALE (never another file's data), and once
// the fault clears the server serves again by itself, Tattach included.
#include <fcntl.h>
#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "9p/client.h"
#include "store/store.h"
#include "store/vfs.h"
#include "tests/server/server_harness.h"

using namespace muscle;
using namespace muscle::p9;
using namespace muscle::test;

TEST_CASE("a failing disk under the server: fsync reports it, nothing stale is reachable, service resumes") {
  int went_stale = 0;
  struct Case {
    int error, ops;
  };
  for (Case k : {Case{SQLITE_IOERR_FSYNC, store::vfs::kSync}, Case{SQLITE_FULL, store::vfs::kSync},
                 Case{SQLITE_IOERR_WRITE, store::vfs::kWrite}, Case{SQLITE_FULL, store::vfs::kWrite}}) {
    int error = k.error;
    INFO("injected SQLite error " << error << " on ops " << k.ops);
    TempDir dir;
    std::string store = dir.path + "/store.db";
    std::string kept = RandomBytes(3 << 20, 1);
    {
      // No background commit may take the doomed file in before the fault
      // (a slow machine, ASan): only the Tfsync below commits.
      InProcessServer srv(store, dir.path, p9::kMaxMsize, std::chrono::hours(1));
      Client c;
      REQUIRE(c.Connect(srv.unix_endpoint()).ok());
      REQUIRE(c.Version(1 << 20).ok());
      REQUIRE(c.Attach(0).ok());
      // A file made durable before the fault.
      REQUIRE(c.Walk(0, 1, {}).ok());
      REQUIRE(c.Create(1, "kept", O_RDWR, 0644).ok());
      REQUIRE(c.WriteAll(1, kept).ok());
      REQUIRE(c.Fsync(1).ok());
      // A file whose creation will never be committed; fid 2 keeps it.
      REQUIRE(c.Walk(0, 2, {}).ok());
      REQUIRE(c.Create(2, "doomed", O_RDWR, 0644).ok());
      REQUIRE(c.WriteAll(2, RandomBytes(1 << 20, 2)).ok());

      std::string doomed = RandomBytes(1 << 20, 2);
      store::vfs::InjectFault(k.ops, 1, error, true);
      CHECK_FALSE(c.Fsync(2).ok());
      CHECK(store::vfs::FaultFired());
      store::vfs::ClearFault();

      // Either the failure cost the transaction (the file is gone: its fid is
      // stale, and new files get new inode numbers the stale fid never
      // reaches), or only the flush was undone (the file and its data are
      // still there). Never anything in between.
      auto stale = c.GetAttr(2);
      bool gone = stale.err() == ESTALE;
      went_stale += gone;
      if (!gone) {
        REQUIRE(stale.ok());
        CHECK(stale->size == doomed.size());
        auto back = c.Read(2, 0, 1 << 16);
        REQUIRE(back.ok());
        CHECK(*back == doomed.substr(0, 1 << 16));
      }
      auto attach = [&] {
        Client d;
        return d.Connect(srv.unix_endpoint()).ok() && d.Version(1 << 20).ok() && d.Attach(0).ok();
      };
      CHECK(attach());
      // The server takes writes again by itself (a full disk's low-space
      // mode ends once Tick finds room).
      bool wrote = false;
      for (int i = 0; i < 50 && !wrote; i++) {
        c.Clunk(3);
        REQUIRE(c.Walk(0, 3, {}).ok());
        auto q = c.Create(3, "after" + std::to_string(i), O_RDWR, 0644);
        wrote = q.ok() && c.WriteAll(3, "new data").ok() && c.Fsync(3).ok();
        if (!wrote) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      CHECK(wrote);
      if (gone) CHECK(c.Write(2, 0, "through a stale fid").err() == ESTALE);
      REQUIRE(c.WalkPath(0, 4, "kept").ok());
      REQUIRE(c.Open(4, O_RDONLY).ok());
      auto data = c.ReadAll(4);
      REQUIRE(data.ok());
      CHECK(*data == kept);
      CHECK(c.Clunk(2).ok());
      srv.Stop();
    }
    auto s = store::Store::Open(store);
    REQUIRE(s.ok());
    auto report = (*s)->Check();
    for (auto& p : report.problems) FAIL_CHECK(p);
  }
  CHECK(went_stale >= 2);
}
