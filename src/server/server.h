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
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "9p/lock_table.h"
#include "auth/keys.h"
#include "tls/tls_engine.h"
#include "common/result.h"
#include "server/store_filesystem.h"
#include "server/store_worker.h"
#include "transport/connection.h"
#include "transport/listener.h"

namespace muscle::server {

struct AccessRule {
  std::string root;  // attach root inside the tree; empty = whole tree
  bool read_only = false;
};

struct ServerOptions {
  std::string store_path;           // SQLite file, or ":memory:"
  std::vector<std::string> listen;  // endpoints, see transport/endpoint.h
  bool allow_plaintext_network = false;
  uint32_t max_msize = p9::kMaxMsize;
  std::chrono::milliseconds commit_interval{1000};
  // Threads with their own read connection to the store answering reads
  // and lookups (server/reader_pool.h); 0 = everything on the writer.
  int store_readers = 2;
  // TLS: the keys file (stunnel PSKsecrets format), per-identity rules,
  // handshake timeout, and failed handshakes allowed per peer address per
  // minute before further connections from it are refused.
  std::string keys_path;
  std::map<std::string, AccessRule> access;
  std::chrono::milliseconds handshake_timeout{10000};
  int max_failed_handshakes = 10;
  // Handshakes under way at once from one address; more are refused.
  int max_concurrent_handshakes = 16;
  // Session tickets (tls/session_tickets.h); 0 turns resumption off.
  uint32_t ticket_lifetime_seconds = tls::TicketSealer::kDefaultLifetimeSeconds;
  // Shutdown waits this long for connections to finish their requests and
  // take their replies, then closes the rest.
  std::chrono::milliseconds shutdown_grace{10000};
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
  // Re-reads the keys file. A broken file keeps the old keys (the error is
  // returned and logged); live connections of identities that were removed
  // or whose key changed are closed.
  Status ReloadKeys();

 private:
  void Accept(uv_stream_t* stream, std::string peer, bool tls);
  Result<p9::SessionOptions> Authorize(const std::string& identity);
  bool RateLimited(const std::string& address);
  void RecordFailure(const std::string& address);
  void EndHandshake(const std::string& address, const std::shared_ptr<bool>& counted);
  void MaybeFinishShutdown();

  uv_loop_t* loop_;
  std::unique_ptr<StoreWorker> worker_;
  std::unique_ptr<ReaderPool> readers_;
  std::unique_ptr<StoreFileSystem> fs_;
  p9::LockTable locks_;
  std::shared_ptr<const auth::KeyTable> keys_;
  std::unique_ptr<tls::TlsContext> tls_;
  // Failed handshake times per peer address (without port).
  std::map<std::string, std::vector<uint64_t>> failures_;
  // TLS handshakes under way per peer address.
  std::map<std::string, int> handshaking_;
  std::vector<transport::Listener*> listeners_;
  std::set<transport::Connection*> connections_;
  ServerOptions options_;
  bool shutting_down_ = false;
  bool worker_stopping_ = false;
  uv_timer_t* grace_timer_ = nullptr;  // running during shutdown
  std::function<void()> done_;
};

}  // namespace muscle::server
