// One client connection over a libuv stream (TCP or unix socket), plain or
// TLS-PSK: splits the byte stream into 9P frames for a Session and writes
// its replies.
//
// Plain connections get their Session at once. TLS connections first
// complete a handshake (bounded by a timeout); `authorize` then turns the
// peer's identity into session options (attach root, read-only) or refuses
// it, and the Session starts.
//
// Back-pressure: frames are taken from the input only while the session has
// fewer than kMaxInFlight requests outstanding and the bytes they may need
// (Session::reserved_bytes: frames plus largest replies, counted before
// any work) plus replies waiting to be written stay under kMaxQueuedBytes;
// reading pauses while they do not, and resumes as replies drain. So a
// client that pipelines big reads and never reads the replies costs at
// most about kMaxQueuedBytes + one msize.
//
// End of input (a client's shutdown(SHUT_WR), or its TLS close_notify) is
// a half-close: the requests already received are answered and written,
// then the connection closes (a TLS connection sends its own close_notify
// first). A frame larger than the negotiated msize, or a size
// field below the 9P header size, closes the connection.
//
// On kernel TLS (tls/ktls.h) the connection reads the socket itself, a
// uv_poll_t on a duplicate of its descriptor and tls::ReadKernelTls, so
// that the peer's close_notify is a half-close and not a read error; its
// writes still go through the libuv stream.
//
// Resumable sessions (resumable.h): a TLS peer (muscle relay --reconnect)
// may begin with a session line. Its session then outlives the TCP
// connection: when that drops (EOF, reset, a TLS error; anything but the
// peer's BYE) the connection detaches: the socket closes, the 9P session
// keeps running, its replies are kept, and for `session_lease` a redial
// naming the session (on any loop: SessionRegistry) hands its socket over
// (Adopt) and both sides resend what the other missed. When the lease
// ends, the connection closes as any other.
//
// Lifetime: a Connection owns its uv handles and deletes itself once they
// are closed, after telling its owner through on_closed. It lives on the
// loop thread and is neither copied nor moved; a resumable one may change
// its socket (Adopt) but never its loop.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "9p/session.h"
#include "server/metrics.h"
#include "tls/tls_engine.h"
#include "transport/resumable.h"
#include "transport/session_registry.h"

namespace muscle::transport {

struct ConnectionOptions {
  p9::SessionOptions session;
  // TLS when set; must outlive the connection.
  tls::TlsContext* tls = nullptr;
  std::chrono::milliseconds handshake_timeout{10000};
  // TLS only: after the handshake, session options for the identity, or an
  // error to refuse it.
  std::function<Result<p9::SessionOptions>(const std::string& identity)> authorize;
  // TLS only: handshake outcome, for logs and rate limiting. `failed`
  // says the peer failed to authenticate: it named an identity and had
  // the wrong key, or one this server does not know or refuses. A timeout,
  // garbage or a peer that closes early is not a failed authentication
  // (slow and silent peers are bounded by a cap on concurrent handshakes).
  std::function<void(bool ok, bool failed, const std::string& detail)> on_handshake;
  // Plain connections only: when set, the connection may begin with an
  // identity claim line (transport/claim.h); it is passed here (without
  // its newline) and turned into session options, or refused with an
  // error the client is told before the connection closes. Without a
  // claim line the session starts with `session`. Set it only for peers
  // that may make claims (the server's own user on a unix socket).
  std::function<Result<p9::SessionOptions>(const std::string& line, std::string* identity)> claim;
  // When set, sees every request frame and reply of the session (counts,
  // bytes and latency, server/metrics.h) and is told the identity and
  // transport when the session starts. Used on this connection's loop.
  std::shared_ptr<server::ConnectionMeter> meter;
  // TLS only: where resumable sessions are found (null: refused), how to
  // run a closure on this connection's loop, and how long a detached
  // session waits for its peer.
  SessionRegistry* sessions = nullptr;
  SessionRegistry::Post post;
  std::chrono::milliseconds session_lease{120000};
  // An attached resumable session whose peer sent nothing this long
  // detaches (its relay pings every 5 s).
  std::chrono::milliseconds session_silence{30000};
};

class Connection {
 public:
  static constexpr size_t kMaxInFlight = 64;
  static constexpr size_t kMaxQueuedBytes = 8u << 20;
  // A resumable session stops taking requests while this much of what it
  // sent is unacknowledged (the relay acknowledges every 256 KiB).
  static constexpr size_t kMaxUnacked = 16u << 20;

  // `stream` must be an initialised, accepted handle allocated with new
  // (uv_tcp_t or uv_pipe_t); the connection takes it over.
  Connection(uv_stream_t* stream, std::string peer, p9::FileSystem& fs, p9::LockTable& locks,
             ConnectionOptions options);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void Start();
  // Closes the connection (idempotent). `why` is logged when not null.
  void Close(const char* why);
  // Stops reading new requests; the connection closes itself once every
  // request in flight is answered and written (graceful shutdown).
  void Drain();
  const std::string& peer() const { return peer_; }
  // The TLS identity, empty for plain connections or before the handshake.
  const std::string& identity() const { return identity_; }
  // (also while a resumable session is detached, without a socket)
  bool is_tls() const { return options_.tls != nullptr; }

  // On this connection's loop: the socket of a redial that named this
  // session (with its TLS engine, the peer's count of bytes received and
  // any bytes it sent after its session line) replaces the current one.
  void Adopt(uv_stream_t* stream, std::unique_ptr<tls::TlsEngine> tls, std::string peer,
             uint64_t peer_received, std::string leftover);

  std::function<void(Connection*)> on_closed;

 private:
  // Before the session of a TLS connection: a session line or 9P.
  void TakeHello();
  void StartResumable(const std::string& leftover);
  void HandOver(const ResumableHello& hello, std::string leftover);
  void BindTls();
  // The socket failed: a resumable session detaches, others close.
  void StreamLost(const char* why);
  void Detach(const char* why);
  void CloseStream();
  void WatchSilence();
  ~Connection();
  void InputEnded();
  void OnRead(ssize_t n, const uv_buf_t* buf);
  void OnPlaintext(const char* data, size_t len);
  bool MoveToKernelTls();
  bool StartKernelTlsReads(int fd);
  void OnKernelTlsReadable();
  void StopReading();
  void OnHandshake();
  // Before the session of a connection that may claim an identity: waits
  // for enough bytes to tell a claim line from a 9P frame.
  void TakeClaim();
  void StartSession(p9::SessionOptions options);
  void ProcessFrames();
  void Send(std::string frame);
  void WriteRaw(std::string bytes);
  void UpdateReading();
  void MaybeFinishDrain();
  // Whether the session may take another request now.
  bool CanTakeMore() const;
  void Resume();
  void ReleaseIdleBuffers();
  void HandleClosed();

  uv_stream_t* stream_;  // null while a resumable session is detached
  uv_loop_t* loop_;
  uv_timer_t* timer_ = nullptr;  // the handshake timeout, then the lease
  // Kernel TLS only: polls a duplicate of the stream's socket, which is
  // closed once the poll handle is (StartKernelTlsReads).
  struct KtlsPoll;
  KtlsPoll* ktls_poll_ = nullptr;
  int open_handles_ = 1;
  std::string peer_;
  p9::FileSystem& fs_;
  p9::LockTable& locks_;
  ConnectionOptions options_;
  std::unique_ptr<tls::TlsEngine> tls_;
  std::string identity_;
  std::shared_ptr<p9::Session> session_;
  std::string in_;  // plaintext received, not yet consumed as frames
  size_t in_used_ = 0;
  std::string cipher_in_;  // TLS read buffer
  bool reading_ = false;
  bool closing_ = false;
  bool draining_ = false;
  bool claim_pending_ = false;  // options_.claim set, first bytes not seen yet
  bool claim_accepted_ = false;  // the session runs under a claimed identity
  bool input_ended_ = false;    // the peer half-closed (FIN, or TLS close_notify)
  bool processing_ = false;  // inside ProcessFrames (replies can re-enter)
  size_t writes_pending_ = 0;
  bool hello_pending_ = false;  // TLS with sessions: first bytes not seen yet
  p9::SessionOptions pending_options_;  // the identity's, while hello_pending_
  std::unique_ptr<ResumableStream> resumable_;
  std::string session_id_;
  bool bye_ = false;  // the relay ended its resumable session
  uint64_t heard_at_ = 0;  // loop time of the last bytes received
  bool handed_over_ = false;  // the socket went to the session's loop: no close_notify
  // Inside the TLS engine's Feed, or a resumable Feed over cipher_in_:
  // the read buffer must not be released (ReleaseIdleBuffers).
  bool feeding_ = false;
  std::unique_ptr<std::pair<ResumableHello, std::string>> handover_;  // a redial's line
  std::unique_ptr<tls::TlsEngine> retired_tls_;  // of the socket being closed
};

}  // namespace muscle::transport
