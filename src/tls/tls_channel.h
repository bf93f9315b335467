// A blocking TLS-PSK client channel for p9::Client (tools and tests):
// performs the handshake on a connected socket, then encrypts writes and
// decrypts reads. One thread; the socket stays owned by the Client. With a
// SessionCache (shareable across threads) reconnects resume the last
// session instead of a full key exchange.
#pragma once

#include <memory>
#include <string>

#include "9p/client.h"
#include "auth/keys.h"
#include "common/result.h"
#include "tls/session_tickets.h"
#include "tls/tls_engine.h"

namespace muscle::tls {

Result<std::unique_ptr<p9::Channel>> StartTlsChannel(int fd, const std::string& identity,
                                                     const auth::Secret& key,
                                                     std::shared_ptr<SessionCache> cache = nullptr);
// Same on a client context the caller keeps (one per thread) for many
// connections; it must outlive the channel.
Result<std::unique_ptr<p9::Channel>> StartTlsChannel(int fd, TlsContext& ctx);

}  // namespace muscle::tls
