#include "auth/owner_rule.h"

#include <sys/stat.h>

#include <cerrno>

namespace muscle::auth {

namespace {

// Bits that make a program run as someone else: set-uid, and set-gid on
// a group-executable file (set-gid without group execute marks a file for
// mandatory locking, and on a directory only passes its group on).
bool RunsAsOther(uint32_t mode) {
  if (S_ISDIR(mode)) return false;
  return (mode & S_ISUID) || ((mode & S_ISGID) && (mode & S_IXGRP));
}

// Any set-id bit on a non-directory (what a new file or a chmod may not set).
bool SetsId(uint32_t mode) { return !S_ISDIR(mode) && (mode & (S_ISUID | S_ISGID)); }

}  // namespace

uint32_t OwnerRule::ActingUid(uint32_t claimed) const {
  if (uid) return *uid;
  return squash_root && claimed == 0 ? kNobody : claimed;
}

uint32_t OwnerRule::GroupOf(uint32_t claimed) const {
  if (gid) return *gid;
  return squash_root && claimed == 0 ? kNoGroup : claimed;
}

Status OwnerRule::MayMake(uint32_t mode) const {
  if (!devices && (S_ISCHR(mode) || S_ISBLK(mode)))
    return Status(EPERM, "this identity may not make device nodes (an access rule with the word 'devices' allows it)");
  if (!setid && SetsId(mode))
    return Status(EPERM, "this identity may not make set-uid or set-gid files (an access rule with the word 'setid' allows it)");
  return Status::Ok();
}

Status OwnerRule::MayChange(uint32_t mode, const Change& change) const {
  if (!setid) {
    // Bits it adds (keeping the administrator's own set-id bits through a
    // chmod of the other bits is no escalation).
    uint32_t added = change.mode ? (*change.mode & ~mode & (S_ISUID | S_ISGID)) : 0;
    if (added && SetsId((mode & S_IFMT) | added))
      return Status(EPERM, "this identity may not set set-uid or set-gid bits (an access rule with the word 'setid' allows it)");
    if (change.contents && RunsAsOther(mode))
      return Status(EPERM, "this identity may not change a set-uid or set-gid program (an access rule with the word 'setid' allows it)");
  }
  if (change.uid) {
    if (uid ? *change.uid != *uid : squash_root && *change.uid == 0)
      return Status(EPERM, "this identity may not give files to uid " + std::to_string(*change.uid));
  }
  if (change.gid) {
    if (gid ? *change.gid != *gid : squash_root && *change.gid == 0)
      return Status(EPERM, "this identity may not give files to gid " + std::to_string(*change.gid));
  }
  return Status::Ok();
}

Status OwnerRule::MaySetXattr(std::string_view name) const {
  if (!setid && name == "security.capability")
    return Status(EPERM, "this identity may not set file capabilities (an access rule with the word 'setid' allows it)");
  return Status::Ok();
}

}  // namespace muscle::auth
