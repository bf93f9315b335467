// What one client may do, described once: where its tree starts, whether
// it may change it, whether it may take, prune and restore snapshots, and
// whose files it makes (owner: squashing, set-id bits, devices).
//
// A rule comes from musclefs.conf's `access = NAME ...` lines
// (server/config.cc) or, for plain listeners, from the server's defaults
// (server/server.cc); a `muscle stdio` client's claim (transport/claim.h,
// the wire form of a request to narrow it) can only narrow it. The
// session carries it (9p/session.h), hands it to the views a client
// attaches (9p/filesystem.h) and to each control file, whose commands are
// checked against it (server/control.cc).
#pragma once

#include <string>

#include "auth/owner_rule.h"

namespace muscle::auth {

struct AccessRule {
  // Where the tree starts for this client: "" (the whole tree) or an
  // absolute path inside it ("/projects/x"); walks never leave it.
  std::string root;
  bool read_only = false;  // every change is EROFS
  bool snapshot = false;   // may take, prune and restore snapshots
  // Whose files it makes and changes (auth/owner_rule.h): nothing
  // restricted for the administrator; OwnerRule::Remote() for an identity
  // whose access line says nothing about it.
  OwnerRule owner;
  // Whose rule it is, as the session hands it to the views: the identity
  // ("" for the local administrator and plain listeners), by which the
  // views count what each identity holds (control files, their answers).
  std::string identity;

  // The root as a relative path, without leading or trailing slashes (""
  // for the whole tree): how the views and control files name subtrees.
  std::string Relative() const {
    size_t b = root.find_first_not_of('/');
    if (b == std::string::npos) return "";
    size_t e = root.find_last_not_of('/');
    return root.substr(b, e - b + 1);
  }
  bool operator==(const AccessRule&) const = default;
};

}  // namespace muscle::auth
