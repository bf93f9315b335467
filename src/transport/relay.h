// The client side of musclefs over TLS: carries plaintext 9P between local
// streams (a loopback/unix listener, or one end of a socketpair handed to
// the kernel with trans=fd) and a musclefs TLS-PSK listener, one TLS
// connection per local stream.
//
// With `reconnect`, each pair asks the server for a resumable session
// (resumable.h): when the network drops, or the server stops answering
// keepalives for three intervals, the pair redials (back-off from 100 ms
// to 0.8 s, TLS session resumption making it cheap), and both sides resend
// what the other missed. The local side never notices, requests simply
// wait ("hard" mount). When the server says it no longer has the session
// (it restarted, or the lease ended), the pair opens a new one and
// restores the 9P conversation on it (9p/restore_book.h: fids rebound by
// inode, open files reopened, unanswered requests sent again, the
// non-idempotent ones under operation ids the server keeps), so the local
// side still does not notice. With `soft`, requests fail with EIO once
// the server has been away that long. A wrong key or a removed identity
// ends the pair, and so does a server that cannot restore (no operation
// ids, or a conversation other than 9P2000.L).
//
// Threading: everything runs on one libuv loop thread. Lifetime: a Relay
// must outlive its pairs; Stop() closes the listener and every pair.
#pragma once

#include <uv.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "auth/keys.h"
#include "common/result.h"
#include "tls/tls_engine.h"
#include "transport/endpoint.h"
#include "transport/listener.h"

namespace muscle::transport {

struct RelayOptions {
  std::string server_host;
  int server_port = 0;
  std::string identity;
  auth::Secret key;
  bool reconnect = false;
  std::chrono::milliseconds keepalive{5000};
  // With reconnect: 0 waits for the server forever ("hard"); else, after
  // this long without it, waiting requests fail with EIO, and new ones
  // until it is back ("soft").
  std::chrono::seconds soft{0};
};

class Relay {
 public:
  explicit Relay(uv_loop_t* loop) : loop_(loop) {}
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  // Resolves the server and prepares TLS. Does not connect.
  Status Init(RelayOptions options);
  // Connects once, completes a handshake and closes: tells a user at start
  // whether the server is reachable and accepts the identity and key.
  // Runs the loop until done.
  Status Probe();
  // Accepts local connections on `at` (refused on a non-loopback address
  // unless allow_network).
  Status Listen(const Endpoint& at, bool allow_network);
  // Carries one already connected local stream (takes ownership).
  void Carry(uv_stream_t* local);
  void Stop();
  size_t pairs() const { return pairs_.size(); }
  // Sessions restored on a server that had lost them (any thread).
  uint64_t restores() const { return restores_; }
  // Of the fids restored, those left to bind on first use (any thread).
  uint64_t deferred_fids() const { return deferred_fids_; }
  // Called when a pair ends; the argument is empty for a clean end.
  std::function<void(const std::string& error)> on_pair_closed;

 private:
  class Pair;
  friend class Pair;

  uv_loop_t* loop_;
  RelayOptions options_;
  sockaddr_storage server_addr_{};
  std::unique_ptr<tls::TlsContext> tls_;
  Listener* listener_ = nullptr;
  std::set<Pair*> pairs_;
  bool kernel_tls_logged_ = false;
  std::atomic<uint64_t> restores_{0};
  std::atomic<uint64_t> deferred_fids_{0};
};

// "HOST:PORT" or "[V6]:PORT" -> host, port.
Status SplitHostPort(const std::string& text, std::string& host, int& port);
// A blocking TCP connection to the first of HOST's addresses that accepts
// (for muscle mount and the snapshot commands). The descriptor is not
// close-on-exec: muscle mount hands it to mount(8).
Result<int> ConnectTcp(const std::string& host, int port);
// Explains a failed client handshake to a user.
std::string ExplainHandshakeFailure(const std::string& identity, const Status& s);

}  // namespace muscle::transport
