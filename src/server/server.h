// A running musclefs server: the store worker, the file system on it, the
// shared lock table, listeners and connections, all on one libuv loop.
//
// Threading: every method is called on the loop thread. Lifetime: Start()
// once; Shutdown() stops accepting, lets requests in flight finish and be
// written, commits the store durably and then calls `done`; destroy the
// Server after that.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "9p/lock_table.h"
#include "common/result.h"
#include "server/store_filesystem.h"
#include "server/store_worker.h"
#include "transport/connection.h"
#include "transport/listener.h"

namespace muscle::server {

struct ServerOptions {
  std::string store_path;           // SQLite file, or ":memory:"
  std::vector<std::string> listen;  // endpoints, see transport/endpoint.h
  bool allow_plaintext_network = false;
  uint32_t max_msize = p9::kMaxMsize;
  std::chrono::milliseconds commit_interval{1000};
};

class Server {
 public:
  explicit Server(uv_loop_t* loop) : loop_(loop) {}
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  Status Start(const ServerOptions& options);
  void Shutdown(std::function<void()> done);
  // Endpoints actually bound (ports resolved), in --listen order.
  std::vector<transport::Endpoint> bound() const;
  size_t connections() const { return connections_.size(); }

 private:
  void Accept(uv_stream_t* stream, std::string peer);
  void MaybeFinishShutdown();

  uv_loop_t* loop_;
  std::unique_ptr<StoreWorker> worker_;
  std::unique_ptr<StoreFileSystem> fs_;
  p9::LockTable locks_;
  std::vector<transport::Listener*> listeners_;
  std::set<transport::Connection*> connections_;
  ServerOptions options_;
  bool shutting_down_ = false;
  bool worker_stopping_ = false;
  std::function<void()> done_;
};

}  // namespace muscle::server
