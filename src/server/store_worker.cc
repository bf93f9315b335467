#include "server/store_worker.h"

#include <sched.h>

#include "common/log.h"

namespace muscle::server {

StoreWorker::StoreWorker(uv_loop_t* loop, std::unique_ptr<store::Store> store)
    : loop_(loop), store_(std::move(store)), gate_(store_->gate()) {
  uv_async_init(loop_, &async_, OnAsync);
  async_.data = this;
  thread_ = std::thread([this] { ThreadMain(); });
}

StoreWorker::~StoreWorker() {
  if (thread_.joinable()) {
    {
      std::lock_guard<std::mutex> g(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
}

void StoreWorker::Run(Job job, Mailbox* reply_to) {
  busy_.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> g(mu_);
    jobs_.push_back(Queued{std::move(job), reply_to});
  }
  cv_.notify_one();
}

namespace {
// Stay awake this long after a job before sleeping: a client waiting for
// each reply sends its next request within tens of microseconds, and
// waking a sleeping thread costs about as much again (more in a VM).
// Measured here (unix socket, one connection, three runs each): getattr
// 3,068-4,661 -> 5,762-8,037/s, smallfiles 862-1,083 -> 1,619-1,869/s;
// 8 and 64 connections unchanged within noise.
constexpr auto kSpinBeforeSleep = std::chrono::microseconds(100);
}

void StoreWorker::ThreadMain() {
  auto tick = std::min<std::chrono::milliseconds>(store_->commit_interval / 2,
                                                  std::chrono::milliseconds(200));
  if (tick.count() <= 0) tick = std::chrono::milliseconds(10);
  auto last_tick = std::chrono::steady_clock::now();
  auto tick_now = [&] {
    last_tick = std::chrono::steady_clock::now();
    busy_.fetch_add(1, std::memory_order_relaxed);
    Status s = store_->Tick();
    busy_.fetch_sub(1, std::memory_order_relaxed);
    if (!s.ok()) Log("store: background commit failed: %s", s.ToString().c_str());
  };
  for (;;) {
    Queued job;
    {
      std::unique_lock<std::mutex> lk(mu_);
      if (jobs_.empty() && !stopping_) {
        // Nothing waiting: flush ahead what a writer streamed in (no
        // request waits for it now).
        lk.unlock();
        busy_.fetch_add(1, std::memory_order_relaxed);
        bool flushed = store_->FlushAhead();
        busy_.fetch_sub(1, std::memory_order_relaxed);
        lk.lock();
        if (flushed) continue;
      }
      if (jobs_.empty() && !stopping_) {
        // Yielding, so that other threads on this core still run.
        auto until = std::chrono::steady_clock::now() + kSpinBeforeSleep;
        while (jobs_.empty() && std::chrono::steady_clock::now() < until) {
          lk.unlock();
          sched_yield();
          lk.lock();
        }
      }
      if (jobs_.empty() && !stopping_) cv_.wait_for(lk, tick);
      if (jobs_.empty()) {
        if (stopping_) break;
        lk.unlock();
        tick_now();
        continue;
      }
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    Completion c = job.job(*store_);
    busy_.fetch_sub(1, std::memory_order_relaxed);
    if (job.reply_to) {
      job.reply_to->Post(c ? std::move(c) : Completion([] {}));
    } else {
      {
        std::lock_guard<std::mutex> g(mu_);
        done_.push_back(c ? std::move(c) : Completion([] {}));
      }
      uv_async_send(&async_);
    }
    // Under a steady stream of jobs the queue is never empty when the wait
    // ends, so commits are also due here, not only when idle.
    if (std::chrono::steady_clock::now() - last_tick >= tick) tick_now();
  }
  Status s = store_->Sync(true);
  if (!s.ok()) Log("store: final commit failed: %s", s.ToString().c_str());
  store_.reset();
}

void StoreWorker::OnAsync(uv_async_t* handle) {
  auto* self = static_cast<StoreWorker*>(handle->data);
  std::vector<Completion> batch;
  {
    std::lock_guard<std::mutex> g(self->mu_);
    batch.swap(self->done_);
  }
  for (auto& c : batch) c();
}

void StoreWorker::Stop(std::function<void()> closed) {
  {
    std::lock_guard<std::mutex> g(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  OnAsync(&async_);  // completions that arrived after the last wake-up
  closed_ = std::move(closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), [](uv_handle_t* h) {
    auto* self = static_cast<StoreWorker*>(h->data);
    if (self->closed_) self->closed_();
  });
}

}  // namespace muscle::server
