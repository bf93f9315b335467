// Whose files an identity's requests make and change: NFS's squashing,
// described once.
//
// 9P carries the client's numeric uid (at attach) and gids (in creates and
// setattr) and the server believes them: a client can say it is root. For
// the local administrator (the unix socket, plain listeners, `muscle stdio`
// without an identity) that is the point. For a remote identity (TLS, an
// identity claimed through `muscle stdio`) it would let anyone holding a
// key for a confined subtree create set-uid root programs and device
// nodes (c 1 1 is /dev/mem) there: an escalation to root on any host that
// mounts the tree without nosuid,nodev. So a remote identity's rule
// (musclefs.conf `access = NAME ...`, or these defaults when it has no
// line) says:
//   root-squash (default)  uid 0 acts as 65534 ("nobody") and gid 0 as
//                          65534 ("nogroup"): it never makes or gives away
//                          a file owned by uid or gid 0.
//   no-root-squash         the client's root is root here too.
//   uid=N / gid=N          every request acts as that owner and group
//                          (NFS's all_squash with anonuid/anongid): what
//                          it makes is N's, and it may chown/chgrp only to N.
//   setid                  may make set-uid files, set-gid files (a set-gid
//                          directory, which only passes its group on, is
//                          always allowed) and set security.capability; and
//                          may change the contents of set-uid/set-gid
//                          files. Not by default.
//   devices                may make character and block devices (FIFOs and
//                          sockets always). Not by default.
// The administrator's rule (a default-constructed OwnerRule) restricts
// nothing.
//
// Where it applies: the session acts as ActingUid from the attach on (every
// request's uid comes from its fid's attach) and refuses a security.capability
// xattr (MaySetXattr); the file system's handlers (server/store_handlers.cc,
// server/stat_dialects.cc) ask MayMake before making anything and MayChange
// before changing a file's mode, owner, group or contents, in every dialect.
//
// Threading: a value, copied into each request; pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "common/result.h"

namespace muscle::auth {

inline constexpr uint32_t kNobody = 65534;   // uid a squashed root acts as
inline constexpr uint32_t kNoGroup = 65534;  // gid a squashed root group becomes

struct OwnerRule {
  std::optional<uint32_t> uid, gid;  // uid=N / gid=N: every request's owner
  bool squash_root = false;          // uid/gid 0 become kNobody/kNoGroup
  bool setid = true;                 // may make and change set-uid/set-gid files
  bool devices = true;               // may make device nodes

  // A remote identity's rule when its access line says nothing.
  static OwnerRule Remote() {
    OwnerRule r;
    r.squash_root = true;
    r.setid = false;
    r.devices = false;
    return r;
  }
  // False for the administrator's rule: nothing to check.
  bool Restricts() const { return uid || gid || squash_root || !setid || !devices; }

  // The uid a client that says it is `claimed` acts as.
  uint32_t ActingUid(uint32_t claimed) const;
  // The group a new file gets when the request names `claimed`.
  uint32_t GroupOf(uint32_t claimed) const;

  // May a file of this mode (type and permission bits) be made?
  // EPERM for a device without `devices`, set-uid or a set-gid
  // non-directory without `setid`.
  Status MayMake(uint32_t mode) const;

  // What a request would change on an existing file.
  struct Change {
    std::optional<uint32_t> mode;  // new permission bits (type bits ignored)
    std::optional<uint32_t> uid, gid;
    bool contents = false;  // a write open or a truncation
  };
  // May `change` be made to a file whose mode is now `mode`? EPERM when it
  // would add set-uid/set-gid bits or change a set-id file's contents
  // without `setid`, or give the file to an owner or group the rule does
  // not act as (uid/gid 0 when squashing root; another than uid=/gid=).
  Status MayChange(uint32_t mode, const Change& change) const;

  // May an extended attribute of this name be set? security.capability
  // (file capabilities: set-uid by other means) needs `setid`.
  Status MaySetXattr(std::string_view name) const;

  bool operator==(const OwnerRule&) const = default;
};

}  // namespace muscle::auth
