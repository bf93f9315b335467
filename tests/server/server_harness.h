// Test harnesses: a musclefs server running in-process on its own loop
// thread, or the real musclefs binary as a child process.
#pragma once

#include <sys/types.h>

#include <string>
#include <chrono>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "9p/client.h"
#include "server/server.h"
#include "tests/test_util.h"

namespace muscle::test {

class InProcessServer {
 public:
  // Starts a server on a unix socket and loopback TCP (port 0) in `dir`.
  explicit InProcessServer(const std::string& store_path, const std::string& dir,
                           uint32_t max_msize = p9::kMaxMsize,
                           std::chrono::milliseconds commit_interval = std::chrono::milliseconds(200));
  // Any options; endpoints() lists what was bound, in listen order.
  explicit InProcessServer(const server::ServerOptions& options);
  std::vector<transport::Endpoint> endpoints() const { return bound_; }
  // Runs f(server) on the loop thread and waits for it.
  void OnLoop(std::function<void(server::Server&)> f);
  ~InProcessServer();
  std::string unix_endpoint() const { return unix_; }
  std::string tcp_endpoint() const { return tcp_; }
  // Graceful shutdown; returns when the loop has exited.
  void Stop();

 private:
  void Run(server::ServerOptions o);
  std::thread thread_;
  std::vector<transport::Endpoint> bound_;
  server::Server* server_ = nullptr;
  uv_async_t call_;
  std::mutex call_mu_;
  std::vector<std::function<void(server::Server&)>> calls_;
  std::string unix_, tcp_;
  uv_loop_t loop_;
  uv_async_t stop_;
  bool running_ = false;
};

class ChildServer {
 public:
  // Runs `musclefs serve` with the given extra arguments; waits until
  // `endpoint` accepts connections.
  ChildServer(const std::vector<std::string>& args, const std::string& endpoint,
              const std::string& log_path = "");
  ~ChildServer();
  pid_t pid() const { return pid_; }
  void Kill(int sig);
  // Waits for exit; returns the exit status as from waitpid.
  int Wait();

 private:
  pid_t pid_ = -1;
  std::string base_;  // a temporary base made for this server, removed after
};

// Connects to `endpoint`, negotiates 9P2000.L with `msize` and attaches
// fid 0 to the root, each step required to succeed.
void Connect(p9::Client& c, const std::string& endpoint, uint32_t msize = 1 << 20);
// Creates the empty file `name` in the root (through fid 20, clunked after).
void MakeFile(p9::Client& c, const std::string& name);
// Sends a claim line on a fresh unix-socket connection (transport/claim.h)
// and returns the server's answer line.
std::string SendClaim(p9::Client& c, const std::string& line);

}  // namespace muscle::test
