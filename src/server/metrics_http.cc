#include "server/metrics_http.h"

#include <cstring>

#include "common/log.h"

namespace muscle::server {

Result<transport::Endpoint> CheckMetricsAddress(const std::string& text) {
  auto ep = transport::ParseEndpoint(text);
  if (!ep.ok()) return Status(EINVAL, "metrics address: " + ep.status().message());
  if (ep->tls)
    return Status(EINVAL, "metrics address " + text +
                              ": the metrics listener speaks plain HTTP; use unix:PATH or "
                              "tcp://127.0.0.1:PORT");
  if (ep->kind == transport::Endpoint::kTcp && !ep->IsLoopback())
    return Status(EINVAL, "metrics address " + text +
                              ": refused, not a loopback address (the metrics name identities "
                              "and peers and have no authentication); use tcp://127.0.0.1:PORT "
                              "or unix:PATH, and a proxy to publish them further");
  return ep;
}

struct MetricsHttp::Client {
  MetricsHttp* owner;
  uv_stream_t* stream;
  uv_timer_t timer;
  uv_write_t write;
  uv_shutdown_t shutdown;
  std::string in, out;
  bool answered = false;
  int open_handles = 2;
  bool closing = false;

  void Close() {
    if (closing) return;
    closing = true;
    auto done = [](uv_handle_t* h) {
      auto* c = static_cast<Client*>(h->data);
      if (--c->open_handles == 0) c->owner->Closed(c);
    };
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), done);
    uv_close(reinterpret_cast<uv_handle_t*>(stream), done);
  }
  // Writes the answer, then half-closes and reads (discarding) until the
  // client closes or the timer fires: closing with unread input would
  // reset the connection and could lose the answer (an oversized head).
  void Respond(std::string answer) {
    answered = true;
    in.clear();
    in.shrink_to_fit();
    out = std::move(answer);
    uv_buf_t buf = uv_buf_init(out.data(), unsigned(out.size()));
    write.data = this;
    if (uv_write(&write, stream, &buf, 1, [](uv_write_t* w, int status) {
          auto* c = static_cast<Client*>(w->data);
          if (status < 0 || c->closing) return c->Close();
          c->shutdown.data = c;
          if (uv_shutdown(&c->shutdown, c->stream, [](uv_shutdown_t*, int) {}) != 0) c->Close();
        }) != 0)
      Close();
  }
  void OnRead(ssize_t n, const uv_buf_t* buf) {
    if (n < 0) return Close();
    if (n == 0 || closing || answered) return;
    size_t room = kMaxHead + 4 - in.size();
    in.append(buf->base, std::min(size_t(n), room));
    size_t end = in.find("\r\n\r\n");
    if (end == std::string::npos) end = in.find("\n\n");
    if (end != std::string::npos && end <= kMaxHead)
      return Respond(Answer(std::string_view(in).substr(0, end), *owner->metrics_));
    if (in.size() > kMaxHead)
      return Respond("HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n");
  }
};

Result<MetricsHttp*> MetricsHttp::Open(uv_loop_t* loop, const std::string& address,
                                       std::shared_ptr<Metrics> metrics) {
  auto ep = CheckMetricsAddress(address);
  if (!ep.ok()) return ep.status();
  auto* self = new MetricsHttp(loop, std::move(metrics));
  auto l = transport::Listener::Open(loop, *ep, false,
                                     [self](uv_stream_t* s, std::string) { self->Accept(s); });
  if (!l.ok()) {
    delete self;
    return l.status();
  }
  self->listener_ = *l;
  return self;
}

void MetricsHttp::Accept(uv_stream_t* stream) {
  if (closing_ || clients_.size() >= kMaxClients) {
    stream->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(stream), [](uv_handle_t* h) {
      if (h->type == UV_TCP) delete reinterpret_cast<uv_tcp_t*>(h);
      else delete reinterpret_cast<uv_pipe_t*>(h);
    });
    return;
  }
  auto* c = new Client{this, stream, {}, {}, {}, {}, {}};
  clients_.insert(c);
  stream->data = c;
  uv_timer_init(loop_, &c->timer);
  c->timer.data = c;
  uv_timer_start(&c->timer, [](uv_timer_t* t) { static_cast<Client*>(t->data)->Close(); },
                 uint64_t(kTimeout.count()), 0);
  uv_read_start(
      stream,
      [](uv_handle_t*, size_t, uv_buf_t* buf) {
        static thread_local char scratch[4096];
        *buf = uv_buf_init(scratch, sizeof scratch);
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        static_cast<Client*>(s->data)->OnRead(n, buf);
      });
}

void MetricsHttp::Closed(Client* c) {
  if (c->stream->type == UV_TCP) delete reinterpret_cast<uv_tcp_t*>(c->stream);
  else delete reinterpret_cast<uv_pipe_t*>(c->stream);
  clients_.erase(c);
  delete c;
  if (closing_ && clients_.empty()) delete this;
}

void MetricsHttp::Close() {
  if (closing_) return;
  closing_ = true;
  if (listener_) listener_->Close();
  listener_ = nullptr;
  if (clients_.empty()) {
    delete this;
    return;
  }
  std::set<Client*> all = clients_;
  for (Client* c : all) c->Close();
}

std::string MetricsHttp::Answer(std::string_view head, const Metrics& metrics) {
  auto simple = [](const char* status) {
    return std::string("HTTP/1.1 ") + status + "\r\nContent-Type: text/plain\r\nContent-Length: " +
           std::to_string(strlen(status) + 1) + "\r\nConnection: close\r\n\r\n" + status + "\n";
  };
  std::string_view line = head.substr(0, head.find_first_of("\r\n"));
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.substr(sp2 + 1).rfind("HTTP/1.", 0) != 0)
    return simple("400 Bad Request");
  std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  target = target.substr(0, target.find('?'));
  if (target != "/metrics") return simple("404 Not Found");
  if (method != "GET" && method != "HEAD") return simple("405 Method Not Allowed");
  std::string body = PrometheusText(metrics.Collect());
  std::string out =
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
      "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  if (method == "GET") out += body;
  return out;
}

}  // namespace muscle::server
