// The store worker: commits happen on time however busy the server is.
#include <uv.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "server/store_worker.h"
#include "store/sqlite.h"
#include "tests/test_util.h"

using namespace muscle;
using namespace muscle::store;
using namespace std::chrono_literals;
using namespace muscle::test;

namespace {

// Committed rows, seen through a second connection (a WAL reader).
int64_t CommittedNamed(const std::string& path, const char* name) {
  Db db;
  REQUIRE(db.Open(path, true).ok());
  Stmt q(db, "SELECT count(*) FROM dirents WHERE name=?");
  q.Bind(1, name);
  REQUIRE(q.Step());
  return q.Int(0);
}

}  // namespace

TEST_CASE("the store worker commits within the interval under a steady stream of requests") {
  TempDir base;
  std::string path = base.path + "/store.db";
  auto st = Store::Open(path);
  REQUIRE(st.ok());
  (*st)->commit_interval = 300ms;
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    server::StoreWorker w(&loop, std::move(*st));
    w.Run([](Store& s) -> server::StoreWorker::Completion {
      REQUIRE(s.Create(kRootIno, "made", S_IFREG | 0644, 0, 0).ok());
      return nullptr;
    });
    // One getattr every 50 ms, as a polling client sends them.
    auto t0 = std::chrono::steady_clock::now();
    std::chrono::milliseconds seen_after = 10s;
    while (std::chrono::steady_clock::now() - t0 < 2s) {
      w.Run([](Store& s) -> server::StoreWorker::Completion {
        (void)s.GetAttr(kRootIno);
        return nullptr;
      });
      uv_run(&loop, UV_RUN_NOWAIT);
      std::this_thread::sleep_for(50ms);
      if (CommittedNamed(path, "made") == 1) {
        seen_after = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - t0);
        break;
      }
    }
    CHECK(seen_after <= 1000ms);
    bool closed = false;
    w.Stop([&] { closed = true; });
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(closed);
  }
  CHECK(uv_loop_close(&loop) == 0);
}
