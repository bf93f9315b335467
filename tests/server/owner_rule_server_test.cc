// Remote identities squashed like NFS (auth/owner_rule.h), through a real
// server: identities claimed on the unix socket as `muscle stdio` does
// (TLS identities get the same rules: tests/tls/tls_test.cc checks the
// default for a TLS identity without an access line). Every dialect that
// can make or change a file is tried: 9P2000.L and 9P2000.u.
#include <fcntl.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "9p/client.h"
#include "tests/server/server_harness.h"

using namespace muscle;
using namespace muscle::p9;
using namespace muscle::test;

namespace {

struct Rig {
  TempDir dir;
  std::unique_ptr<InProcessServer> srv;
  std::string ep;
  Rig() {
    server::ServerOptions o;
    o.store_path = ":memory:";
    o.listen = {"unix:" + dir.path + "/sock"};
    server::AccessRule remote;
    remote.owner = auth::OwnerRule::Remote();
    o.access["remote"] = remote;
    server::AccessRule anon = remote;
    anon.owner.uid = 1500;
    anon.owner.gid = 1600;
    o.access["anon"] = anon;
    server::AccessRule trusted = remote;
    trusted.owner.squash_root = false;
    trusted.owner.setid = true;
    trusted.owner.devices = true;
    o.access["trusted"] = trusted;
    srv = std::make_unique<InProcessServer>(o);
    ep = "unix:" + dir.path + "/sock";
  }
  // A connection as `identity` ("" = the administrator), attached as uid
  // `uid` on fid 0.
  void Connect(Client& c, const std::string& identity, uint32_t uid = 0,
               const std::string& version = "9P2000.L") {
    REQUIRE(c.Connect(ep).ok());
    if (!identity.empty()) REQUIRE(SendClaim(c, "muscle-claim identity=" + identity + "\n") == "ok");
    REQUIRE(c.Version(65536, version).ok());
    REQUIRE(c.Rpc(Tattach{0, kNoFid, "", "", uid}).ok());
  }
};

// The owner, group and mode of `name` in the root, as the administrator sees it.
Rgetattr Seen(Rig& rig, const std::string& name) {
  Client admin;
  rig.Connect(admin, "");
  REQUIRE(admin.Walk(0, 1, {name}).ok());
  auto a = admin.GetAttr(1);
  REQUIRE(a.ok());
  return *a;
}

int Err(const Result<Message>& r) { return r.ok() ? 0 : r.err(); }

}  // namespace

TEST_CASE("a remote identity's root acts as nobody, and makes no set-id files or devices") {
  Rig rig;
  Client c;
  rig.Connect(c, "remote", 0);
  REQUIRE(c.Walk(0, 1, {}).ok());
  REQUIRE(Err(c.Rpc(Tlcreate{1, "made-by-root", O_WRONLY, 0644, 0})) == 0);
  Rgetattr a = Seen(rig, "made-by-root");
  CHECK(a.uid == auth::kNobody);
  CHECK(a.gid == auth::kNoGroup);
  CHECK(Err(c.Rpc(Tmkdir{0, "dir", 0755, 0})) == 0);
  CHECK(Seen(rig, "dir").uid == auth::kNobody);
  CHECK(Seen(rig, "dir").gid == auth::kNoGroup);
  CHECK(Err(c.Rpc(Tsymlink{0, "link", "dir", 0})) == 0);
  CHECK(Seen(rig, "link").uid == auth::kNobody);

  // Devices and set-id files are refused; FIFOs and set-gid directories are not.
  CHECK(Err(c.Rpc(Tmknod{0, "mem", S_IFCHR | 0600, 1, 1, 0})) == EPERM);
  CHECK(Err(c.Rpc(Tmknod{0, "sda", S_IFBLK | 0600, 8, 0, 0})) == EPERM);
  CHECK(Err(c.Rpc(Tmknod{0, "fifo", S_IFIFO | 0600, 0, 0, 0})) == 0);
  CHECK(Err(c.Rpc(Tmknod{0, "suid-node", S_IFREG | 04755, 0, 0, 0})) == EPERM);
  REQUIRE(c.Walk(0, 2, {}).ok());
  CHECK(Err(c.Rpc(Tlcreate{2, "suid", O_WRONLY, 04755, 0})) == EPERM);
  CHECK(Err(c.Rpc(Tlcreate{2, "sgid", O_WRONLY, 02755, 0})) == EPERM);
  CHECK(Err(c.Rpc(Tmkdir{0, "shared", 02775, 1000})) == 0);
  CHECK((Seen(rig, "shared").mode & 07777) == 02775);
  CHECK(Err(c.Rpc(Tclunk{2})) == 0);

  // chmod u+s, chown to root, chgrp to root: refused; to another user: allowed.
  REQUIRE(c.Walk(0, 3, {"made-by-root"}).ok());
  CHECK(Err(c.Rpc(Tsetattr{3, kSetMode, 04755})) == EPERM);
  CHECK(Err(c.Rpc(Tsetattr{3, kSetUid, 0, 0})) == EPERM);
  CHECK(Err(c.Rpc(Tsetattr{3, kSetGid, 0, 0, 0})) == EPERM);
  CHECK(Err(c.Rpc(Tsetattr{3, kSetUid | kSetGid, 0, 1000, 100})) == 0);
  CHECK(Seen(rig, "made-by-root").uid == 1000);
  CHECK(Err(c.Rpc(Tsetattr{3, kSetMode, 0755})) == 0);
  // File capabilities are set-uid by other means.
  REQUIRE(c.Walk(0, 4, {"made-by-root"}).ok());
  CHECK(Err(c.Rpc(Txattrcreate{4, "security.capability", 20, 0})) == EPERM);
  CHECK(Err(c.Rpc(Txattrcreate{4, "user.note", 2, 0})) == 0);

  // A user's uid is believed, as NFS's AUTH_SYS does.
  Client user;
  rig.Connect(user, "remote", 1000);
  REQUIRE(user.Walk(0, 1, {}).ok());
  REQUIRE(Err(user.Rpc(Tlcreate{1, "made-by-1000", O_WRONLY, 0644, 100})) == 0);
  CHECK(Seen(rig, "made-by-1000").uid == 1000);
  CHECK(Seen(rig, "made-by-1000").gid == 100);
}

TEST_CASE("a remote identity may not change an administrator's set-uid program") {
  Rig rig;
  {
    Client admin;
    rig.Connect(admin, "");
    REQUIRE(admin.Walk(0, 1, {}).ok());
    REQUIRE(Err(admin.Rpc(Tlcreate{1, "prog", O_WRONLY, 04755, 0})) == 0);
    REQUIRE(admin.WriteAll(1, "#!/bin/sh\n").ok());
  }
  CHECK((Seen(rig, "prog").mode & 07777) == 04755);
  Client c;
  rig.Connect(c, "remote", 1000);
  REQUIRE(c.Walk(0, 1, {"prog"}).ok());
  CHECK(Err(c.Rpc(Tlopen{1, O_WRONLY})) == EPERM);
  CHECK(Err(c.Rpc(Tlopen{1, O_RDWR | O_TRUNC})) == EPERM);
  CHECK(Err(c.Rpc(Tsetattr{1, kSetSize, 0, 0, 0, 0})) == EPERM);
  CHECK(Err(c.Rpc(Tsetattr{1, kSetMode, 04700})) == 0);  // its own bits kept: no escalation
  CHECK(Err(c.Rpc(Tsetattr{1, kSetMode, 0755})) == 0);   // dropping them is fine
  REQUIRE(c.Walk(0, 2, {"prog"}).ok());
  CHECK(Err(c.Rpc(Tlopen{2, O_WRONLY})) == 0);  // no longer set-uid
  CHECK(Err(c.Rpc(Tlopen{1, O_RDONLY})) == 0);
}

TEST_CASE("uid= and gid= make every request of an identity act as one owner") {
  Rig rig;
  Client c;
  rig.Connect(c, "anon", 0);
  REQUIRE(c.Walk(0, 1, {}).ok());
  REQUIRE(Err(c.Rpc(Tlcreate{1, "f", O_WRONLY, 0644, 0})) == 0);
  CHECK(Seen(rig, "f").uid == 1500);
  CHECK(Seen(rig, "f").gid == 1600);
  Client other;
  rig.Connect(other, "anon", 1000);
  CHECK(Err(other.Rpc(Tmkdir{0, "d", 0755, 100})) == 0);
  CHECK(Seen(rig, "d").uid == 1500);
  CHECK(Seen(rig, "d").gid == 1600);
  REQUIRE(other.Walk(0, 2, {"d"}).ok());
  CHECK(Err(other.Rpc(Tsetattr{2, kSetUid, 0, 1000})) == EPERM);
  CHECK(Err(other.Rpc(Tsetattr{2, kSetGid, 0, 0, 100})) == EPERM);
  CHECK(Err(other.Rpc(Tsetattr{2, kSetUid | kSetGid, 0, 1500, 1600})) == 0);
}

TEST_CASE("9P2000.u: creates and wstat follow the same owner rule") {
  Rig rig;
  Client c;
  rig.Connect(c, "remote", 0, "9P2000.u");
  REQUIRE(c.Walk(0, 1, {}).ok());
  CHECK(Err(c.Rpc(TcreateU{1, "mem", kDmDevice | 0600, kORead, "c 1 1"})) == EPERM);
  CHECK(Err(c.Rpc(TcreateU{1, "suid", kDmSetuid | 0755, kOWrite, ""})) == EPERM);
  REQUIRE(Err(c.Rpc(TcreateU{1, "plain", 0644, kOWrite, ""})) == 0);
  CHECK(Seen(rig, "plain").uid == auth::kNobody);
  REQUIRE(c.Walk(0, 2, {"plain"}).ok());
  TwstatU chmod{2, DontTouchStat()};
  chmod.stat.mode = kDmSetuid | 0755;
  CHECK(Err(c.Rpc(chmod)) == EPERM);
  TwstatU chown{2, DontTouchStat()};
  chown.stat.n_uid = 0;
  CHECK(Err(c.Rpc(chown)) == EPERM);
  TwstatU chown_text{2, DontTouchStat()};
  chown_text.stat.uid = "0";  // the uid as a string, as 9P2000 says it
  CHECK(Err(c.Rpc(chown_text)) == EPERM);
  CHECK(Seen(rig, "plain").uid == auth::kNobody);
  CHECK((Seen(rig, "plain").mode & 07777) == 0644);
}

TEST_CASE("an identity whose rule allows it acts as root and makes devices and set-id files") {
  Rig rig;
  Client c;
  rig.Connect(c, "trusted", 0);
  REQUIRE(c.Walk(0, 1, {}).ok());
  REQUIRE(Err(c.Rpc(Tlcreate{1, "suid", O_WRONLY, 04755, 0})) == 0);
  CHECK(Seen(rig, "suid").uid == 0);
  CHECK((Seen(rig, "suid").mode & 07777) == 04755);
  CHECK(Err(c.Rpc(Tmknod{0, "null", S_IFCHR | 0666, 1, 3, 0})) == 0);
  // And the administrator, as ever.
  Client admin;
  rig.Connect(admin, "");
  CHECK(Err(admin.Rpc(Tmknod{0, "zero", S_IFCHR | 0666, 1, 5, 0})) == 0);
  CHECK(Seen(rig, "zero").uid == 0);
}
