// auth/owner_rule.h: the squashing and set-id/device rules as pure
// functions (the server-level test is tests/server/owner_rule_server_test.cc).
#include "auth/owner_rule.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>

using muscle::auth::OwnerRule;
using Change = OwnerRule::Change;

TEST_CASE("the administrator's owner rule restricts nothing") {
  OwnerRule admin;
  CHECK(!admin.Restricts());
  CHECK(admin.ActingUid(0) == 0);
  CHECK(admin.GroupOf(0) == 0);
  CHECK(admin.MayMake(S_IFCHR | 0600).ok());
  CHECK(admin.MayMake(S_IFREG | 04755).ok());
  CHECK(admin.MayChange(S_IFREG | 04755, Change{.contents = true}).ok());
  CHECK(admin.MayChange(S_IFREG | 0644, Change{.uid = 0u, .gid = 0u}).ok());
  CHECK(admin.MaySetXattr("security.capability").ok());
}

TEST_CASE("a remote identity's root is squashed and it makes no set-id files or devices") {
  OwnerRule r = OwnerRule::Remote();
  CHECK(r.Restricts());
  CHECK(r.ActingUid(0) == muscle::auth::kNobody);
  CHECK(r.ActingUid(1000) == 1000);
  CHECK(r.GroupOf(0) == muscle::auth::kNoGroup);
  CHECK(r.GroupOf(100) == 100);
  CHECK(r.MayMake(S_IFCHR | 0600).err() == EPERM);
  CHECK(r.MayMake(S_IFBLK | 0600).err() == EPERM);
  CHECK(r.MayMake(S_IFIFO | 0600).ok());
  CHECK(r.MayMake(S_IFSOCK | 0600).ok());
  CHECK(r.MayMake(S_IFREG | 04755).err() == EPERM);
  CHECK(r.MayMake(S_IFREG | 02755).err() == EPERM);
  CHECK(r.MayMake(S_IFDIR | 02775).ok());  // a set-gid directory only passes its group on
  CHECK(r.MayMake(S_IFREG | 0755).ok());
  // chmod: adding set-id bits is refused, keeping the administrator's is not.
  CHECK(r.MayChange(S_IFREG | 0755, Change{.mode = 04755u}).err() == EPERM);
  CHECK(r.MayChange(S_IFREG | 0755, Change{.mode = 02755u}).err() == EPERM);
  CHECK(r.MayChange(S_IFREG | 04755, Change{.mode = 04700u}).ok());
  CHECK(r.MayChange(S_IFREG | 04755, Change{.mode = 0755u}).ok());
  CHECK(r.MayChange(S_IFDIR | 0755, Change{.mode = 02755u}).ok());
  // New contents for a set-id program are refused; set-gid without group
  // execute is no program.
  CHECK(r.MayChange(S_IFREG | 04755, Change{.contents = true}).err() == EPERM);
  CHECK(r.MayChange(S_IFREG | 02755, Change{.contents = true}).err() == EPERM);
  CHECK(r.MayChange(S_IFREG | 02644, Change{.contents = true}).ok());
  CHECK(r.MayChange(S_IFREG | 0755, Change{.contents = true}).ok());
  // Nothing given to root.
  CHECK(r.MayChange(S_IFREG | 0644, Change{.uid = 0u}).err() == EPERM);
  CHECK(r.MayChange(S_IFREG | 0644, Change{.gid = 0u}).err() == EPERM);
  CHECK(r.MayChange(S_IFREG | 0644, Change{.uid = 1000u, .gid = 100u}).ok());
  CHECK(r.MaySetXattr("security.capability").err() == EPERM);
  CHECK(r.MaySetXattr("user.x").ok());
  CHECK(r.MaySetXattr("security.selinux").ok());
}

TEST_CASE("uid= and gid= make every request act as one owner") {
  OwnerRule r = OwnerRule::Remote();
  r.uid = 1500;
  r.gid = 1600;
  CHECK(r.ActingUid(0) == 1500);
  CHECK(r.ActingUid(1000) == 1500);
  CHECK(r.GroupOf(0) == 1600);
  CHECK(r.GroupOf(100) == 1600);
  CHECK(r.MayChange(S_IFREG | 0644, Change{.uid = 1500u, .gid = 1600u}).ok());
  CHECK(r.MayChange(S_IFREG | 0644, Change{.uid = 1000u}).err() == EPERM);
  CHECK(r.MayChange(S_IFREG | 0644, Change{.gid = 100u}).err() == EPERM);
}

TEST_CASE("no-root-squash, setid and devices lift each restriction alone") {
  OwnerRule r = OwnerRule::Remote();
  r.squash_root = false;
  CHECK(r.ActingUid(0) == 0);
  CHECK(r.GroupOf(0) == 0);
  CHECK(r.MayChange(S_IFREG | 0644, Change{.uid = 0u}).ok());
  CHECK(r.MayMake(S_IFREG | 04755).err() == EPERM);
  r.setid = true;
  CHECK(r.MayMake(S_IFREG | 04755).ok());
  CHECK(r.MayChange(S_IFREG | 04755, Change{.contents = true}).ok());
  CHECK(r.MaySetXattr("security.capability").ok());
  CHECK(r.MayMake(S_IFCHR | 0600).err() == EPERM);
  r.devices = true;
  CHECK(r.MayMake(S_IFCHR | 0600).ok());
}
