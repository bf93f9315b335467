// A running musclefs server: the store worker, the file system on it, the
// shared lock table, listeners and connections.
//
// Listeners, plain connections, signals and all bookkeeping (rate limits,
// handshakes under way, connection counts, shutdown) live on the main
// loop. TLS connections, whose records cost CPU of their own, are dealt in
// turn to the main loop and to extra loops on threads of their own
// (ServerOptions::loops): the accepted socket moves to that loop, which
// runs the connection, its TLS engine and its session; the store worker
// answers it there. A loop's connections are touched only on its thread:
// the main loop reaches them through that loop's mailbox (key reloads,
// drain, close), and they report back through the main loop's mailbox.
//
// Threading: every method is called on the main loop's thread. Lifetime: Start()
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
#include "server/loop_thread.h"
#include "transport/session_registry.h"
#include "server/metrics.h"
#include "server/metrics_http.h"
#include "server/attach_router.h"
#include "server/chunk_backend.h"
#include "server/store_key.h"
#include "server/store_filesystem.h"
#include "server/view_filesystem.h"
#include "auth/access_rule.h"
#include "server/store_worker.h"
#include "transport/connection.h"
#include "transport/listener.h"

namespace muscle::server {

using AccessRule = auth::AccessRule;

struct ServerOptions {
  std::string store_path;           // SQLite file, or ":memory:"
  ChunkOptions chunks;              // where chunk data lives (server/chunk_backend.h)
  // Encryption at rest (server/store_key.h): where the key comes from, and
  // the key itself once loaded (null: a plain store), loaded before Start.
  KeyOptions key;
  std::shared_ptr<const crypto::MasterKey> store_key;
  std::vector<std::string> listen;  // endpoints, see transport/endpoint.h
  bool allow_plaintext_network = false;
  uint32_t max_msize = p9::kMaxMsize;
  std::chrono::milliseconds commit_interval{1000};
  // Threads with their own read connection to the store answering reads
  // and lookups (server/reader_pool.h); 0 = everything on the writer.
  int store_readers = 2;
  std::chrono::seconds snapshot_every{0};  // 0: no scheduled snapshots
  // TLS: the keys file (stunnel PSKsecrets format), per-identity rules,
  // handshake timeout, and failed handshakes allowed per peer address per
  // minute before further connections from it are refused.
  std::string keys_path;
  std::map<std::string, AccessRule> access;
  std::chrono::milliseconds handshake_timeout{10000};
  int max_failed_handshakes = 10;
  // Handshakes under way at once from one address; more are refused. A
  // burst of legitimate clients behind one address (a NAT, a benchmark
  // opening 64 connections) stays under it; silent peers are bounded by
  // it and the handshake timeout.
  int max_concurrent_handshakes = 128;
  // Session tickets (tls/session_tickets.h); 0 turns resumption off.
  uint32_t ticket_lifetime_seconds = tls::TicketSealer::kDefaultLifetimeSeconds;
  // Shutdown waits this long for connections to finish their requests and
  // take their replies, then closes the rest.
  std::chrono::milliseconds shutdown_grace{10000};
  // Event loops in all (the main one included) that TLS connections are
  // dealt to in turn, each on its own thread: 0 means one per core, 1
  // keeps everything on the main loop.
  int loops = 0;
  // The metrics listener (server/metrics_http.h): unix:PATH or
  // tcp://LOOPBACK:PORT; empty (the default): none.
  std::string metrics;
  // How long a resumable session (transport/resumable.h) whose network
  // dropped is kept for its relay's redial.
  std::chrono::milliseconds session_lease{120000};
  // After a restart that found locks held (9p/lock_table.h): how long only
  // relays reclaiming their locks take one. 0: none (reclaims refused).
  std::chrono::seconds lock_grace{20};
  // An attached resumable session silent this long detaches (not a
  // setting: the relay pings every 5 s; tests shorten it).
  std::chrono::milliseconds session_silence{30000};
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
  size_t connections() const { return connections_.size() + remote_connections_; }
  // Resumable sessions, attached or detached, on every loop.
  size_t resumable_sessions() { return sessions_.size(); }
  // The metrics listener's address actually bound (null without one).
  const transport::Endpoint* metrics_bound() const {
    return metrics_http_ ? &metrics_http_->bound() : nullptr;
  }
  // What the server counts about itself (server/metrics.h).
  const std::shared_ptr<Metrics>& metrics() const { return metrics_; }
  // Re-reads the keys file. A broken file keeps the old keys (the error is
  // returned and logged); live connections of identities that were removed
  // or whose key changed are closed.
  Status ReloadKeys();

 private:
  // An extra event loop and what lives on it (touched on its thread only,
  // but for `thread`).
  struct Shard {
    LoopThread thread;
    std::unique_ptr<tls::TlsContext> tls;
    std::shared_ptr<const auth::KeyTable> keys;  // this loop's copy
    std::set<transport::Connection*> connections;
    bool draining = false;
  };
  void Accept(uv_stream_t* stream, std::string peer, bool tls);
  void HandOff(Shard* shard, uv_stream_t* stream, std::string peer, std::string address,
               std::shared_ptr<bool> handshake);
  Result<p9::SessionOptions> Authorize(const std::shared_ptr<const auth::KeyTable>& keys,
                                       const std::string& identity) const;
  static void DropChangedIdentities(std::set<transport::Connection*>& connections,
                                    const auth::KeyTable& before, const auth::KeyTable& now);
  // A local identity claim (transport/claim.h) from a trusted unix peer:
  // the identity must be known (an access rule or a key names it); the
  // claim's root lies below the identity's root, and read-only sticks.
  Result<p9::SessionOptions> AuthorizeClaim(const std::string& line, std::string* identity);
  bool RateLimited(const std::string& address);
  void RecordFailure(const std::string& address);
  void EndHandshake(const std::string& address, const std::shared_ptr<bool>& counted);
  void MaybeFinishShutdown();

  uv_loop_t* loop_;
  std::shared_ptr<Metrics> metrics_ = std::make_shared<Metrics>();
  MetricsHttp* metrics_http_ = nullptr;  // deletes itself once closed
  std::unique_ptr<StoreWorker> worker_;
  std::unique_ptr<ReaderPool> readers_;
  std::unique_ptr<StoreFileSystem> fs_;
  std::unique_ptr<ViewFileSystem> views_;
  std::unique_ptr<AttachRouter> router_;  // what connections see: fs_ and views_
  p9::LockTable locks_;
  std::shared_ptr<const auth::KeyTable> keys_;
  std::unique_ptr<tls::TlsContext> tls_;
  // Failed handshake times per peer address (without port).
  std::map<std::string, std::vector<uint64_t>> failures_;
  // TLS handshakes under way per peer address.
  std::map<std::string, int> handshaking_;
  std::vector<transport::Listener*> listeners_;
  std::set<transport::Connection*> connections_;  // on the main loop
  std::vector<std::unique_ptr<Shard>> shards_;
  size_t next_loop_ = 0;
  size_t remote_connections_ = 0;  // connections on the shards
  Mailbox* mailbox_ = nullptr;      // the main loop's, for the shards' reports and redials
  transport::SessionRegistry sessions_;  // resumable sessions on every loop
  ServerOptions options_;
  bool shutting_down_ = false;
  bool worker_stopping_ = false;
  uv_timer_t* grace_timer_ = nullptr;  // running during shutdown
  std::function<void()> done_;
};

}  // namespace muscle::server
