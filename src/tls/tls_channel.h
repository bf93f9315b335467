// A blocking TLS-PSK client channel for p9::Client (tools and tests):
// performs the handshake on a connected socket, then encrypts writes and
// decrypts reads. One thread; the socket stays owned by the Client.
#pragma once

#include <memory>
#include <string>

#include "9p/client.h"
#include "auth/keys.h"
#include "common/result.h"

namespace muscle::tls {

Result<std::unique_ptr<p9::Channel>> StartTlsChannel(int fd, const std::string& identity,
                                                     const auth::Secret& key);

}  // namespace muscle::tls
