// A queue of jobs run on threads of their own, off the event loop, each
// job's completion sent back to a libuv loop: the one way the server hands
// work to other threads (LevelDB's Env::Schedule is the model). StoreWorker
// (one thread, the writer store) and ReaderPool (one thread per reader
// store) are built on it; common/threads.h lists the threads.
//
// Each thread has a context of its own (a store connection) that its jobs
// are given. Jobs run in the order queued; with one thread, one after the
// other. A job returns a completion, or null for none; the completion runs
// on the loop of the Mailbox (server/loop_thread.h) named when the job was
// queued, else on the queue's own mailbox, on the loop the queue was
// created on. Completions reach a loop only through a Mailbox.
//
// Between jobs a thread spins for `spin` (yielding), then sleeps; while
// idle it calls hooks.tick every `tick` (and, with tick_between_jobs,
// after a job when one is due, so that a steady stream of jobs does not
// starve it). hooks.idle is called when the queue is empty, before the
// thread spins; true means it did some work and the queue is looked at
// again. hooks.exit is the last thing a thread does.
//
// Lifetime and threading: create and Stop() on the loop thread; Run from
// any thread. Stop() runs every job queued, joins the threads, then runs
// the completions already posted to the queue's own mailbox and closes
// its handle; `closed` runs on the loop once it is closed, after which the
// queue may be destroyed. Mailboxes named by jobs must outlive Stop().
// The contexts must outlive the threads (Stop, or the destructor, which
// joins them without closing the handle).
#pragma once

#include <sched.h>
#include <uv.h>

#include <chrono>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/mutex.h"
#include "common/thread_annotations.h"
#include "common/threads.h"
#include "server/loop_thread.h"

namespace muscle::server {

template <typename Context>
class WorkQueue {
 public:
  using Completion = std::function<void()>;
  using Job = std::function<Completion(Context&)>;

  struct Options {
    std::string name;  // of its threads (common/threads.h)
    std::chrono::milliseconds tick{1000};
    bool tick_between_jobs = false;
    std::chrono::microseconds spin{0};
  };
  // Each runs on a queue thread with its context, without the queue's lock;
  // any may be empty.
  struct Hooks {
    std::function<bool(Context&)> idle;
    std::function<void(Context&)> tick;
    std::function<void(Context&)> before_job;
    std::function<void(Context&)> after_job;  // before its completion is sent
    std::function<void(Context&)> exit;
  };

  // One thread per context. Throws std::system_error when a thread cannot
  // be started (as std::thread does).
  WorkQueue(uv_loop_t* loop, Options options, Hooks hooks, std::vector<Context*> contexts)
      : options_(std::move(options)), hooks_(std::move(hooks)), mailbox_(new Mailbox(loop)) {
    for (Context* c : contexts)
      threads_.push_back(StartThread(options_.name, [this, c] { ThreadMain(*c); }));
  }
  ~WorkQueue() { Join(); }
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Queues a job. Thread-safe. `reply_to` null: the queue's own mailbox.
  void Run(Job job, Mailbox* reply_to) EXCLUDES(mu_) {
    {
      MutexLock l(&mu_);
      jobs_.push_back(Queued{std::move(job), reply_to});
    }
    cv_.Signal();
  }

  // See the top of this file.
  void Stop(std::function<void()> closed) EXCLUDES(mu_) {
    Join();
    if (mailbox_) mailbox_->Close(std::move(closed));
    mailbox_ = nullptr;  // freed when its handle closes
  }

 private:
  struct Queued {
    Job job;
    Mailbox* reply_to;
  };

  void Join() EXCLUDES(mu_) {
    {
      MutexLock l(&mu_);
      stopping_ = true;
    }
    cv_.SignalAll();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }

  bool Waiting() EXCLUDES(mu_) {
    MutexLock l(&mu_);
    return jobs_.empty() && !stopping_;
  }

  void ThreadMain(Context& ctx) EXCLUDES(mu_) {
    using Clock = std::chrono::steady_clock;
    auto last_tick = Clock::now();
    auto tick = [&] {
      last_tick = Clock::now();
      if (hooks_.tick) hooks_.tick(ctx);
    };
    for (;;) {
      if (hooks_.idle && Waiting() && hooks_.idle(ctx)) continue;
      Queued q;
      bool have = false, stop = false;
      {
        MutexLock l(&mu_);
        if (jobs_.empty() && !stopping_) {
          // Yielding, so that other threads on this core still run.
          auto until = Clock::now() + options_.spin;
          while (jobs_.empty() && !stopping_ && Clock::now() < until) {
            l.Unlock();
            sched_yield();
            l.Lock();
          }
        }
        if (jobs_.empty() && !stopping_) {
          auto deadline = Clock::now() + options_.tick;
          while (jobs_.empty() && !stopping_ && cv_.WaitUntil(&mu_, deadline)) {
          }
        }
        if (!jobs_.empty()) {
          q = std::move(jobs_.front());
          jobs_.pop_front();
          have = true;
        } else {
          stop = stopping_;  // and every job done
        }
      }
      if (!have) {
        if (stop) break;
        tick();
        continue;
      }
      if (hooks_.before_job) hooks_.before_job(ctx);
      Completion c = q.job(ctx);
      q.job = nullptr;  // what it holds goes here, not on the loop
      if (hooks_.after_job) hooks_.after_job(ctx);
      if (c) (q.reply_to ? q.reply_to : mailbox_)->Post(std::move(c));
      if (options_.tick_between_jobs && Clock::now() - last_tick >= options_.tick) tick();
    }
    if (hooks_.exit) hooks_.exit(ctx);
  }

  const Options options_;
  const Hooks hooks_;
  Mailbox* mailbox_;  // the queue's own; set before the threads start, until Stop
  std::vector<std::thread> threads_;
  Mutex mu_;
  CondVar cv_;
  std::deque<Queued> jobs_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
};

}  // namespace muscle::server
