// The local identity claim: how a program run by the server's own user
// (`muscle stdio`, typically behind an SSH key's command= line) tells the
// server which identity and which restrictions apply to the 9P session it
// is about to carry.
//
// Wire format: before any 9P frame, the client may send one line
//   muscle-claim [identity=NAME] [root=/PATH] [read-only]\n
// (at most kMaxClaimLine bytes). Its first four bytes, read as a 9P size
// field, exceed every msize, so a 9P client can never send it by
// accident, and a claim anywhere but at the very start of a connection is
// an oversized frame that closes the connection. The server answers
// "ok\n" and the 9P session starts, or "error: REASON\n" and closes.
//
// Trust: the server honours a claim only on a unix socket whose peer (by
// SO_PEERCRED) runs as the server's user or root: those can connect to
// the 0600 socket anyway, and whoever they hand the connection to (an SSH
// user behind a command= key) can only narrow, never widen, what the claim
// allows: attaches resolve below the root and ".." never leaves it.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"

namespace muscle::transport {

inline constexpr std::string_view kClaimPrefix = "muscle-claim";
inline constexpr size_t kMaxClaimLine = 1024;

struct Claim {
  std::string identity;  // empty: no identity (only root/read-only apply)
  std::string root;      // "" or an absolute path without "." or ".." parts
  bool read_only = false;
};

// The line to send, with its newline. The fields must pass ParseClaim.
std::string FormatClaim(const Claim& c);
// Parses one line (without its newline). Identities are 1-64 characters of
// [A-Za-z0-9._@+-]; a root is an absolute path without ".", ".." or empty
// components and without spaces or control characters.
Result<Claim> ParseClaim(std::string_view line);
// Checks the fields alone (for `muscle stdio`'s flags).
Status CheckClaim(const Claim& c);

}  // namespace muscle::transport
