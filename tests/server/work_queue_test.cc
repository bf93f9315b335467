// The work queue (server/work_queue.h): jobs in order on threads of their
// own, Stop runs every queued job, completions on the loop that asked
// (through its Mailbox), and nothing left open on the loop afterwards.
#include <uv.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "server/loop_thread.h"
#include "server/work_queue.h"

using namespace muscle;
using namespace muscle::server;
using namespace std::chrono_literals;

namespace {

// A queue thread's own state: what its jobs did, in their order.
struct Context {
  std::vector<int> ran;  // touched by this context's thread only
  std::thread::id thread;
};
using Queue = WorkQueue<Context>;

// Runs `loop` until `done` or 10 s have passed.
void RunUntil(uv_loop_t* loop, const std::function<bool()>& done) {
  auto until = std::chrono::steady_clock::now() + 10s;
  while (!done() && std::chrono::steady_clock::now() < until) {
    uv_run(loop, UV_RUN_NOWAIT);
    std::this_thread::sleep_for(1ms);
  }
}

// Stops `q` and runs `loop` until the closed callback ran; then the loop
// must have nothing left open.
void StopAndClose(Queue& q, uv_loop_t* loop) {
  bool closed = false;
  q.Stop([&] { closed = true; });
  RunUntil(loop, [&] { return closed; });
  CHECK(closed);
  CHECK(uv_loop_close(loop) == 0);  // UV_EBUSY while a handle is open
}

}  // namespace

TEST_CASE("a one-thread work queue runs jobs and completions in the order queued") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  Context ctx;
  Queue q(&loop, Queue::Options{.name = "test-queue"}, {}, {&ctx});
  std::vector<int> completed;
  constexpr int kJobs = 200;
  for (int i = 0; i < kJobs; i++)
    q.Run(
        [i, &completed](Context& c) -> Queue::Completion {
          c.ran.push_back(i);
          c.thread = std::this_thread::get_id();
          return [i, &completed] { completed.push_back(i); };
        },
        nullptr);
  RunUntil(&loop, [&] { return int(completed.size()) == kJobs; });
  REQUIRE(int(completed.size()) == kJobs);
  for (int i = 0; i < kJobs; i++) CHECK(completed[i] == i);
  StopAndClose(q, &loop);
  // After Stop the thread is joined: its context may be read here.
  REQUIRE(int(ctx.ran.size()) == kJobs);
  for (int i = 0; i < kJobs; i++) CHECK(ctx.ran[i] == i);
  CHECK(ctx.thread != std::this_thread::get_id());
}

TEST_CASE("Stop runs every queued job and its completion before the handle closes") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::vector<Context> contexts(3);
  std::vector<Context*> ptrs;
  for (auto& c : contexts) ptrs.push_back(&c);
  int exits = 0;
  std::mutex exits_mu;
  Queue q(&loop, Queue::Options{.name = "test-queue"},
          Queue::Hooks{.exit = [&](Context&) {
            std::lock_guard<std::mutex> g(exits_mu);
            exits++;
          }},
          ptrs);
  // The threads are held up until every job is queued and Stop called.
  std::promise<void> go;
  std::shared_future<void> started = go.get_future().share();
  std::atomic<int> ran{0};
  int completed = 0;
  constexpr int kJobs = 100;
  for (int i = 0; i < kJobs; i++)
    q.Run(
        [started, &ran, &completed](Context&) -> Queue::Completion {
          started.wait();
          ran++;
          return [&completed] { completed++; };
        },
        nullptr);
  // A job without a completion is run too.
  q.Run([&ran](Context&) -> Queue::Completion {
    ran++;
    return nullptr;
  }, nullptr);
  std::thread release([&] {
    std::this_thread::sleep_for(50ms);
    go.set_value();
  });
  bool closed = false;
  q.Stop([&] { closed = true; });  // waits for the jobs: released meanwhile
  release.join();
  CHECK(ran == kJobs + 1);
  CHECK(completed == kJobs);  // run by Stop, before the handle closes
  CHECK(!closed);             // closing ends on the loop
  CHECK(exits == 3);
  RunUntil(&loop, [&] { return closed; });
  CHECK(closed);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("a completion runs on the loop whose mailbox queued the job") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  Context ctx;
  Queue q(&loop, Queue::Options{.name = "test-queue"}, {}, {&ctx});
  LoopThread other;
  other.Start();
  std::promise<std::thread::id> other_id, ran_on;
  other.Post([&] { other_id.set_value(std::this_thread::get_id()); });
  // Queued on the other loop's thread, naming its mailbox.
  other.Post([&] {
    q.Run([&](Context&) -> Queue::Completion {
      return [&] { ran_on.set_value(std::this_thread::get_id()); };
    }, Mailbox::Current());
  });
  auto want = other_id.get_future().get();
  auto got = ran_on.get_future();
  REQUIRE(got.wait_for(10s) == std::future_status::ready);
  CHECK(got.get() == want);
  CHECK(want != std::this_thread::get_id());
  // Without a mailbox: on the queue's own loop, run here.
  std::thread::id mine;
  bool done = false;
  q.Run([&](Context&) -> Queue::Completion {
    return [&] {
      mine = std::this_thread::get_id();
      done = true;
    };
  }, nullptr);
  RunUntil(&loop, [&] { return done; });
  CHECK(done);
  CHECK(mine == std::this_thread::get_id());
  other.Stop();
  StopAndClose(q, &loop);
}

TEST_CASE("an idle work queue thread ticks and calls its idle hook") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  Context ctx;
  std::atomic<int> ticks{0}, idles{0};
  Queue q(&loop, Queue::Options{.name = "test-queue", .tick = 5ms},
          Queue::Hooks{.idle = [&](Context&) {
                         idles++;
                         return false;
                       },
                       .tick = [&](Context&) { ticks++; }},
          {&ctx});
  auto until = std::chrono::steady_clock::now() + 10s;
  while ((ticks < 3 || idles < 3) && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(5ms);
  CHECK(ticks >= 3);
  CHECK(idles >= 3);
  StopAndClose(q, &loop);
}
