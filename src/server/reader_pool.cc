#include "server/reader_pool.h"

#include <sched.h>

namespace muscle::server {

namespace {
// As the writer's (store_worker.cc): a client waiting for each reply sends
// the next request within tens of microseconds, sooner than a sleeping
// thread wakes in a VM.
constexpr auto kSpinBeforeSleep = std::chrono::microseconds(100);
constexpr auto kIdleTick = std::chrono::seconds(1);
}  // namespace

Result<std::unique_ptr<ReaderPool>> ReaderPool::Open(uv_loop_t* loop, const std::string& path,
                                                     std::shared_ptr<store::ReadGate> gate,
                                                     int threads) {
  std::unique_ptr<ReaderPool> p(new ReaderPool());
  for (int i = 0; i < threads; i++) {
    auto r = store::Store::OpenReader(path, gate);
    if (!r.ok()) return r.status();
    p->readers_.push_back(std::move(*r));
  }
  uv_async_init(loop, &p->async_, OnAsync);
  p->async_.data = p.get();
  for (auto& r : p->readers_) {
    store::Store* s = r.get();
    p->threads_.emplace_back([pool = p.get(), s] { pool->ThreadMain(*s); });
  }
  return p;
}

ReaderPool::~ReaderPool() { Join(); }

void ReaderPool::Join() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  readers_.clear();
}

void ReaderPool::Run(Job job, Mailbox* reply_to) {
  {
    std::lock_guard<std::mutex> g(mu_);
    jobs_.push_back(Queued{std::move(job), reply_to});
  }
  cv_.notify_one();
}

void ReaderPool::ThreadMain(store::Store& reader) {
  for (;;) {
    Queued job;
    {
      std::unique_lock<std::mutex> lk(mu_);
      if (jobs_.empty() && !stopping_) {
        auto until = std::chrono::steady_clock::now() + kSpinBeforeSleep;
        while (jobs_.empty() && !stopping_ && std::chrono::steady_clock::now() < until) {
          lk.unlock();
          sched_yield();
          lk.lock();
        }
      }
      // Woken now and then while idle to let go of removed packs.
      if (!cv_.wait_for(lk, kIdleTick, [&] { return stopping_ || !jobs_.empty(); })) {
        lk.unlock();
        reader.ReaderTick();
        continue;
      }
      if (jobs_.empty()) break;  // stopping, and every job done
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    reader.ReaderTick();
    Completion c = job.job(reader);
    if (!c) continue;
    if (job.reply_to) {
      job.reply_to->Post(std::move(c));
      continue;
    }
    {
      std::lock_guard<std::mutex> g(mu_);
      done_.push_back(std::move(c));
    }
    uv_async_send(&async_);
  }
}

void ReaderPool::OnAsync(uv_async_t* handle) {
  auto* self = static_cast<ReaderPool*>(handle->data);
  std::vector<Completion> batch;
  {
    std::lock_guard<std::mutex> g(self->mu_);
    batch.swap(self->done_);
  }
  for (auto& c : batch) c();
}

void ReaderPool::Stop(std::function<void()> closed) {
  Join();
  OnAsync(&async_);  // completions that arrived after the last wake-up
  closed_ = std::move(closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), [](uv_handle_t* h) {
    auto* self = static_cast<ReaderPool*>(h->data);
    if (self->closed_) self->closed_();
  });
}

}  // namespace muscle::server
