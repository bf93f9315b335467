// Event loops beside the main one, so that connections whose CPU cost is
// their own (TLS records) run on every core instead of one.
//
// A Mailbox runs closures on one loop's thread: Post may be called from any
// thread; the closures run on the loop, in the order posted. The thread
// running a loop may name its mailbox as the current one (SetCurrent), so
// that work handed to another thread (the store worker) can send its
// completion back to the loop that asked for it.
//
// A LoopThread is a libuv loop on a thread of its own with a mailbox (the
// "loop" threads of common/threads.h).
// Lifetime: Start, then Stop from another thread: Stop runs what was
// posted, closes every handle still open on that loop, joins the thread.
// Objects living on the loop must be gone (closed through its mailbox)
// before Stop, or are closed as handles are.
#pragma once

#include <uv.h>

#include <functional>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "common/thread_annotations.h"

namespace muscle::server {

class Mailbox {
 public:
  using Task = std::function<void()>;
  // Registers on `loop`; call on the loop's thread (or before it runs).
  explicit Mailbox(uv_loop_t* loop);
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  void Post(Task task) EXCLUDES(mu_);
  // Closes the handle (on the loop thread); `closed` runs afterwards.
  void Close(std::function<void()> closed = nullptr);
  uv_loop_t* loop() const { return loop_; }
  bool Owns(const uv_handle_t* h) const { return h == reinterpret_cast<const uv_handle_t*>(&async_); }

  // The mailbox of the calling thread's loop, if it named one.
  static Mailbox* Current();
  static void SetCurrent(Mailbox* m);

 private:
  ~Mailbox() = default;
  static void OnAsync(uv_async_t* h);
  uv_loop_t* loop_;
  uv_async_t async_;
  Mutex mu_;
  std::vector<Task> tasks_ GUARDED_BY(mu_);
  std::function<void()> closed_;
};

class LoopThread {
 public:
  LoopThread();
  ~LoopThread();
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;

  void Start();
  // Runs `task` on this loop's thread.
  void Post(Mailbox::Task task) { mailbox_->Post(std::move(task)); }
  uv_loop_t* loop() { return &loop_; }
  Mailbox* mailbox() { return mailbox_; }
  // Ends the loop (see above) and joins its thread. Call from another thread.
  void Stop();

 private:
  uv_loop_t loop_;
  Mailbox* mailbox_;  // freed when its handle closes
  std::thread thread_;
};

}  // namespace muscle::server
