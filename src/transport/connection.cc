#include "transport/connection.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "common/log.h"
#include "tls/ktls.h"
#include "transport/claim.h"

namespace muscle::transport {

namespace {
const char* DialectName(p9::Dialect d) {
  return d == p9::k9P2000 ? "9P2000" : d == p9::k9P2000u ? "9P2000.u" : "9P2000.L";
}
struct WriteReq {
  uv_write_t req;
  std::string data;
  Connection* conn;
};
void DeleteStream(uv_handle_t* h) {
  if (h->type == UV_TCP) delete reinterpret_cast<uv_tcp_t*>(h);
  else delete reinterpret_cast<uv_pipe_t*>(h);
}
}  // namespace

Connection::Connection(uv_stream_t* stream, std::string peer, p9::FileSystem& fs,
                       p9::LockTable& locks, ConnectionOptions options)
    : stream_(stream), loop_(stream->loop), peer_(std::move(peer)), fs_(fs), locks_(locks),
      options_(std::move(options)) {
  stream_->data = this;
}

Connection::~Connection() { delete timer_; }

void Connection::Start() {
  if (!options_.tls) {
    if (options_.claim) {
      claim_pending_ = true;
      UpdateReading();
      return;
    }
    StartSession(options_.session);
    return;
  }
  tls_ = std::make_unique<tls::TlsEngine>(*options_.tls);
  BindTls();
  timer_ = new uv_timer_t;
  uv_timer_init(stream_->loop, timer_);
  timer_->data = this;
  open_handles_++;
  uv_timer_start(
      timer_,
      [](uv_timer_t* t) {
        auto* c = static_cast<Connection*>(t->data);
        if (c->options_.on_handshake) c->options_.on_handshake(false, false, "handshake timed out");
        c->Close("TLS handshake timed out");
      },
      uint64_t(options_.handshake_timeout.count()), 0);
  UpdateReading();
}

void Connection::OnHandshake() {
  uv_timer_stop(timer_);
  identity_ = tls_->identity();
  if (!MoveToKernelTls()) return;
  std::string detail = "identity '" + identity_ + "' suite " + tls_->suite() +
                       (tls_->resumed() ? " (resumed)" : "") + " records " +
                       tls_->records_name();
  auto opts = options_.authorize ? options_.authorize(identity_)
                                 : Result<p9::SessionOptions>(options_.session);
  if (!opts.ok()) {
    if (options_.on_handshake) options_.on_handshake(false, true, detail + ": " + opts.status().message());
    Close("identity refused");
    return;
  }
  if (options_.on_handshake) options_.on_handshake(true, false, detail);
  if (options_.sessions) {
    // A relay may ask for a resumable session first (TakeHello).
    hello_pending_ = true;
    pending_options_ = std::move(*opts);
    if (in_used_) TakeHello();
    else UpdateReading();  // kernel TLS stopped it
    return;
  }
  StartSession(*opts);
}

void Connection::TakeHello() {
  constexpr size_t kPrefix = sizeof kResumablePrefix - 1;
  size_t n = std::min(in_used_, kPrefix);
  if (in_.compare(0, n, kResumablePrefix, n) != 0) {
    hello_pending_ = false;  // 9P straight away
    StartSession(std::move(pending_options_));
    return;
  }
  size_t nl = in_.find('\n', 0);
  if (nl >= in_used_) {
    if (in_used_ > kMaxHelloLine) Close("session line too long");
    return;
  }
  hello_pending_ = false;
  auto hello = ParseHello(in_.substr(0, nl));
  std::string leftover = in_.substr(nl + 1, in_used_ - nl - 1);
  in_used_ = 0;
  if (!hello.ok()) return Close(hello.status().message().c_str());
  if (hello->resume) {
    // Handed over once the engine's Feed (which called us) has returned.
    handover_ = std::make_unique<std::pair<ResumableHello, std::string>>(*hello, std::move(leftover));
    StopReading();
    return;
  }
  session_id_ = NewSessionId();
  if (!options_.sessions->Add(session_id_, identity_, this, options_.post)) {
    session_id_.clear();
    Log("%s: resumable session refused: identity '%s' has %zu already", peer_.c_str(),
        identity_.c_str(), SessionRegistry::kMaxPerIdentity);
    std::string e = "error too many resumable sessions for this identity\n";
    (void)tls_->Write(e.data(), e.size());
    Drain();
    return;
  }
  std::string ok = "ok " + session_id_ + " 0 " + kServerFeatures + "\n";
  Status s = tls_->Write(ok.data(), ok.size());
  if (!s.ok()) return Close(s.message().c_str());
  if (TraceEnabled()) Log("%s: resumable session %s", peer_.c_str(), session_id_.c_str());
  StartResumable(leftover);
  pending_options_.grace_aware = true;  // a relay: it reclaims and retries
  StartSession(std::move(pending_options_));
}

void Connection::StartResumable(const std::string& leftover) {
  resumable_ = std::make_unique<ResumableStream>();
  resumable_->on_wire = [this](std::string w) {
    if (!tls_) return;
    Status s = tls_->Write(w.data(), w.size());
    if (!s.ok()) StreamLost(s.message().c_str());
  };
  resumable_->on_data = [this](const char* d, size_t n) {
    if (in_.size() < in_used_ + n) in_.resize(std::max(in_used_ + n, size_t(65536)));
    memcpy(in_.data() + in_used_, d, n);
    in_used_ += n;
  };
  resumable_->on_acked = [this] { Resume(); };
  resumable_->on_bye = [this] { bye_ = true; };
  (void)resumable_->Attach(0);
  WatchSilence();
  if (!leftover.empty()) OnPlaintext(leftover.data(), leftover.size());
}

// A redial naming a session: its socket and TLS engine go to the loop of
// the connection that owns the session; this connection then ends.
void Connection::HandOver(const ResumableHello& hello, std::string leftover) {
  SessionRegistry::Post post;
  if (!options_.sessions->Claim(hello.id, identity_, &post)) {
    Log("%s: identity '%s' named session %s, which this server does not have (restarted, or "
        "its lease ended)", peer_.c_str(), identity_.c_str(), hello.id.c_str());
    std::string e = "error unknown session\n";
    (void)tls_->Write(e.data(), e.size());
    Drain();
    return;
  }
  StopReading();
  uv_os_fd_t fd = -1;
  int moved = uv_fileno(reinterpret_cast<uv_handle_t*>(stream_), &fd) == 0
                  ? fcntl(fd, F_DUPFD_CLOEXEC, 0)
                  : -1;
  if (moved < 0) {
    options_.sessions->Unclaim(hello.id);
    return Close("cannot hand the socket over");
  }
  handed_over_ = true;
  auto* engine = tls_.release();
  engine->on_plaintext = nullptr;
  engine->on_ciphertext = nullptr;
  engine->on_ready = nullptr;
  SessionRegistry* sessions = options_.sessions;
  std::string id = hello.id, peer = peer_;
  uint64_t received = hello.received;
  post([sessions, id, moved, engine, peer, received, leftover] {
    std::unique_ptr<tls::TlsEngine> tls(engine);
    Connection* owner = sessions->Owner(id);
    sessions->Unclaim(id);
    if (!owner || owner->closing_) {
      Log("%s: session %s ended before its redial arrived", peer.c_str(), id.c_str());
      close(moved);
      return;
    }
    auto* tcp = new uv_tcp_t;
    uv_tcp_init(owner->loop_, tcp);
    if (uv_tcp_open(tcp, moved) != 0) {
      close(moved);
      uv_close(reinterpret_cast<uv_handle_t*>(tcp), DeleteStream);
      return;
    }
    owner->Adopt(reinterpret_cast<uv_stream_t*>(tcp), std::move(tls), peer, received, leftover);
  });
  Close(nullptr);
}

void Connection::Adopt(uv_stream_t* stream, std::unique_ptr<tls::TlsEngine> tls, std::string peer,
                       uint64_t peer_received, std::string leftover) {
  if (closing_ || !resumable_) {
    uv_close(reinterpret_cast<uv_handle_t*>(stream), DeleteStream);
    return;
  }
  if (stream_) Detach("replaced by a redial");
  stream_ = stream;
  stream_->data = this;
  open_handles_++;
  tls_ = std::move(tls);
  BindTls();
  uv_os_fd_t fd;
  if (tls_->records() == tls::TlsEngine::Records::kKernel &&
      (uv_fileno(reinterpret_cast<uv_handle_t*>(stream_), &fd) != 0 || !StartKernelTlsReads(fd)))
    return Close("cannot read the redial's kernel TLS socket");
  uint64_t resend = resumable_->sent() - std::min(resumable_->sent(), peer_received);
  std::string ok = "ok " + session_id_ + " " + std::to_string(resumable_->received()) + " " +
                   kServerFeatures + "\n";
  Status s = tls_->Write(ok.data(), ok.size());
  if (s.ok()) s = resumable_->Attach(peer_received);
  if (!s.ok()) return Close(s.message().c_str());
  Log("%s: session %s resumed from %s (%llu bytes sent again)", peer_.c_str(), session_id_.c_str(),
      peer.c_str(), (unsigned long long)resend);
  WatchSilence();
  if (!leftover.empty()) OnPlaintext(leftover.data(), leftover.size());
  Resume();
}

// An attached resumable session whose relay (which pings every 5 s) has
// been silent for options_.session_silence: the path is dead even if TCP has not noticed;
// detach, so that the lease runs and a vanished client's fids and locks
// are freed in the end.
void Connection::WatchSilence() {
  heard_at_ = uv_now(loop_);
  uv_timer_start(
      timer_,
      [](uv_timer_t* t) {
        auto* c = static_cast<Connection*>(t->data);
        // Not reading (back-pressure) is no silence of the peer's.
        if (!c->reading_) c->heard_at_ = uv_now(c->loop_);
        uint64_t silence = uint64_t(c->options_.session_silence.count());
        if (uv_now(c->loop_) - c->heard_at_ > silence)
          c->StreamLost(("nothing heard for " + std::to_string(silence / 1000) + " s").c_str());
      },
      uint64_t(options_.session_silence.count()) / 6 + 1,
      uint64_t(options_.session_silence.count()) / 6 + 1);
}

void Connection::BindTls() {
  tls_->on_ciphertext = [this](std::string b) { WriteRaw(std::move(b)); };
  tls_->on_plaintext = [this](const char* d, size_t n) { OnPlaintext(d, n); };
  tls_->on_ready = [this] { OnHandshake(); };
}

void Connection::StreamLost(const char* why) {
  if (closing_) return;
  if (resumable_ && !bye_ && stream_) return Detach(why);
  if (!resumable_ || bye_) Close(why);
}

void Connection::Detach(const char* why) {
  Log("%s: session %s detached (%s); kept %lld s for a redial", peer_.c_str(), session_id_.c_str(),
      why ? why : "peer closed", (long long)(options_.session_lease.count() / 1000));
  resumable_->Detach();
  // The socket is gone: no close_notify. Freed once the socket is closed
  // (this may run inside the engine's own Feed or Write).
  retired_tls_ = std::move(tls_);
  CloseStream();
  uv_timer_start(
      timer_,
      [](uv_timer_t* t) {
        auto* c = static_cast<Connection*>(t->data);
        if (c->options_.sessions->Claimed(c->session_id_)) {
          uv_timer_start(t, t->timer_cb, 1000, 0);  // its redial is on its way
          return;
        }
        c->Close("session lease over");
      },
      uint64_t(options_.session_lease.count()), 0);
}

struct Connection::KtlsPoll {
  uv_poll_t handle;  // first: the uv callbacks get its address
  int fd;            // a duplicate of the stream's socket
};

void Connection::CloseStream() {
  StopReading();
  if (ktls_poll_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&ktls_poll_->handle), [](uv_handle_t* h) {
      auto* kp = reinterpret_cast<KtlsPoll*>(h);
      auto* c = static_cast<Connection*>(h->data);
      close(kp->fd);
      delete kp;
      c->HandleClosed();
    });
    ktls_poll_ = nullptr;
  }
  if (!stream_) return;
  uv_close(reinterpret_cast<uv_handle_t*>(stream_), [](uv_handle_t* h) {
    auto* c = static_cast<Connection*>(h->data);
    DeleteStream(h);
    c->retired_tls_.reset();
    c->HandleClosed();
  });
  stream_ = nullptr;
}

// Where the kernel has TLS, it seals and opens this TCP connection's
// records from now on; otherwise the userspace record layer does.
// False when that failed half-way and the connection is closed.
bool Connection::MoveToKernelTls() {
  if (stream_->type != UV_TCP || !tls::KernelTlsMayWork()) return true;
  auto keys = tls_->KeysForKernel();
  if (!keys.ok()) return true;
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(stream_), &fd) != 0) {
    keys->Wipe();
    return true;
  }
  Status s = tls::InstallKernelTls(fd, *keys);
  keys->Wipe();
  if (s.ok()) {
    tls_->MovedToKernel();
    if (!StartKernelTlsReads(fd)) return false;
  } else if (s.err() != ENOENT) {
    Log("%s: kernel TLS: %s", peer_.c_str(), s.message().c_str());
    Close("kernel TLS failed");
    return false;
  }
  return true;
}

// From now on the socket is read through ktls_poll_ (OnKernelTlsReadable),
// not the stream: libuv would take the peer's close_notify for a read error.
bool Connection::StartKernelTlsReads(int fd) {
  StopReading();
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) {
    Log("%s: kernel TLS: dup: %s", peer_.c_str(), strerror(errno));
    Close("kernel TLS failed");
    return false;
  }
  auto* kp = new KtlsPoll{{}, dup};
  int rc = uv_poll_init(loop_, &kp->handle, dup);
  if (rc != 0) {
    delete kp;
    close(dup);
    Log("%s: kernel TLS: uv_poll_init: %s", peer_.c_str(), uv_strerror(rc));
    Close("kernel TLS failed");
    return false;
  }
  kp->handle.data = this;
  ktls_poll_ = kp;
  open_handles_++;
  return true;
}

void Connection::OnKernelTlsReadable() {
  // A bounded number of reads per wakeup, as libuv does for streams.
  for (int i = 0; i < 32 && reading_ && !closing_; i++) {
    // Plaintext straight into the frame buffer, as on a plain connection;
    // a session line or a resumable stream's frames through OnPlaintext.
    bool framed = hello_pending_ || resumable_;
    size_t want = in_used_ + 65536;
    if (framed) cipher_in_.resize(65536);
    else if (in_.size() < want) in_.resize(std::max(want, in_.size() * 2));
    auto r = framed ? tls::ReadKernelTls(ktls_poll_->fd, cipher_in_.data(), cipher_in_.size())
                    : tls::ReadKernelTls(ktls_poll_->fd, in_.data() + in_used_, in_.size() - in_used_);
    if (!r.ok()) {
      if (resumable_ && !bye_) return StreamLost(r.status().message().c_str());
      Close(r.status().err() == ECONNRESET ? nullptr : r.status().message().c_str());
      return;
    }
    switch (r->kind) {
      case tls::KernelTlsRead::kAgain:
        return;
      case tls::KernelTlsRead::kEnd:
        if (resumable_ && !bye_) return StreamLost(nullptr);
        return InputEnded();
      case tls::KernelTlsRead::kData:
        heard_at_ = uv_now(loop_);
        if (framed) {
          feeding_ = true;
          OnPlaintext(cipher_in_.data(), r->len);
          feeding_ = false;
          if (handover_) {
            auto h = std::move(handover_);
            return HandOver(h->first, std::move(h->second));
          }
          break;
        }
        in_used_ += r->len;
        ProcessFrames();
        break;
    }
  }
}

void Connection::TakeClaim() {
  size_t n = std::min(in_used_, kClaimPrefix.size());
  if (in_.compare(0, n, kClaimPrefix.data(), n) != 0) {
    claim_pending_ = false;  // a 9P client: no claim
    StartSession(options_.session);
    return;
  }
  size_t nl = in_.find('\n', 0);
  if (nl < in_used_ && nl > kMaxClaimLine) return Close("identity claim line too long");
  if (nl >= in_used_) {
    if (in_used_ > kMaxClaimLine) Close("identity claim line too long");
    return;  // wait for the rest of the line
  }
  claim_pending_ = false;
  std::string line = in_.substr(0, nl);
  memmove(in_.data(), in_.data() + nl + 1, in_used_ - nl - 1);
  in_used_ -= nl + 1;
  std::string identity;
  auto opts = options_.claim(line, &identity);
  if (!opts.ok()) {
    Log("%s: claim refused: %s", peer_.c_str(), opts.status().message().c_str());
    WriteRaw("error: " + opts.status().message() + "\n");
    in_used_ = 0;
    Drain();  // closes once the answer is written
    return;
  }
  identity_ = identity;
  claim_accepted_ = true;
  Log("%s: local claim accepted: identity '%s' root=\"%s\"%s", peer_.c_str(), identity.c_str(),
      QuotedForLog(opts->rule.root.empty() ? "/" : opts->rule.root).c_str(),
      opts->rule.read_only ? " read-only" : "");
  WriteRaw("ok\n");
  StartSession(*opts);
}

void Connection::StartSession(p9::SessionOptions options) {
  if (options_.meter) {
    std::string transport = tls_ ? std::string("tls-") + tls_->records_name()
                            : claim_accepted_ ? "unix-claim"
                            : stream_->type == UV_NAMED_PIPE ? "unix" : "tcp";
    options_.meter->Started(identity_, transport);
  }
  options.peer = peer_;
  if (!identity_.empty()) options.peer += "/" + identity_;
  session_ = std::make_shared<p9::Session>(
      fs_, locks_, std::move(options), [this](std::string f) { Send(std::move(f)); },
      [this](const char* why) { Close(why); });
  session_->on_reply = [this] {
    Resume();
    MaybeFinishDrain();
  };
  UpdateReading();
  if (in_used_) ProcessFrames();
}

// Budget freed (a reply sent or written): take the frames that waited,
// then read again if there is still room.
void Connection::Resume() {
  if (closing_) return;
  if (!processing_ && session_ && !draining_ && in_used_ >= 4 && CanTakeMore()) ProcessFrames();
  if (closing_) return;
  ReleaseIdleBuffers();
  UpdateReading();
}

bool Connection::CanTakeMore() const {
  size_t queued = stream_ ? uv_stream_get_write_queue_size(stream_) : 0;
  return session_ && session_->in_flight() < kMaxInFlight &&
         session_->reserved_bytes() + queued < kMaxQueuedBytes &&
         (!resumable_ || resumable_->unacked() < kMaxUnacked);
}

void Connection::UpdateReading() {
  if (closing_ || !stream_) return;
  // A resumable session keeps reading while only 9P frames are held back
  // (up to kMaxUnacked of them): the peer's ACKs come in on the same
  // stream, and without them it would never take more.
  bool want = !draining_ && !input_ended_ &&
              (!session_ || CanTakeMore() || (resumable_ && in_used_ < kMaxUnacked));
  if (ktls_poll_ && !session_ && !hello_pending_) want = false;
  if (want == reading_) return;
  if (!want) return StopReading();
  reading_ = true;
  if (ktls_poll_) {
    uv_poll_start(&ktls_poll_->handle, UV_READABLE, [](uv_poll_t* p, int status, int) {
      auto* c = static_cast<Connection*>(p->data);
      if (status < 0) return c->StreamLost(uv_strerror(status));
      c->OnKernelTlsReadable();
    });
    return;
  }
  uv_read_start(
      stream_,
      [](uv_handle_t* h, size_t, uv_buf_t* buf) {
        auto* c = static_cast<Connection*>(h->data);
        if (c->tls_) {
          c->cipher_in_.resize(17 * 1024);
          *buf = uv_buf_init(c->cipher_in_.data(), unsigned(c->cipher_in_.size()));
          return;
        }
        // Plain: read straight into the frame buffer, at least 64 KiB free.
        size_t want = c->in_used_ + 65536;
        if (c->in_.size() < want) c->in_.resize(std::max(want, c->in_.size() * 2));
        *buf = uv_buf_init(c->in_.data() + c->in_used_, unsigned(c->in_.size() - c->in_used_));
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        static_cast<Connection*>(s->data)->OnRead(n, buf);
      });
}

void Connection::StopReading() {
  if (!reading_) return;
  reading_ = false;
  if (ktls_poll_)
    uv_poll_stop(&ktls_poll_->handle);
  else if (stream_)
    uv_read_stop(stream_);
}

void Connection::OnRead(ssize_t n, const uv_buf_t* buf) {
  if (n == 0) return;
  if (n > 0) heard_at_ = uv_now(loop_);
  if (n < 0 && resumable_ && !bye_) return StreamLost(n == UV_EOF ? nullptr : uv_strerror(int(n)));
  if (n == UV_EOF && session_ && (!tls_ || tls_->ready())) return InputEnded();
  if (n < 0) {
    if (tls_ && !tls_->ready() && options_.on_handshake)
      options_.on_handshake(false, false, "peer closed during handshake");
    Close(n == UV_EOF || n == UV_ECONNRESET ? nullptr : uv_strerror(int(n)));
    return;
  }
  if (!tls_) {
    in_used_ += size_t(n);
    if (claim_pending_) return TakeClaim();
    ProcessFrames();
    return;
  }
  bool was_ready = tls_->ready();
  feeding_ = true;
  Status s = tls_->Feed(buf->base, size_t(n));
  feeding_ = false;
  if (s.ok() && handover_) {
    auto h = std::move(handover_);
    return HandOver(h->first, std::move(h->second));
  }
  if (!s.ok() && resumable_ && !bye_) return StreamLost(s.message().c_str());
  // close_notify after the handshake: as a half-close (what it sent before
  // has been handed to the session already).
  if (!s.ok() && s.err() == ECONNRESET && was_ready && session_ && !closing_) return InputEnded();
  if (!s.ok() && !closing_) {
    if (!was_ready && !tls_->ready() && options_.on_handshake)
      options_.on_handshake(false, !tls_->identity().empty(), (tls_->identity().empty()
                                        ? std::string("no identity")
                                        : "identity '" + tls_->identity() + "'" +
                                              (tls_->identity_known() ? "" : " (unknown)")) +
                                       ": " + s.message());
    Close(s.err() == ECONNRESET ? nullptr : s.message().c_str());
    return;
  }
}

void Connection::InputEnded() {
  // Half-close (FIN, or TLS close_notify): answer what was received, then
  // close (MaybeFinishDrain; a TLS connection sends its close_notify then).
  input_ended_ = true;
  StopReading();
  if (!processing_ && in_used_ >= 4 && CanTakeMore()) ProcessFrames();
  MaybeFinishDrain();
}

void Connection::OnPlaintext(const char* data, size_t len) {
  if (closing_) return;
  if (resumable_) {
    Status s = resumable_->Feed(data, len);
    if (!s.ok()) return Close(s.message().c_str());
    if (bye_ && !input_ended_) return InputEnded();
    ProcessFrames();
    return;
  }
  if (in_.size() < in_used_ + len) in_.resize(std::max(in_used_ + len, size_t(65536)));
  memcpy(in_.data() + in_used_, data, len);
  in_used_ += len;
  if (hello_pending_) return TakeHello();
  if (session_) ProcessFrames();
}

void Connection::ProcessFrames() {
  if (processing_) return;
  processing_ = true;
  size_t pos = 0;
  while (!closing_ && in_used_ - pos >= 4 && CanTakeMore()) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(in_.data()) + pos;
    uint32_t size = uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 |
                    uint32_t(p[3]) << 24;
    if (size < p9::kHeaderSize) {
      processing_ = false;
      Close("frame size below 9P header size");
      return;
    }
    if (size > session_->max_frame()) {
      processing_ = false;
      Close("frame larger than msize");
      return;
    }
    if (in_used_ - pos < size) {
      if (in_.size() < pos + size) in_.resize(pos + size);
      break;
    }
    if (options_.meter) options_.meter->Request(p, size);
    session_->OnFrame(p, size);
    pos += size;
  }
  processing_ = false;
  if (closing_) return;
  if (pos) {
    memmove(in_.data(), in_.data() + pos, in_used_ - pos);
    in_used_ -= pos;
  }
  ReleaseIdleBuffers();
  UpdateReading();
}

// An idle connection (nothing buffered, nothing in flight) keeps no read
// buffers: thousands of idle clients must stay cheap. Busy connections keep
// theirs to avoid an allocation per request.
void Connection::ReleaseIdleBuffers() {
  if (in_used_ != 0 || !session_) return;
  if (session_->in_flight() == 0 || in_.size() > (4u << 20)) {
    std::string().swap(in_);
    // Not under the engine's feet: it reads a trailing partial record
    // from this buffer after handing over the plaintext before it.
    if (!feeding_) std::string().swap(cipher_in_);
  }
}

void Connection::Send(std::string frame) {
  if (closing_) return;
  if (options_.meter && session_)
    options_.meter->Reply(reinterpret_cast<const uint8_t*>(frame.data()), frame.size(),
                          DialectName(session_->dialect()));
  if (resumable_) return resumable_->Send(frame.data(), frame.size());
  if (!tls_) return WriteRaw(std::move(frame));
  Status s = tls_->Write(frame.data(), frame.size());
  if (!s.ok()) Close(s.message().c_str());
}

void Connection::WriteRaw(std::string bytes) {
  if (!stream_ || uv_is_closing(reinterpret_cast<uv_handle_t*>(stream_))) return;
  auto* w = new WriteReq;
  w->data = std::move(bytes);
  w->conn = this;
  uv_buf_t buf = uv_buf_init(w->data.data(), unsigned(w->data.size()));
  writes_pending_++;
  int rc = uv_write(&w->req, stream_, &buf, 1, [](uv_write_t* req, int status) {
    auto* w = reinterpret_cast<WriteReq*>(req);
    Connection* c = w->conn;
    bool current = req->handle == c->stream_;
    delete w;
    c->writes_pending_--;
    if (status < 0 && status != UV_ECANCELED && current) c->StreamLost(uv_strerror(status));
    c->Resume();
    c->MaybeFinishDrain();
  });
  if (rc < 0) {
    writes_pending_--;
    delete w;
    Close(uv_strerror(rc));
  }
}

void Connection::Drain() {
  draining_ = true;
  StopReading();
  MaybeFinishDrain();
}

void Connection::MaybeFinishDrain() {
  if ((draining_ || input_ended_) && !closing_ && (!session_ || session_->in_flight() == 0) &&
      writes_pending_ == 0)
    Close(nullptr);
}

void Connection::HandleClosed() {
  if (--open_handles_ > 0) return;
  if (on_closed) on_closed(this);
  delete this;
}

void Connection::Close(const char* why) {
  if (closing_) return;
  closing_ = true;
  if (why) Log("%s: closing connection: %s", peer_.c_str(), why);
  else Log("%s: disconnected", peer_.c_str());
  if (session_) session_->Shutdown();
  if (!session_id_.empty()) options_.sessions->Remove(session_id_, this);
  if (tls_ && stream_) tls_->Close();  // close_notify, written before the handle closes
  // On kernel TLS the close_notify is a record of its own type (a control
  // message): sent here once every reply has reached the socket, so that
  // it comes after them.
  if (ktls_poll_ && stream_ && !handed_over_ && uv_stream_get_write_queue_size(stream_) == 0) {
    Status s = tls::SendKernelCloseNotify(ktls_poll_->fd);
    if (!s.ok() && s.err() != EPIPE && s.err() != ECONNRESET)
      Log("%s: %s", peer_.c_str(), s.message().c_str());
  }
  if (timer_) {
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* h) { static_cast<Connection*>(h->data)->HandleClosed(); });
  }
  CloseStream();
}

}  // namespace muscle::transport
