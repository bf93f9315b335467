#include "transport/endpoint.h"

#include <arpa/inet.h>

#include <cstdlib>

namespace muscle::transport {

bool Endpoint::IsLoopback() const {
  if (kind == kUnix) return true;
  if (host == "localhost" || host == "::1") return true;
  in_addr a4;
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1)
    return (ntohl(a4.s_addr) >> 24) == 127;
  return false;
}

Result<Endpoint> ParseEndpoint(const std::string& text) {
  Endpoint e;
  e.text = text;
  auto bad = [&](const char* why) {
    return Status(EINVAL, "bad address '" + text + "': " + why +
                              " (use unix:/path/to/socket, tcp://127.0.0.1:5640 or tls://0.0.0.0:3004)");
  };
  if (text.rfind("unix:", 0) == 0) {
    e.kind = Endpoint::kUnix;
    e.path = text.substr(5);
    if (e.path.empty()) return bad("empty socket path");
    if (e.path.size() >= 108) return bad("socket path longer than 107 bytes");
    return e;
  }
  std::string rest;
  if (text.rfind("tls://", 0) == 0) {
    rest = text.substr(6);
    e.tls = true;
  } else if (text.rfind("tcp://", 0) == 0) rest = text.substr(6);
  else if (text.rfind("tcp:", 0) == 0) rest = text.substr(4);
  else return bad("unknown scheme");
  size_t colon;
  if (!rest.empty() && rest[0] == '[') {
    size_t close = rest.find(']');
    if (close == std::string::npos) return bad("missing ']'");
    e.host = rest.substr(1, close - 1);
    colon = close + 1;
    if (colon >= rest.size() || rest[colon] != ':') return bad("missing port");
  } else {
    colon = rest.rfind(':');
    if (colon == std::string::npos) return bad("missing port");
    e.host = rest.substr(0, colon);
  }
  std::string port = rest.substr(colon + 1);
  char* end = nullptr;
  long p = strtol(port.c_str(), &end, 10);
  if (port.empty() || *end || p < 0 || p > 65535) return bad("port must be 0-65535");
  if (e.host.empty()) return bad("missing host");
  e.port = int(p);
  return e;
}

}  // namespace muscle::transport
