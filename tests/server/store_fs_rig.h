// A writer, a reader pool and the file system over them on a private
// loop, for tests that drive StoreFileSystem as a session would (requests
// by inode, replies on the loop). Test code only; one thread (the test's)
// runs the loop.
#pragma once

#include <uv.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "server/reader_pool.h"
#include "server/store_filesystem.h"
#include "server/store_worker.h"
#include "store/store.h"
#include "tests/test_util.h"

namespace muscle::test {

using store::Store;
using store::kRootIno;
using namespace std::chrono_literals;

// A writer, a reader pool and the file system over them on a private loop.
struct Rig {
  TempDir base;
  uv_loop_t loop;
  std::unique_ptr<server::StoreWorker> worker;
  std::unique_ptr<server::ReaderPool> readers;
  std::unique_ptr<server::StoreFileSystem> fs;

  // `tune` sees the writer's store before the worker takes it;
  // `write_ahead` as StoreFileSystem's; `dir`: where the store is (default:
  // `base`), for a test that opens it again after this rig is gone.
  explicit Rig(std::function<void(Store&)> tune = nullptr,
               size_t write_ahead = server::WriteAhead::kDefaultLimit, std::string dir = "") {
    uv_loop_init(&loop);
    std::string path = (dir.empty() ? base.path : dir) + "/store.db";
    auto w = Store::Open(path);
    REQUIRE(w.ok());
    if (tune) tune(**w);
    worker = std::make_unique<server::StoreWorker>(&loop, std::move(*w));
    auto r = server::ReaderPool::Open(&loop, path, worker->gate(), 2);
    REQUIRE(r.ok());
    readers = std::move(*r);
    fs = std::make_unique<server::StoreFileSystem>(*worker, readers.get(), nullptr, write_ahead);
  }
  ~Rig() {
    ReleaseWriter();  // a test that failed while holding it
    bool closed = false;
    readers->Stop([&] { worker->Stop([&] { closed = true; }); });
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(closed);
    CHECK(uv_loop_close(&loop) == 0);
  }

  // Submits without running the loop: pipelined, as a session sends.
  void Send(p9::Message m, uint64_t ino, std::function<void(p9::FsReply)> done, uint64_t ino2 = 0) {
    p9::FsRequest req;
    req.msg = std::move(m);
    req.ino = ino;
    req.ino2 = ino2;
    req.root_ino = kRootIno;
    fs->Submit(std::move(req), std::move(done));
  }
  // Runs the loop (replies are delivered there) until `done` holds or
  // `limit` passes.
  void RunUntil(const std::function<bool()>& done, std::chrono::milliseconds limit) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < until) {
      uv_run(&loop, UV_RUN_NOWAIT);
      std::this_thread::sleep_for(1ms);
    }
  }
  // Submits and runs the loop until the reply comes (or `limit` passes).
  std::optional<p9::FsReply> Call(p9::Message m, uint64_t ino, std::chrono::milliseconds limit = 5s) {
    std::optional<p9::FsReply> got;
    Send(std::move(m), ino, [&](p9::FsReply r) { got = std::move(r); });
    RunUntil([&] { return got.has_value(); }, limit);
    return got;
  }
  // Holds the writer thread up (a job of its own that waits) from when it
  // returns until ReleaseWriter: what is queued for the writer meanwhile
  // waits behind it.
  void HoldWriter() {
    worker->Run([this](Store&) -> server::StoreWorker::Completion {
      std::unique_lock<std::mutex> l(hold_mu);
      held = true;
      hold_cv.notify_all();
      hold_cv.wait(l, [&] { return released; });
      return nullptr;
    });
    std::unique_lock<std::mutex> l(hold_mu);
    hold_cv.wait(l, [&] { return held; });
  }
  void ReleaseWriter() {
    {
      std::lock_guard<std::mutex> l(hold_mu);
      released = true;
    }
    hold_cv.notify_all();
  }
  std::mutex hold_mu;
  std::condition_variable hold_cv;
  bool held = false, released = false;
  uint64_t WalkTo(const std::string& name) {
    auto r = Call(p9::Twalk{1, 2, {name}}, kRootIno);
    REQUIRE(r);
    auto* w = std::get_if<p9::Rwalk>(&r->msg);
    REQUIRE(w);
    REQUIRE(w->wqids.size() == 1);
    return w->wqids[0].path;
  }
};


}  // namespace muscle::test
