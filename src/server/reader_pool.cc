#include "server/reader_pool.h"

namespace muscle::server {

namespace {
// As the writer's (store_worker.cc): a client waiting for each reply sends
// the next request within tens of microseconds, sooner than a sleeping
// thread wakes in a VM.
constexpr auto kSpinBeforeSleep = std::chrono::microseconds(100);
// Woken now and then while idle to let go of removed packs.
constexpr auto kIdleTick = std::chrono::seconds(1);
}  // namespace

Result<std::unique_ptr<ReaderPool>> ReaderPool::Open(
    uv_loop_t* loop, const std::string& path, std::shared_ptr<store::ReadGate> gate, int threads,
    std::vector<std::unique_ptr<store::ChunkStore>> chunks) {
  if (!chunks.empty() && chunks.size() != size_t(threads))
    return Status(EINVAL, "a chunk reader per reader thread, or none");
  std::unique_ptr<ReaderPool> p(new ReaderPool());
  std::vector<store::Store*> contexts;
  for (int i = 0; i < threads; i++) {
    auto r = store::Store::OpenReader(path, gate, chunks.empty() ? nullptr : std::move(chunks[i]));
    if (!r.ok()) return r.status();
    p->readers_.push_back(std::move(*r));
    contexts.push_back(p->readers_.back().get());
  }
  auto tick = [](store::Store& reader) { reader.ReaderTick(); };
  p->queue_ = std::make_unique<Queue>(
      loop, Queue::Options{.name = "store-reader", .tick = kIdleTick, .spin = kSpinBeforeSleep},
      Queue::Hooks{.tick = tick, .before_job = tick}, std::move(contexts));
  return p;
}

ReaderPool::~ReaderPool() { queue_.reset(); }

void ReaderPool::Run(Job job, Mailbox* reply_to) { queue_->Run(std::move(job), reply_to); }

void ReaderPool::Stop(std::function<void()> closed) {
  queue_->Stop(std::move(closed));
  readers_.clear();
}

}  // namespace muscle::server
