#include "server/loop_thread.h"

#include "common/threads.h"

namespace muscle::server {

namespace {
thread_local Mailbox* t_current = nullptr;
}

Mailbox::Mailbox(uv_loop_t* loop) : loop_(loop) {
  uv_async_init(loop_, &async_, OnAsync);
  async_.data = this;
}

Mailbox* Mailbox::Current() { return t_current; }
void Mailbox::SetCurrent(Mailbox* m) { t_current = m; }

void Mailbox::Post(Task task) {
  {
    MutexLock l(&mu_);
    tasks_.push_back(std::move(task));
  }
  uv_async_send(&async_);
}

void Mailbox::OnAsync(uv_async_t* h) {
  auto* self = static_cast<Mailbox*>(h->data);
  for (;;) {
    std::vector<Task> batch;
    {
      MutexLock l(&self->mu_);
      batch.swap(self->tasks_);
    }
    if (batch.empty()) return;
    for (auto& t : batch) t();
  }
}

void Mailbox::Close(std::function<void()> closed) {
  OnAsync(&async_);  // what was posted before
  closed_ = std::move(closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), [](uv_handle_t* h) {
    auto* self = static_cast<Mailbox*>(h->data);
    auto closed = std::move(self->closed_);
    delete self;
    if (closed) closed();
  });
}

LoopThread::LoopThread() {
  uv_loop_init(&loop_);
  mailbox_ = new Mailbox(&loop_);
}

LoopThread::~LoopThread() {
  if (thread_.joinable()) Stop();
}

void LoopThread::Start() {
  thread_ = StartThread("loop", [this] {
    Mailbox::SetCurrent(mailbox_);
    uv_run(&loop_, UV_RUN_DEFAULT);
    Mailbox::SetCurrent(nullptr);
  });
}

void LoopThread::Stop() {
  if (!thread_.joinable()) return;
  Post([this] {
    // Whatever is still open on this loop closes now; the loop then ends.
    uv_walk(
        &loop_,
        [](uv_handle_t* h, void* arg) {
          if (!uv_is_closing(h) && !static_cast<Mailbox*>(arg)->Owns(h)) uv_close(h, nullptr);
        },
        mailbox_);
    mailbox_->Close();
  });
  thread_.join();
  uv_loop_close(&loop_);
}

}  // namespace muscle::server
