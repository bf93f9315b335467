#include "transport/relay.h"

#include <netdb.h>
#include <unistd.h>

#include <sys/random.h>

#include <cstring>

#include "9p/restore_book.h"
#include "transport/stall_watch.h"
#include "common/log.h"
#include "tls/ktls.h"
#include "transport/resumable.h"

namespace muscle::transport {

namespace {
constexpr size_t kHighWater = 4u << 20;

struct Write {
  uv_write_t req;
  std::string data;
};
}  // namespace

// One local stream and its TLS connection to the server (a new one after
// each drop, with options_.reconnect).
class Relay::Pair {
 public:
  Pair(Relay& relay, uv_stream_t* local) : relay_(relay), local_(local) {
    if (local_) {
      local_->data = this;
      open_++;
    }
    if (relay_.options_.reconnect) {
      NewStream();
      uint64_t op_base = 0;
      while (getrandom(&op_base, sizeof op_base, 0) != sizeof op_base) {
      }
      book_ = std::make_unique<p9::RestoreBook>(op_base);
      book_->on_restored = [this](const p9::RestoreBook::Restored& r) {
        Log("relay: session restored on the server's new session %s in %.1f s: %zu fids bound "
            "again (%zu reopened), %zu left to bind on first use, %zu lost (ESTALE), %zu locks "
            "reclaimed (%zu lost), %zu requests sent again",
            id_.c_str(), double(uv_now(relay_.loop_) - restore_at_) / 1000, r.fids, r.opened,
            r.deferred, r.lost, r.locks, r.locks_lost, r.resent);
        restore_at_ = 0;
        relay_.restores_++;
        relay_.deferred_fids_ += r.deferred;
        MaybeResumeLocal();
      };
      book_->on_fatal = [this](const std::string& why) { Close("cannot restore the session: " + why); };
      for (uv_timer_t* t : {&keepalive_, &redial_, &soft_, &grace_}) {
        uv_timer_init(relay_.loop_, t);
        t->data = this;
        open_++;
      }
    }
  }

  void Start(bool probe) {
    probe_ = probe;
    if (stream_ && !probe_)
      uv_timer_start(
          &keepalive_, [](uv_timer_t* t) { static_cast<Pair*>(t->data)->Keepalive(); },
          uint64_t(relay_.options_.keepalive.count()), uint64_t(relay_.options_.keepalive.count()));
    Dial();
  }

  void Close(const std::string& error) {
    if (closing_) return;
    closing_ = true;
    error_ = error;
    if (tls_ && remote_ && !bye_sent_) tls_->Close();
    DropRemote();
    if (local_) uv_close(reinterpret_cast<uv_handle_t*>(local_), OnHandleClosed);
    if (stream_) {
      for (uv_timer_t* t : {&keepalive_, &redial_, &soft_, &grace_})
        uv_close(reinterpret_cast<uv_handle_t*>(t), OnHandleClosed);
    }
    if (open_ == 0) Finish();
  }

  std::string error_;
  bool ready_ = false;
  bool heard_from_server_ = false;  // any bytes back before the handshake ended

 private:
  static constexpr size_t kMaxUnacked = 16u << 20;
  static constexpr uint64_t kGraceRetryMs = 500;
  // Redials back off from 100 ms to this: I/O resumes at most this long
  // (plus a handshake) after the server or the network is back.
  static constexpr uint64_t kMaxBackoffMs = 800;
  uv_stream_t* Remote() { return reinterpret_cast<uv_stream_t*>(remote_); }

  // A fresh numbered stream (at start, and for a new server session).
  void NewStream() {
    stream_ = std::make_unique<ResumableStream>();
    stream_->on_wire = [this](std::string w) {
      if (tls_ && remote_) Check(tls_->Write(w.data(), w.size()));
    };
    stream_->on_data = [this](const char* d, size_t n) { FromServer(d, n); };
    stream_->on_acked = [this] { MaybeResumeLocal(); };
  }

  // The server accepted a session (or one is to be restored): a lost
  // connection is redialled.
  bool HasSession() const { return !id_.empty() || restore_pending_; }

  bool LocalHeld() const {
    return stream_->unacked() > kMaxUnacked || book_->held_bytes() > kMaxUnacked;
  }
  void MaybeResumeLocal() {
    if (local_ && local_paused_ && !local_eof_ && !LocalHeld()) {
      local_paused_ = false;
      StartReading(local_);
    }
  }

  // Whole 9P frames only, both ways, through the book (a frame cut by a
  // server restart is never half delivered).
  void FromServer(const char* d, size_t n) {
    from_server_.Append(d, n);
    std::string to_server, to_client;
    for (auto f = from_server_.Next(); !f.empty(); f = from_server_.Next())
      book_->FromServer(f, to_server, to_client);
    if (from_server_.bad()) return Close("the server sent a malformed 9P frame");
    Deliver(to_server, to_client);
    // Locks the server holds back in its grace period: asked again soon.
    if (book_->has_graced() && !closing_ && !uv_is_active(reinterpret_cast<uv_handle_t*>(&grace_)))
      uv_timer_start(
          &grace_,
          [](uv_timer_t* t) {
            auto* p = static_cast<Pair*>(t->data);
            std::string to_server, to_client;
            p->book_->RetryGraced(to_server);
            p->Deliver(to_server, to_client);
          },
          kGraceRetryMs, 0);
  }
  void FromLocal(const char* d, size_t n) {
    from_local_.Append(d, n);
    std::string to_server, to_client;
    for (auto f = from_local_.Next(); !f.empty(); f = from_local_.Next()) {
      // The server closes a connection for such a frame; the book would
      // send it again on every new connection, for ever.
      if (book_->msize() && f.size() > book_->msize()) {
        Deliver(to_server, to_client);
        return Close("the local client sent a frame of " + std::to_string(f.size()) +
                     " bytes, larger than msize " + std::to_string(book_->msize()));
      }
      book_->FromClient(f, to_server, to_client);
    }
    if (from_local_.bad()) return Close("the local client sent a malformed 9P frame");
    Deliver(to_server, to_client);
  }
  void Deliver(std::string& to_server, std::string& to_client) {
    if (closing_) return;
    if (!to_server.empty()) stream_->Send(to_server.data(), to_server.size());
    if (!to_client.empty()) Send(local_, std::move(to_client));
  }

  // The server no longer has the session: a new one, on which the book
  // restores the conversation (restore_book.h). False when it cannot.
  bool StartRestore(const std::string& why) {
    if (!book_->CanRestore()) return false;
    Log("relay: the server no longer has session %s (%s): it restarted or the lease ended; "
        "opening a new session to restore %zu fids and %zu waiting requests",
        id_.c_str(), why.c_str(), book_->fids(), book_->waiting());
    book_->Lost();
    AbandonSession();
    MaybeResumeLocal();
    return true;
  }
  // Forgets the server's session: the next connection opens a new one.
  void AbandonSession() {
    id_.clear();
    restore_pending_ = true;
    if (restore_at_ == 0) restore_at_ = lost_at_ ? lost_at_ : uv_now(relay_.loop_);
    NewStream();
    from_server_.Clear();
  }

  // --soft: every request waiting, and every new one until the session is
  // restored, fails with EIO. Returns how many were waiting.
  size_t FailWaiting() {
    std::string out;
    size_t n = book_->waiting();
    book_->Fail(EIO, out);
    if (!out.empty()) Send(local_, std::move(out));
    return n;
  }

  // --soft: the server has been away for options_.soft; everything
  // waiting fails, and new requests fail at once, until it is back.
  void SoftExpired() {
    if (closing_ || (stream_->attached() && !restore_pending_)) return;
    if (!book_->CanRestore() && !book_->failing()) return Close("the server is away (--soft)");
    size_t n = FailWaiting();
    Log("relay: the server has been away for %lld s (--soft): %zu waiting requests fail with EIO, "
        "and new ones until it is back",
        (long long)relay_.options_.soft.count(), n);
    if (!restore_pending_) AbandonSession();
    // A hello already sent would be answered for the old session.
    if (remote_ && !stream_->attached()) Failed("", false);
    MaybeResumeLocal();
  }

  void Dial() {
    remote_ = new uv_tcp_t;
    uv_tcp_init(relay_.loop_, remote_);
    remote_->data = this;
    open_++;
    ready_ = heard_from_server_ = remote_paused_ = answer_pending_ = false;
    answer_.clear();
    last_heard_ = uv_now(relay_.loop_);
    tls_ = std::make_unique<tls::TlsEngine>(*relay_.tls_);
    tls_->on_ciphertext = [this](std::string b) { Send(Remote(), std::move(b)); };
    tls_->on_plaintext = [this](const char* d, size_t n) { OnPlaintext(d, n); };
    tls_->on_ready = [this] {
      ready_ = true;
      if (probe_) {
        Close("");
        return;
      }
      if (!MoveToKernelTls() || !stream_) return;
      ResumableHello h;
      h.resume = !id_.empty();
      h.id = id_;
      h.received = stream_->received();
      std::string line = FormatHello(h);
      answer_pending_ = true;
      Check(tls_->Write(line.data(), line.size()));
    };
    auto* c = new uv_connect_t;
    c->data = this;
    int rc = uv_tcp_connect(c, remote_, reinterpret_cast<const sockaddr*>(&relay_.server_addr_),
                            [](uv_connect_t* c, int status) {
                              auto* p = static_cast<Pair*>(c->data);
                              bool current = c->handle == p->Remote();
                              delete c;
                              if (current && !p->closing_) p->OnConnect(status);
                            });
    if (rc) {
      delete c;
      Failed(std::string("cannot connect to the server: ") + uv_strerror(rc), false);
    }
  }

  // The connection to the server failed: a resumable session that the
  // server accepted redials; anything else ends the pair.
  void Failed(const std::string& why, bool fatal) {
    if (closing_) return;
    if (!stream_ || !HasSession() || fatal) return Close(why);
    if (remote_ && stream_->attached()) {
      Log("relay: connection to the server lost (%s); session %s waits for a redial",
          why.empty() ? "closed" : why.c_str(), id_.c_str());
      if (lost_at_ == 0) {
        lost_at_ = uv_now(relay_.loop_);
        if (relay_.options_.soft.count() > 0)
          uv_timer_start(
              &soft_, [](uv_timer_t* t) { static_cast<Pair*>(t->data)->SoftExpired(); },
              uint64_t(relay_.options_.soft.count()) * 1000, 0);
      }
    } else if (TraceEnabled()) {
      Log("relay: redial failed: %s", why.c_str());
    }
    DropRemote();
    stream_->Detach();
    backoff_ = backoff_ == 0 ? 100 : std::min<uint64_t>(backoff_ * 2, kMaxBackoffMs);
    uv_timer_start(
        &redial_, [](uv_timer_t* t) { static_cast<Pair*>(t->data)->Dial(); }, backoff_, 0);
  }

  void DropRemote() {
    if (!remote_) return;
    uv_close(reinterpret_cast<uv_handle_t*>(remote_), [](uv_handle_t* h) {
      auto* p = static_cast<Pair*>(h->data);
      delete reinterpret_cast<uv_tcp_t*>(h);
      p->retired_.clear();
      if (--p->open_ == 0 && p->closing_) p->Finish();
    });
    remote_ = nullptr;
    // Not freed here: this may run inside the engine's own Feed or Write.
    retired_.push_back(std::move(tls_));
  }

  void Keepalive() {
    if (!remote_ || closing_) return;
    uint64_t quiet = uv_now(relay_.loop_) - last_heard_;
    if (quiet > 3 * uint64_t(relay_.options_.keepalive.count()))
      return Failed("nothing from the server for " + std::to_string(quiet / 1000) + " s", false);
    if (stream_->attached()) stream_->Ping();
    // The connection is alive (keepalives answered) but the restore's own
    // requests are not (the server's store is stuck or very slow): said
    // in the log; a hard mount goes on waiting (the steps are on their
    // way, and a new session would meet this one's reclaimed locks), a
    // soft one fails what waits, as if the server were away, and starts
    // over on a new session.
    bool restoring = book_->restoring() && !book_->failing() && !restore_pending_ &&
                     stream_->attached();
    if (!restore_watch_.Tick(restoring, book_->progress())) return;
    if (relay_.options_.soft.count() == 0) {
      Log("relay: the restore on session %s has made no progress for about %lld s (%zu fids, %zu "
          "requests waiting); still waiting",
          id_.c_str(), (long long)(kRestoreStallTicks * relay_.options_.keepalive.count() / 1000),
          book_->fids(), book_->waiting());
      return;
    }
    size_t n = FailWaiting();
    Log("relay: the restore on session %s has made no progress for about %lld s (--soft): %zu "
        "waiting requests fail with EIO; starting over on a new session",
        id_.c_str(), (long long)(kRestoreStallTicks * relay_.options_.keepalive.count() / 1000), n);
    AbandonSession();
    MaybeResumeLocal();
    Failed("the restore made no progress", false);
  }

  void Check(const Status& s) {
    if (!s.ok()) Failed(s.message(), false);
  }

  void OnPlaintext(const char* d, size_t n) {
    if (!stream_) return Send(local_, std::string(d, n));
    if (closing_) return;
    if (answer_pending_) {
      answer_.append(d, n);
      size_t nl = answer_.find('\n');
      if (nl == std::string::npos) {
        if (answer_.size() > kMaxHelloLine) Close("the server's session answer is too long");
        return;
      }
      answer_pending_ = false;
      std::string id, features, rest = answer_.substr(nl + 1);
      uint64_t server_received = 0;
      Status s = ParseHelloAnswer(answer_.substr(0, nl), &id, &server_received, &features);
      answer_.clear();
      if (!s.ok()) {
        bool was_resume = !id_.empty();
        if (s.err() == ESTALE && StartRestore(s.message())) {
          // The server is there and forgot the session: the new one at
          // once (not when a new session was refused).
          if (was_resume) backoff_ = 0;
          return Failed("the server no longer has the session", false);
        }
        if (s.err() == ESTALE)
          return Close("the server no longer has this session (" + s.message() +
                       "): it restarted or the session's lease ended");
        return Close(s.message());
      }
      bool resumed = !id_.empty();
      if (resumed && id != id_) return Close("the server answered for another session");
      id_ = id;
      book_->set_once((" " + features + " ").find(" once ") != std::string::npos);
      book_->set_locks((" " + features + " ").find(" locks ") != std::string::npos);
      uint64_t resend = stream_->sent() - std::min(stream_->sent(), server_received);
      s = stream_->Attach(server_received);
      if (!s.ok()) return Close("cannot resume the session: " + s.message());
      if (resumed)
        Log("relay: session %s resumed after %.1f s (%llu bytes sent again)", id_.c_str(),
            double(uv_now(relay_.loop_) - lost_at_) / 1000, (unsigned long long)resend);
      lost_at_ = 0;
      backoff_ = 0;
      uv_timer_stop(&soft_);
      if (restore_pending_) {
        if (!book_->CanRestore())
          return Close("the server no longer has this session and cannot restore it (it does not "
                       "answer Tonce)");
        restore_pending_ = false;
        std::string out;
        book_->Restore(out);
        stream_->Send(out.data(), out.size());
      }
      if (rest.empty()) return;
      d = rest.data();
      n = rest.size();
      return Feed(d, n);
    }
    Feed(d, n);
  }

  void Feed(const char* d, size_t n) {
    Status s = stream_->Feed(d, n);
    if (!s.ok()) Close("the server broke the session's framing: " + s.message());
  }

  // Where the kernel has TLS, it seals and opens the server connection's
  // records; the relay then only copies plaintext. False when the pair
  // closed.
  bool MoveToKernelTls() {
    if (!tls::KernelTlsMayWork()) return true;
    auto keys = tls_->KeysForKernel();
    if (!keys.ok()) return true;
    uv_os_fd_t fd;
    Status s = uv_fileno(reinterpret_cast<uv_handle_t*>(remote_), &fd) == 0
                   ? tls::InstallKernelTls(fd, *keys)
                   : Status(ENOENT, "no descriptor");
    keys->Wipe();
    if (s.ok()) {
      tls_->MovedToKernel();
      if (!relay_.kernel_tls_logged_) {
        relay_.kernel_tls_logged_ = true;
        Log("relay: the kernel seals and opens the TLS records (kernel TLS)");
      }
    } else if (s.err() != ENOENT) {
      Close("kernel TLS: " + s.message());
      return false;
    }
    return true;
  }

  static void OnHandleClosed(uv_handle_t* h) {
    auto* p = static_cast<Pair*>(h->data);
    if (--p->open_ == 0) p->Finish();
  }

  void Finish() {
    relay_.pairs_.erase(this);
    if (relay_.on_pair_closed) relay_.on_pair_closed(error_);
    if (local_) {
      if (local_->type == UV_TCP) delete reinterpret_cast<uv_tcp_t*>(local_);
      else delete reinterpret_cast<uv_pipe_t*>(local_);
    }
    delete this;
  }

  void OnConnect(int status) {
    if (status < 0) {
      return Failed("cannot connect to " + relay_.options_.server_host + ":" +
                        std::to_string(relay_.options_.server_port) + ": " + uv_strerror(status),
                    false);
    }
    uv_tcp_nodelay(remote_, 1);
    StartReading(Remote());
    if (local_ && !local_started_) {
      local_started_ = true;
      StartReading(local_);
    }
    Status s = tls_->Start();
    if (!s.ok()) Close(ExplainHandshakeFailure(relay_.options_.identity, s));
  }

  void StartReading(uv_stream_t* s) {
    uv_read_start(
        s,
        [](uv_handle_t* h, size_t, uv_buf_t* buf) {
          auto* p = static_cast<Pair*>(h->data);
          std::string& b = h == reinterpret_cast<uv_handle_t*>(p->remote_) ? p->rbuf_ : p->lbuf_;
          b.resize(64 * 1024);
          *buf = uv_buf_init(b.data(), unsigned(b.size()));
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
          auto* p = static_cast<Pair*>(s->data);
          if (s == p->Remote()) p->OnRemoteRead(n, buf);
          else p->OnLocalRead(n, buf);
        });
  }

  void OnRemoteRead(ssize_t n, const uv_buf_t* buf) {
    if (n == 0) return;
    if (n < 0) {
      if (ready_) Failed(n == UV_EOF || !stream_ ? "" : uv_strerror(int(n)), false);
      else if (stream_ && HasSession()) Failed("closed during the TLS handshake", false);
      else if (!heard_from_server_)
        Close("the server closed the connection before answering the TLS handshake: it may be "
              "refusing this address for now (too many failed or simultaneous handshakes from "
              "it), or this is not a musclefs TLS port");
      else
        Close(ExplainHandshakeFailure(relay_.options_.identity,
                                      Status(ECONNRESET, "server closed the connection")));
      return;
    }
    heard_from_server_ = true;
    last_heard_ = uv_now(relay_.loop_);
    bool was_ready = ready_;
    Status s = tls_->Feed(buf->base, size_t(n));
    if (!s.ok()) {
      if (s.err() == ECONNRESET) Failed("", false);
      else if (was_ready) Failed(s.message(), false);
      else Close(ExplainHandshakeFailure(relay_.options_.identity, s));
    }
  }

  void OnLocalRead(ssize_t n, const uv_buf_t* buf) {
    if (n == 0) return;
    if (n < 0) {
      // The kernel is done (umount): a resumable session ends here, with
      // a BYE (else the server would keep it for its lease). Closed once
      // the BYE and the close_notify are written: a handle closed at once
      // would cancel them.
      if (stream_) {
        local_eof_ = true;
        uv_read_stop(local_);
        if (remote_ && stream_->attached() && !closing_) {
          stream_->Bye();
          tls_->Close();
          bye_sent_ = true;
          auto* req = new uv_shutdown_t;
          req->data = this;
          if (uv_shutdown(req, Remote(), [](uv_shutdown_t* r, int) {
                auto* p = static_cast<Pair*>(r->data);
                delete r;
                p->Close("");
              }) == 0)
            return;
          delete req;
        }
      }
      Close("");
      return;
    }
    if (stream_) {
      FromLocal(buf->base, size_t(n));
      if (!closing_ && LocalHeld()) {
        uv_read_stop(local_);
        local_paused_ = true;
      }
      return;
    }
    Status s = tls_->Write(buf->base, size_t(n));
    if (!s.ok()) Close(s.message());
  }

  void Send(uv_stream_t* to, std::string bytes) {
    if (closing_ || !to) return;
    auto* w = new Write;
    w->data = std::move(bytes);
    w->req.data = this;
    uv_buf_t b = uv_buf_init(w->data.data(), unsigned(w->data.size()));
    int rc = uv_write(&w->req, to, &b, 1, [](uv_write_t* req, int status) {
      auto* w = reinterpret_cast<Write*>(req);
      auto* p = static_cast<Pair*>(req->data);
      uv_stream_t* dst = req->handle;
      delete w;
      if (p->closing_) return;
      bool to_local = dst == p->local_;
      if (!to_local && dst != p->Remote()) return;  // a connection dropped since
      if (status < 0) {
        if (to_local) return p->Close(uv_strerror(status));
        return p->Failed(uv_strerror(status), false);
      }
      // Resume the other side once this one has drained.
      uv_stream_t* src = to_local ? p->Remote() : p->local_;
      bool& paused = to_local ? p->remote_paused_ : p->local_paused_;
      bool held = !to_local && p->stream_ && p->LocalHeld();
      if (src && paused && !held && uv_stream_get_write_queue_size(dst) < kHighWater / 4) {
        paused = false;
        p->StartReading(src);
      }
    });
    if (rc < 0) {
      delete w;
      if (to == local_) Close(uv_strerror(rc));
      else Failed(uv_strerror(rc), false);
      return;
    }
    // Back-pressure: stop reading from the side that feeds `to`.
    if (uv_stream_get_write_queue_size(to) > kHighWater) {
      uv_stream_t* src = to == Remote() ? local_ : Remote();
      if (src) {
        uv_read_stop(src);
        (src == local_ ? local_paused_ : remote_paused_) = true;
      }
    }
  }

  Relay& relay_;
  uv_stream_t* local_;
  uv_tcp_t* remote_ = nullptr;
  std::unique_ptr<tls::TlsEngine> tls_;
  std::vector<std::unique_ptr<tls::TlsEngine>> retired_;  // of dropped connections
  std::string rbuf_, lbuf_;
  bool closing_ = false;
  bool probe_ = false;
  bool local_paused_ = false, remote_paused_ = false;
  bool local_started_ = false, local_eof_ = false, bye_sent_ = false;
  int open_ = 0;
  // Resumable sessions (options_.reconnect) only.
  std::unique_ptr<ResumableStream> stream_;
  std::string id_;  // the server's session, once it answered
  bool answer_pending_ = false;
  std::string answer_;
  uv_timer_t keepalive_, redial_, soft_, grace_;
  uint64_t last_heard_ = 0, lost_at_ = 0, backoff_ = 0;
  static constexpr int kRestoreStallTicks = 3;  // keepalives without restore progress
  StallWatch restore_watch_{kRestoreStallTicks};
  // The 9P conversation, to restore it on a new server session.
  std::unique_ptr<p9::RestoreBook> book_;
  p9::FrameSplitter from_local_{p9::kMaxMsize + 64}, from_server_{p9::kMaxMsize + 64};
  bool restore_pending_ = false;  // the next session is new: restore on it
  uint64_t restore_at_ = 0;       // when the old session was lost
};

Result<int> ConnectTcp(const std::string& host, int port) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  int g = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (g != 0) return Status(ENOENT, "cannot resolve " + host + ": " + gai_strerror(g));
  int err = ECONNREFUSED;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      freeaddrinfo(res);
      return fd;
    }
    err = errno;
    close(fd);
  }
  freeaddrinfo(res);
  return Status(err, "cannot connect to " + host + ":" + std::to_string(port) + ": " +
                         strerror(err));
}

Status SplitHostPort(const std::string& text, std::string& host, int& port) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return Status(EINVAL, "expected HOST:PORT, got '" + text + "'");
  host = text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  char* end = nullptr;
  long p = strtol(text.c_str() + colon + 1, &end, 10);
  if (*end || p <= 0 || p > 65535) return Status(EINVAL, "bad port in '" + text + "'");
  port = int(p);
  return Status::Ok();
}

std::string ExplainHandshakeFailure(const std::string& identity, const Status& s) {
  return "TLS handshake failed (" + s.message() + "): the server did not accept identity '" +
         identity +
         "' with this key. Check that the server's keys file has this identity and that "
         "both sides hold the same secret (muscle keys add/rotate prints the line to copy)";
}

Relay::~Relay() { Stop(); }

Status Relay::Init(RelayOptions options) {
  options_ = std::move(options);
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  std::string port = std::to_string(options_.server_port);
  int g = getaddrinfo(options_.server_host.c_str(), port.c_str(), &hints, &res);
  if (g != 0)
    return Status(EHOSTUNREACH, "cannot resolve server " + options_.server_host + ": " +
                                    gai_strerror(g));
  memcpy(&server_addr_, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  // Later connections (remounts, more mounts) resume the TLS session.
  auto ctx = tls::TlsContext::ForClient(options_.identity, options_.key,
                                        std::make_shared<tls::SessionCache>());
  if (!ctx.ok()) return ctx.status();
  tls_ = std::move(*ctx);
  return Status::Ok();
}

Status Relay::Probe() {
  auto* p = new Pair(*this, nullptr);
  pairs_.insert(p);
  std::string error;
  bool done = false;
  auto saved = on_pair_closed;
  // A probe pair closes cleanly right after its handshake, and with an
  // explanation on any failure before it.
  on_pair_closed = [&](const std::string& e) {
    error = e;
    done = true;
  };
  p->Start(true);
  while (!done) uv_run(loop_, UV_RUN_ONCE);
  on_pair_closed = saved;
  if (!error.empty()) return Status(ECONNREFUSED, error);
  return Status::Ok();
}

Status Relay::Listen(const Endpoint& at, bool allow_network) {
  if (at.kind == Endpoint::kTcp && !at.IsLoopback() && !allow_network)
    return Status(EPERM, "refusing to listen on " + at.text +
                             ": the relay's local side carries plaintext 9P and must stay "
                             "on this machine (loopback or a unix socket); pass "
                             "--allow-plaintext-network only if you really mean it");
  auto l = Listener::Open(loop_, at, true, [this](uv_stream_t* s, std::string peer) {
    if (TraceEnabled()) Log("relay: local connection %s", peer.c_str());
    Carry(s);
  });
  if (!l.ok()) return l.status();
  listener_ = *l;
  return Status::Ok();
}

void Relay::Carry(uv_stream_t* local) {
  auto* p = new Pair(*this, local);
  pairs_.insert(p);
  p->Start(false);
}

void Relay::Stop() {
  if (listener_) listener_->Close();
  listener_ = nullptr;
  std::set<Pair*> all = pairs_;
  for (auto* p : all) p->Close("");
}

}  // namespace muscle::transport
