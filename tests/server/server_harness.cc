#include "tests/server/server_harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <cstring>
#include <random>
#include <stdexcept>

#include "9p/client.h"

namespace muscle::test {

InProcessServer::InProcessServer(const std::string& store_path, const std::string& dir,
                                 uint32_t max_msize, std::chrono::milliseconds commit_interval) {
  server::ServerOptions o;
  o.store_path = store_path;
  o.listen = {"unix:" + dir + "/sock", "tcp://127.0.0.1:0"};
  o.max_msize = max_msize;
  o.commit_interval = commit_interval;
  Run(o);
  unix_ = "unix:" + bound_[0].path;
  tcp_ = "tcp://127.0.0.1:" + std::to_string(bound_[1].port);
}

InProcessServer::InProcessServer(const server::ServerOptions& options) { Run(options); }

void InProcessServer::Run(server::ServerOptions o) {
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  std::string error;
  thread_ = std::thread([&, o] {
    uv_loop_init(&loop_);
    server::Server srv(&loop_);
    Status s = srv.Start(o);
    uv_async_init(&loop_, &stop_, [](uv_async_t* a) {
      auto* self = static_cast<InProcessServer*>(a->data);
      self->server_->Shutdown([self] {
        uv_close(reinterpret_cast<uv_handle_t*>(&self->stop_), nullptr);
        uv_close(reinterpret_cast<uv_handle_t*>(&self->call_), nullptr);
      });
    });
    stop_.data = this;
    uv_async_init(&loop_, &call_, [](uv_async_t* a) {
      auto* self = static_cast<InProcessServer*>(a->data);
      std::vector<std::function<void(server::Server&)>> calls;
      {
        std::lock_guard<std::mutex> g(self->call_mu_);
        calls.swap(self->calls_);
      }
      for (auto& f : calls) f(*self->server_);
    });
    call_.data = this;
    server_ = &srv;
    {
      std::lock_guard<std::mutex> g(mu);
      if (!s.ok()) error = s.ToString();
      else bound_ = srv.bound();
      ready = true;
      // Under the lock: the constructor returns (and `cv`, on its stack,
      // goes) as soon as it sees `ready`, possibly before a notify_all
      // after the unlock had finished.
      cv.notify_all();
    }
    if (!s.ok()) uv_async_send(&stop_);
    uv_run(&loop_, UV_RUN_DEFAULT);
    server_ = nullptr;
    // A handle left open is a leak in the server: fail loudly.
    int rc = uv_loop_close(&loop_);
    if (rc != 0) {
      fprintf(stderr, "InProcessServer: uv_loop_close: %s (a handle was leaked)\n", uv_strerror(rc));
      abort();
    }
  });
  std::unique_lock<std::mutex> lk(mu);
  cv.wait(lk, [&] { return ready; });
  if (!error.empty()) {
    lk.unlock();
    thread_.join();
    throw std::runtime_error("server failed to start: " + error);
  }
  running_ = true;
}

void InProcessServer::OnLoop(std::function<void(server::Server&)> f) {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  {
    std::lock_guard<std::mutex> g(call_mu_);
    calls_.push_back([&](server::Server& s) {
      f(s);
      std::lock_guard<std::mutex> g2(mu);
      done = true;
      cv.notify_all();
    });
  }
  uv_async_send(&call_);
  std::unique_lock<std::mutex> lk(mu);
  cv.wait(lk, [&] { return done; });
}

void InProcessServer::Stop() {
  if (!running_) return;
  running_ = false;
  uv_async_send(&stop_);
  thread_.join();
}

InProcessServer::~InProcessServer() { Stop(); }

ChildServer::ChildServer(const std::vector<std::string>& args, const std::string& endpoint,
                         const std::string& log_path) {
  // Each test server gets its own base (pid file, keys) unless the test
  // chose one: never the user's $HOME/lib/muscle.
  bool has_base = false;
  for (auto& a : args) has_base |= a == "--base";
  if (!has_base) {
    char tmpl[] = "/tmp/musclefs-child-base-XXXXXX";
    if (mkdtemp(tmpl)) base_ = tmpl;
  }
  pid_ = fork();
  if (pid_ == 0) {
    if (!log_path.empty()) {
      FILE* f = freopen(log_path.c_str(), "a", stderr);
      (void)f;
    }
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(MUSCLEFS_BINARY));
    argv.push_back(const_cast<char*>("serve"));
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    if (!base_.empty()) {
      argv.push_back(const_cast<char*>("--base"));
      argv.push_back(base_.data());
    }
    argv.push_back(nullptr);
    execv(MUSCLEFS_BINARY, argv.data());
    _exit(127);
  }
  for (int i = 0; i < 500; i++) {
    p9::Client c;
    if (c.Connect(endpoint).ok()) return;
    int st;
    if (waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("musclefs exited during start-up");
    }
    usleep(10000);
  }
  throw std::runtime_error("musclefs did not start listening on " + endpoint);
}

ChildServer::~ChildServer() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    Wait();
  }
  if (!base_.empty()) RunCommand("rm -rf '" + base_ + "'");
}

void ChildServer::Kill(int sig) { kill(pid_, sig); }

int ChildServer::Wait() {
  int st = 0;
  if (pid_ > 0) waitpid(pid_, &st, 0);
  pid_ = -1;
  return st;
}

void Connect(p9::Client& c, const std::string& endpoint, uint32_t msize) {
  REQUIRE(c.Connect(endpoint).ok());
  REQUIRE(c.Version(msize).ok());
  REQUIRE(c.Attach(0).ok());
}

void MakeFile(p9::Client& c, const std::string& name) {
  REQUIRE(c.Walk(0, 20, {}).ok());
  REQUIRE(c.Create(20, name, O_RDWR | O_CREAT, 0644).ok());
  REQUIRE(c.Clunk(20).ok());
}

std::string SendClaim(p9::Client& c, const std::string& line) {
  REQUIRE(c.SendRaw(line).ok());
  std::string answer;
  char ch;
  while (read(c.fd(), &ch, 1) == 1 && ch != '\n') answer += ch;
  return answer;
}

}  // namespace muscle::test
