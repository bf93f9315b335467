// The opt-in metrics listener (`musclefs serve --metrics unix:PATH` or
// `tcp://127.0.0.1:PORT`): a minimal HTTP/1.0-1.1 server whose only page
// is GET /metrics, the registry (server/metrics.h) in the Prometheus text
// format. Other paths get 404, other methods 405, a malformed request 400.
// One request per connection (the answer says Connection: close).
//
// Bounds, so that a client can hold neither memory nor the loop: a
// request head of at most kMaxHead bytes (past that: 431, then close); at
// most kMaxClients connections at once (more are closed at once); each
// connection closed after kTimeout whatever it is doing (a slow sender or
// a reader that never takes the answer). The answer is built from
// Metrics::Collect, which copies atomics and a snapshot the store writer
// published: a scrape never waits for the store.
//
// Which addresses: a unix socket (mode 0600, as the 9P socket) or TCP on
// a loopback address; anything else is refused (CheckMetricsAddress): the
// metrics name identities and peer addresses, and there is no
// authentication.
//
// Threading and lifetime: Open, Close and every callback run on one loop
// thread (the server's main loop). Close() stops listening and closes
// the connections; the object deletes itself once their handles are
// closed. It is neither copied nor moved.
#pragma once

#include <uv.h>

#include <chrono>
#include <memory>
#include <set>
#include <string>

#include "common/result.h"
#include "server/metrics.h"
#include "transport/endpoint.h"
#include "transport/listener.h"

namespace muscle::server {

// Parses a --metrics address; EINVAL (with the reason) for tls://, for a
// non-loopback TCP host, or for an unparsable address.
Result<transport::Endpoint> CheckMetricsAddress(const std::string& text);

class MetricsHttp {
 public:
  static constexpr size_t kMaxHead = 8192;
  static constexpr size_t kMaxClients = 16;
  static constexpr std::chrono::milliseconds kTimeout{10000};

  static Result<MetricsHttp*> Open(uv_loop_t* loop, const std::string& address,
                                   std::shared_ptr<Metrics> metrics);
  MetricsHttp(const MetricsHttp&) = delete;
  MetricsHttp& operator=(const MetricsHttp&) = delete;
  void Close();
  const transport::Endpoint& bound() const { return listener_->bound(); }

  // The answer to one request head (exposed for tests): status line,
  // headers and body.
  static std::string Answer(std::string_view head, const Metrics& metrics);

 private:
  struct Client;
  MetricsHttp(uv_loop_t* loop, std::shared_ptr<Metrics> metrics)
      : loop_(loop), metrics_(std::move(metrics)) {}
  ~MetricsHttp() = default;
  void Accept(uv_stream_t* stream);
  void Closed(Client* c);

  uv_loop_t* loop_;
  std::shared_ptr<Metrics> metrics_;
  transport::Listener* listener_ = nullptr;
  std::set<Client*> clients_;
  bool closing_ = false;
};

}  // namespace muscle::server
