// Runs read-only store work on a pool of threads, each with its own reader
// connection to the store (store::Store::OpenReader), so that reads and
// lookups do not queue behind the writer (server/store_worker.h): a
// WorkQueue (server/work_queue.h) whose threads are "store-reader" in
// common/threads.h.
//
// A job sees the last commit; whether its result may be used is for the
// job to decide with the writer's ReadGate (server/store_filesystem.cc
// does, and hands the request to the writer when it may not). Each job
// returns a completion that runs on the event-loop thread (through a
// uv_async handle), or null.
//
// Lifetime: Open and Stop() on the loop thread; the writer's Store must
// stay open until Stop() has returned. Stop() runs every queued job, joins
// the threads and closes the queue's mailbox; the object may be destroyed
// once the loop has run the close callback (Stop takes a callback for it).
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <vector>

#include "common/result.h"
#include "server/loop_thread.h"
#include "server/work_queue.h"
#include "store/store.h"

namespace muscle::server {

class ReaderPool {
 public:
  using Queue = WorkQueue<store::Store>;
  using Completion = Queue::Completion;
  using Job = Queue::Job;

  // `threads` reader connections to the store at `path`, whose writer
  // has `gate`. `chunks`, if not empty, holds one chunk reader per thread
  // (the writer's NewChunkReader); empty: each reads the pack directory.
  static Result<std::unique_ptr<ReaderPool>> Open(
      uv_loop_t* loop, const std::string& path, std::shared_ptr<store::ReadGate> gate, int threads,
      std::vector<std::unique_ptr<store::ChunkStore>> chunks = {});
  ~ReaderPool();
  ReaderPool(const ReaderPool&) = delete;
  ReaderPool& operator=(const ReaderPool&) = delete;

  // Queues a job for the first free thread. Called on any thread. The
  // completion runs on `reply_to`'s loop (another event loop's mailbox,
  // server/loop_thread.h), or on this pool's loop when null.
  void Run(Job job, Mailbox* reply_to = Mailbox::Current());
  // Finishes all jobs and stops the threads; `closed` runs on the loop
  // thread when the handle is closed.
  void Stop(std::function<void()> closed);

 private:
  ReaderPool() = default;

  std::vector<std::unique_ptr<store::Store>> readers_;  // one per thread, used there
  std::unique_ptr<Queue> queue_;                         // stops before readers_ go
};

}  // namespace muscle::server
