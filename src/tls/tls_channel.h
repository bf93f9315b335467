// A blocking TLS-PSK client channel for p9::Client (tools and tests):
// performs the handshake on a connected socket, then encrypts writes and
// decrypts reads. One thread; the socket stays owned by the Client. The
// client context is the caller's (one per thread, reused for many
// connections); given a SessionCache, reconnects resume the last session
// instead of a full key exchange.
#pragma once

#include <memory>
#include <string>

#include "9p/client.h"
#include "common/result.h"
#include "tls/tls_engine.h"

namespace muscle::tls {

// `ctx` (a client context) must outlive the channel.
Result<std::unique_ptr<p9::Channel>> StartTlsChannel(int fd, TlsContext& ctx);

// Does the handshake on the connected TCP socket `fd` (blocking, reading
// one record at a time so that nothing past the handshake is consumed),
// then installs the traffic keys in the kernel (ktls.h): the socket then
// carries plaintext 9P and can be handed to the kernel's 9p client.
// ENOENT: the kernel has no TLS; the socket has been through the
// handshake and must be closed by the caller, who may connect again and
// use a userspace relay. `suite` gets the negotiated cipher suite.
Status HandshakeForKernel(int fd, TlsContext& ctx, std::string* suite = nullptr);

}  // namespace muscle::tls
