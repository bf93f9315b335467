// Runs all store work on one dedicated thread, off the event loop (a
// WorkQueue of one thread, server/work_queue.h; the thread is
// "store-writer" in common/threads.h).
//
// The store is a single SQLite connection with one open write transaction,
// so its work is serialised on this thread in submission order. Each job
// returns a completion that runs on the event-loop thread (delivered through
// the queue's Mailbox). The worker calls Store::Tick at least every tick
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
#include <functional>
#include <memory>

#include "server/loop_thread.h"
#include "server/work_queue.h"
#include "store/store.h"

namespace muscle::server {

class StoreWorker {
 public:
  using Queue = WorkQueue<store::Store>;
  using Completion = Queue::Completion;
  using Job = Queue::Job;

  // `on_tick`, if set, runs on the worker thread after each Store::Tick
  // (the metrics registry reads the store's figures there).
  StoreWorker(uv_loop_t* loop, std::unique_ptr<store::Store> store,
              std::function<void(store::Store&)> on_tick = nullptr);
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
  // The store's redo log, where a write answered before the store takes it
  // is logged first (null for an in-memory store). Thread-safe; valid as
  // long as this object.
  const std::shared_ptr<store::RedoLog>& redo() const { return redo_; }
  // Finishes all jobs, commits durably and stops the thread. `closed` runs
  // on the loop thread when the worker's handle is closed.
  void Stop(std::function<void()> closed);

 private:
  std::unique_ptr<store::Store> store_;  // used on the worker thread only
  std::shared_ptr<store::ReadGate> gate_;
  std::shared_ptr<store::RedoLog> redo_;
  std::atomic<int> busy_{0};  // jobs queued or running, plus 1 during a tick
  std::function<void(store::Store&)> on_tick_;  // set before the thread starts
  Queue queue_;               // last: its threads stop before the rest goes
};

}  // namespace muscle::server
