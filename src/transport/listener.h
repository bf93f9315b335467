// A libuv listening socket (TCP or unix) that hands accepted streams to a
// callback.
//
// Safety: a plain TCP listener on a non-loopback address is refused unless
// the caller passes allow_network (the --allow-plaintext-network flag):
// 9P over plain TCP sends file contents and names in clear. Unix sockets
// are created with mode 0600 (only the server's user may connect) unless
// `unix_mode` says otherwise.
//
// Lifetime: created and used on the loop thread; Close() closes the handle
// and deletes the listener in the close callback.
#pragma once

#include <uv.h>

#include <functional>
#include <string>

#include "common/result.h"
#include "transport/endpoint.h"

namespace muscle::transport {

class Listener {
 public:
  // Called with a newly accepted stream (allocated with new; the callee
  // owns it) and a printable peer name.
  using AcceptFn = std::function<void(uv_stream_t*, std::string peer)>;

  static Result<Listener*> Open(uv_loop_t* loop, const Endpoint& at,
                                bool allow_network, AcceptFn on_accept,
                                unsigned unix_mode = 0600);
  void Close();
  // The address actually bound, e.g. with the kernel-chosen port for 0.
  const Endpoint& bound() const { return bound_; }

 private:
  Listener() = default;
  ~Listener() = default;
  static void OnConnection(uv_stream_t* server, int status);

  uv_loop_t* loop_ = nullptr;
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } handle_;
  Endpoint bound_;
  AcceptFn on_accept_;
  uint64_t accepted_ = 0;
};

}  // namespace muscle::transport
