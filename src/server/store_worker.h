// Runs all store work on one dedicated thread, off the event loop.
//
// The store is a single SQLite connection with one open write transaction,
// so its work is serialised on this thread in submission order. Each job
// returns a completion that runs on the event-loop thread (delivered through
// a uv_async handle). The worker calls Store::Tick at least every tick
// interval (between jobs), so buffered writes are committed within the
// store's commit interval whether the server is idle or busy.
//
// A job queued from another event loop's thread that named its mailbox
// (loop_thread.h) has its completion run on that loop instead; such loops
// must outlive Stop().
//
// Lifetime: create and Stop() on the loop thread. Stop() runs every queued
// job, commits durably, joins the thread and closes the async handle; the
// object may be destroyed once the loop has run the close callback (Stop
// takes a callback for that).
#pragma once

#include <uv.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "server/loop_thread.h"
#include "store/store.h"

namespace muscle::server {

class StoreWorker {
 public:
  using Completion = std::function<void()>;
  using Job = std::function<Completion(store::Store&)>;

  StoreWorker(uv_loop_t* loop, std::unique_ptr<store::Store> store);
  ~StoreWorker();
  StoreWorker(const StoreWorker&) = delete;
  StoreWorker& operator=(const StoreWorker&) = delete;

  // Queues a job. Called on the loop thread, on another loop's thread
  // (see above), or on a reader thread handing over a request it could
  // not answer (server/reader_pool.h). The completion runs on `reply_to`'s
  // loop (default: the calling thread's mailbox, else this worker's loop).
  // A null completion is allowed.
  void Run(Job job, Mailbox* reply_to = Mailbox::Current());
  // True when no job is queued or running and no commit is under way: a
  // read sent now is answered at once (the file system then prefers the
  // writer, whose thread is awake, to a reader). Thread-safe, a hint only.
  bool idle() const { return busy_.load(std::memory_order_relaxed) == 0; }
  // The store's gate for reader connections (null for an in-memory store).
  // Thread-safe; valid as long as this object.
  const std::shared_ptr<store::ReadGate>& gate() const { return gate_; }
  // Finishes all jobs, commits durably and stops the thread. `closed` runs
  // on the loop thread when the worker's handle is closed.
  void Stop(std::function<void()> closed);

 private:
  void ThreadMain();
  static void OnAsync(uv_async_t* handle);

  uv_loop_t* loop_;
  uv_async_t async_;
  std::unique_ptr<store::Store> store_;
  std::shared_ptr<store::ReadGate> gate_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  struct Queued {
    Job job;
    Mailbox* reply_to;  // null: this worker's own loop
  };
  std::deque<Queued> jobs_;
  std::atomic<int> busy_{0};  // jobs queued or running, plus 1 during a tick
  std::vector<Completion> done_;
  bool stopping_ = false;
  std::function<void()> closed_;
};

}  // namespace muscle::server
