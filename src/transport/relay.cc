#include "transport/relay.h"

#include <netdb.h>
#include <unistd.h>

#include <cstring>

#include "common/log.h"
#include "tls/ktls.h"

namespace muscle::transport {

namespace {
constexpr size_t kHighWater = 4u << 20;

struct Write {
  uv_write_t req;
  std::string data;
};
}  // namespace

// One local stream and its TLS connection to the server.
class Relay::Pair {
 public:
  Pair(Relay& relay, uv_stream_t* local) : relay_(relay), local_(local) {
    if (local_) local_->data = this;
    remote_.data = this;
    uv_tcp_init(relay.loop_, &remote_);
    connect_.data = this;
    tls_ = std::make_unique<tls::TlsEngine>(*relay.tls_);
    tls_->on_ciphertext = [this](std::string b) { Send(Remote(), std::move(b)); };
    tls_->on_plaintext = [this](const char* d, size_t n) { Send(local_, std::string(d, n)); };
    tls_->on_ready = [this] {
      ready_ = true;
      if (probe_) {
        Close("");
        return;
      }
      MoveToKernelTls();
    };
  }

  void Start(bool probe) {
    probe_ = probe;
    int rc = uv_tcp_connect(&connect_, &remote_,
                            reinterpret_cast<const sockaddr*>(&relay_.server_addr_),
                            [](uv_connect_t* c, int status) {
                              static_cast<Pair*>(c->data)->OnConnect(status);
                            });
    if (rc) Close(std::string("cannot connect to the server: ") + uv_strerror(rc));
  }

  void Close(const std::string& error) {
    if (closing_) return;
    closing_ = true;
    error_ = error;
    tls_->Close();
    uv_close(reinterpret_cast<uv_handle_t*>(&remote_), OnHandleClosed);
    if (local_) uv_close(reinterpret_cast<uv_handle_t*>(local_), OnHandleClosed);
    else open_--;
  }

  std::string error_;
  bool ready_ = false;
  bool heard_from_server_ = false;  // any bytes back before the handshake ended

 private:
  uv_stream_t* Remote() { return reinterpret_cast<uv_stream_t*>(&remote_); }

  // Where the kernel has TLS, it seals and opens the server connection's
  // records; the relay then only copies plaintext.
  void MoveToKernelTls() {
    if (!tls::KernelTlsMayWork()) return;
    auto keys = tls_->KeysForKernel();
    if (!keys.ok()) return;
    uv_os_fd_t fd;
    Status s = uv_fileno(reinterpret_cast<uv_handle_t*>(&remote_), &fd) == 0
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
    }
  }

  static void OnHandleClosed(uv_handle_t* h) {
    auto* p = static_cast<Pair*>(h->data);
    if (--p->open_ > 0) return;
    p->relay_.pairs_.erase(p);
    if (p->relay_.on_pair_closed) p->relay_.on_pair_closed(p->error_);
    if (p->local_) {
      if (p->local_->type == UV_TCP) delete reinterpret_cast<uv_tcp_t*>(p->local_);
      else delete reinterpret_cast<uv_pipe_t*>(p->local_);
    }
    delete p;
  }

  void OnConnect(int status) {
    if (status < 0) {
      Close("cannot connect to " + relay_.options_.server_host + ":" +
            std::to_string(relay_.options_.server_port) + ": " + uv_strerror(status));
      return;
    }
    uv_tcp_nodelay(&remote_, 1);
    StartReading(Remote());
    if (local_) StartReading(local_);
    Status s = tls_->Start();
    if (!s.ok()) Close(ExplainHandshakeFailure(relay_.options_.identity, s));
  }

  void StartReading(uv_stream_t* s) {
    uv_read_start(
        s,
        [](uv_handle_t* h, size_t, uv_buf_t* buf) {
          auto* p = static_cast<Pair*>(h->data);
          std::string& b = h == reinterpret_cast<uv_handle_t*>(&p->remote_) ? p->rbuf_ : p->lbuf_;
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
      if (ready_) Close("");
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
    bool was_ready = ready_;
    Status s = tls_->Feed(buf->base, size_t(n));
    if (!s.ok()) {
      if (s.err() == ECONNRESET) Close("");
      else Close(was_ready ? s.message() : ExplainHandshakeFailure(relay_.options_.identity, s));
    }
  }

  void OnLocalRead(ssize_t n, const uv_buf_t* buf) {
    if (n == 0) return;
    if (n < 0) {
      Close("");
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
      if (status < 0) return p->Close(uv_strerror(status));
      // Resume the other side once this one has drained.
      uv_stream_t* src = dst == p->Remote() ? p->local_ : p->Remote();
      bool& paused = src == p->local_ ? p->local_paused_ : p->remote_paused_;
      if (src && paused && uv_stream_get_write_queue_size(dst) < kHighWater / 4) {
        paused = false;
        p->StartReading(src);
      }
    });
    if (rc < 0) {
      delete w;
      Close(uv_strerror(rc));
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
  uv_tcp_t remote_;
  uv_connect_t connect_;
  std::unique_ptr<tls::TlsEngine> tls_;
  std::string rbuf_, lbuf_;
  bool closing_ = false;
  bool probe_ = false;
  bool local_paused_ = false, remote_paused_ = false;
  int open_ = 2;
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
