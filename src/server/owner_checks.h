// The owner rule (auth/owner_rule.h) where the handlers make and change
// files: every handler that makes a file calls MakeAs, every one that
// changes a file's mode, owner, group or size calls ChangeAs, and a write
// open asks MayWriteContents, in every dialect, so that what a remote
// identity may do is checked in these three places and nowhere else.
//
// Threading: on the store worker thread, as the handlers.
#pragma once

#include <string_view>

#include "9p/filesystem.h"
#include "store/tree.h"

namespace muscle::server {

// Tree::Create as req's identity: EPERM when its rule may not make a file
// of this mode; the group is the one the rule maps `gid` to. The owner is
// req.uid (the session squashed it at attach).
Result<store::Attr> MakeAs(store::Tree& s, const p9::FsRequest& req, uint64_t dir,
                           std::string_view name, uint32_t mode, uint32_t gid,
                           uint64_t rdev = 0, std::string_view target = {});

// Tree::SetAttr as req's identity: EPERM when its rule may not make this
// change to the file as it is now (set-id bits, an owner or group it does
// not act as, new contents of a set-id program).
Result<store::Attr> ChangeAs(store::Tree& s, const p9::FsRequest& req, uint64_t ino,
                             const store::SetAttrRequest& change);

// An open for writing of the file whose attributes are `a`: EPERM for a
// set-id program unless req's rule allows it.
Status MayWriteContents(const p9::FsRequest& req, const store::Attr& a);

}  // namespace muscle::server
