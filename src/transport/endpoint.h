// Listen/connect addresses as users write them: "unix:PATH",
// "tcp://HOST:PORT", "tls://HOST:PORT" (HOST may be a bracketed IPv6
// address).
#pragma once

#include <string>

#include "common/result.h"

namespace muscle::transport {

struct Endpoint {
  enum Kind { kUnix, kTcp } kind = kTcp;
  bool tls = false;  // "tls://HOST:PORT": TCP carrying TLS-PSK
  std::string path;  // kUnix
  std::string host;  // kTcp, without brackets
  int port = 0;
  std::string text;  // as given

  bool IsLoopback() const;
};

Result<Endpoint> ParseEndpoint(const std::string& text);

}  // namespace muscle::transport
