#include "server/store_worker.h"

#include "common/log.h"

namespace muscle::server {

namespace {
// Stay awake this long after a job before sleeping: a client waiting for
// each reply sends its next request within tens of microseconds, and
// waking a sleeping thread costs about as much again (more in a VM).
// Measured here (unix socket, one connection, three runs each): getattr
// 3,068-4,661 -> 5,762-8,037/s, smallfiles 862-1,083 -> 1,619-1,869/s;
// 8 and 64 connections unchanged within noise.
constexpr auto kSpinBeforeSleep = std::chrono::microseconds(100);

// Store::Tick at least this often, between jobs or while idle.
std::chrono::milliseconds TickOf(const store::Store& s) {
  auto tick = std::min<std::chrono::milliseconds>(s.commit_interval / 2,
                                                  std::chrono::milliseconds(200));
  if (tick.count() <= 0) tick = std::chrono::milliseconds(10);
  return tick;
}
}  // namespace

StoreWorker::StoreWorker(uv_loop_t* loop, std::unique_ptr<store::Store> store,
                         std::function<void(store::Store&)> on_tick)
    : store_(std::move(store)),
      gate_(store_->gate()),
      redo_(store_->redo()),
      on_tick_(std::move(on_tick)),
      queue_(loop,
             Queue::Options{.name = "store-writer",
                            .tick = TickOf(*store_),
                            .tick_between_jobs = true,
                            .spin = kSpinBeforeSleep},
             Queue::Hooks{
                 // Nothing waiting: flush ahead what a writer streamed in
                 // (no request waits for it now).
                 .idle =
                     [this](store::Store& s) {
                       busy_.fetch_add(1, std::memory_order_relaxed);
                       bool flushed = s.FlushAhead();
                       busy_.fetch_sub(1, std::memory_order_relaxed);
                       return flushed;
                     },
                 // Under a steady stream of jobs the queue is never empty,
                 // so commits are also due between jobs, not only when idle.
                 .tick =
                     [this](store::Store& s) {
                       busy_.fetch_add(1, std::memory_order_relaxed);
                       Status st = s.Tick();
                       if (on_tick_) on_tick_(s);
                       busy_.fetch_sub(1, std::memory_order_relaxed);
                       if (!st.ok())
                         Log("store: background commit failed: %s", st.ToString().c_str());
                     },
                 .after_job =
                     [this](store::Store& s) {
                       // On a full disk a delete frees its space at once.
                       Status st = s.CommitIfFreeing();
                       if (!st.ok()) Log("store: commit after a delete failed: %s", st.ToString().c_str());
                       busy_.fetch_sub(1, std::memory_order_relaxed);
                     },
                 .exit =
                     [this](store::Store& s) {
                       Status st = s.Sync(true);
                       if (!st.ok()) Log("store: final commit failed: %s", st.ToString().c_str());
                       store_.reset();
                     },
             },
             {store_.get()}) {}

StoreWorker::~StoreWorker() = default;

void StoreWorker::Run(Job job, Mailbox* reply_to) {
  busy_.fetch_add(1, std::memory_order_relaxed);
  queue_.Run(std::move(job), reply_to);
}

void StoreWorker::Stop(std::function<void()> closed) { queue_.Stop(std::move(closed)); }

}  // namespace muscle::server
