#include "transport/listener.h"

#include <netdb.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "common/log.h"

namespace muscle::transport {

namespace {

std::string PeerName(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    uv_ip4_name(a, host, sizeof host);
    port = ntohs(a->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    uv_ip6_name(a, host, sizeof host);
    port = ntohs(a->sin6_port);
    return "[" + std::string(host) + "]:" + std::to_string(port);
  }
  return "?";
}

Status UvError(const std::string& what, int rc) {
  int e = rc < 0 ? -rc : EIO;
  return Status(e, what + ": " + uv_strerror(rc));
}

}  // namespace

Result<Listener*> Listener::Open(uv_loop_t* loop, const Endpoint& at,
                                 bool allow_network, AcceptFn on_accept,
                                 unsigned unix_mode) {
  if (at.kind == Endpoint::kTcp && !at.tls && !at.IsLoopback() && !allow_network)
    return Status(EPERM,
                  "refusing to listen on " + at.text +
                      ": plain 9P on a network address sends file names and "
                      "contents unencrypted and unauthenticated to anyone who "
                      "can reach it. Listen on 127.0.0.1 or a unix socket "
                      "instead, or pass --allow-plaintext-network if the "
                      "network is trusted");
  auto* l = new Listener();
  l->loop_ = loop;
  l->bound_ = at;
  l->on_accept_ = std::move(on_accept);
  int rc;
  if (at.kind == Endpoint::kTcp) {
    uv_tcp_init(loop, &l->handle_.tcp);
    l->handle_.tcp.data = l;
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    std::string port = std::to_string(at.port);
    int g = getaddrinfo(at.host.c_str(), port.c_str(), &hints, &res);
    if (g != 0) {
      l->Close();
      return Status(EINVAL, "cannot resolve " + at.host + ": " + gai_strerror(g));
    }
    rc = uv_tcp_bind(&l->handle_.tcp, res->ai_addr, 0);
    freeaddrinfo(res);
    if (rc == 0) {
      sockaddr_storage ss;
      int len = sizeof ss;
      if (uv_tcp_getsockname(&l->handle_.tcp, reinterpret_cast<sockaddr*>(&ss), &len) == 0 &&
          (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)) {
        l->bound_.port = ntohs(ss.ss_family == AF_INET
                                   ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                   : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
        l->bound_.text = (at.tls ? "tls://" : "tcp://") + PeerName(ss);
      }
    }
  } else {
    uv_pipe_init(loop, &l->handle_.pipe, 0);
    l->handle_.pipe.data = l;
    // Remove a stale socket left by a server that did not exit cleanly,
    // but never a live one or a file that is not a socket.
    struct stat st;
    if (lstat(at.path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        l->Close();
        return Status(EEXIST, at.path + " exists and is not a socket");
      }
      int fd = socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un sa{};
      sa.sun_family = AF_UNIX;
      strncpy(sa.sun_path, at.path.c_str(), sizeof sa.sun_path - 1);
      bool live = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
      close(fd);
      if (live) {
        l->Close();
        return Status(EADDRINUSE, at.path + " is in use by a running server");
      }
      unlink(at.path.c_str());
    }
    mode_t old = umask(0177);
    rc = uv_pipe_bind(&l->handle_.pipe, at.path.c_str());
    umask(old);
    if (rc == 0) chmod(at.path.c_str(), unix_mode);
  }
  if (rc == 0)
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&l->handle_), 128, OnConnection);
  if (rc != 0) {
    l->Close();
    return UvError("cannot listen on " + at.text, rc);
  }
  return l;
}

void Listener::OnConnection(uv_stream_t* server, int status) {
  auto* l = static_cast<Listener*>(server->data);
  if (status < 0) {
    Log("accept on %s: %s", l->bound_.text.c_str(), uv_strerror(status));
    return;
  }
  uv_stream_t* client;
  std::string peer;
  if (l->bound_.kind == Endpoint::kTcp) {
    auto* t = new uv_tcp_t;
    uv_tcp_init(l->loop_, t);
    client = reinterpret_cast<uv_stream_t*>(t);
  } else {
    auto* p = new uv_pipe_t;
    uv_pipe_init(l->loop_, p, 0);
    client = reinterpret_cast<uv_stream_t*>(p);
  }
  if (uv_accept(server, client) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(client), [](uv_handle_t* h) {
      if (h->type == UV_TCP) delete reinterpret_cast<uv_tcp_t*>(h);
      else delete reinterpret_cast<uv_pipe_t*>(h);
    });
    return;
  }
  if (l->bound_.kind == Endpoint::kTcp) {
    auto* t = reinterpret_cast<uv_tcp_t*>(client);
    uv_tcp_nodelay(t, 1);
    sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getpeername(t, reinterpret_cast<sockaddr*>(&ss), &len);
    peer = PeerName(ss);
  } else {
    peer = "unix:" + l->bound_.path + "#" + std::to_string(++l->accepted_);
  }
  l->on_accept_(client, std::move(peer));
}

void Listener::Close() {
  auto* h = reinterpret_cast<uv_handle_t*>(&handle_);
  if (uv_is_closing(h)) return;
  if (bound_.kind == Endpoint::kUnix && h->type == UV_NAMED_PIPE) {
    // Only remove the socket if we created it (the handle is bound).
    char name[256];
    size_t n = sizeof name;
    if (uv_pipe_getsockname(&handle_.pipe, name, &n) == 0 && n > 0)
      unlink(bound_.path.c_str());
  }
  uv_close(h, [](uv_handle_t* h) { delete static_cast<Listener*>(h->data); });
}

}  // namespace muscle::transport
