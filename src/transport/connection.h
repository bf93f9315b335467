// One client connection over a libuv stream (TCP or unix socket): splits
// the byte stream into 9P frames for a Session and writes its replies.
//
// Back-pressure: reading pauses while the session has kMaxInFlight requests
// outstanding or more than kMaxQueuedBytes of replies wait to be written,
// so a client that floods requests or never reads cannot grow server
// memory without bound. A frame larger than the negotiated msize, or a size
// field below the 9P header size, closes the connection.
//
// Lifetime: a Connection owns its uv handle and deletes itself in the
// handle's close callback, after telling its owner through on_closed. It
// lives on the loop thread and is neither copied nor moved.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>

#include "9p/session.h"

namespace muscle::transport {

class Connection {
 public:
  static constexpr size_t kMaxInFlight = 64;
  static constexpr size_t kMaxQueuedBytes = 8u << 20;

  // `stream` must be an initialised, accepted handle allocated with new
  // (uv_tcp_t or uv_pipe_t); the connection takes it over.
  Connection(uv_stream_t* stream, std::string peer, p9::FileSystem& fs,
             p9::LockTable& locks, p9::SessionOptions options);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void Start();
  // Closes the connection (idempotent). `why` is logged when not null.
  void Close(const char* why);
  // Stops reading new requests; the connection closes itself once every
  // request in flight is answered and written (graceful shutdown).
  void Drain();
  const std::string& peer() const { return peer_; }

  std::function<void(Connection*)> on_closed;

 private:
  ~Connection();
  void OnRead(ssize_t n);
  void ProcessFrames();
  void Send(std::string frame);
  void UpdateReading();
  void MaybeFinishDrain();

  uv_stream_t* stream_;
  std::string peer_;
  std::shared_ptr<p9::Session> session_;
  std::string in_;     // received bytes not yet consumed
  size_t in_used_ = 0;
  bool reading_ = false;
  bool closing_ = false;
  bool draining_ = false;
  size_t writes_pending_ = 0;
};

}  // namespace muscle::transport
