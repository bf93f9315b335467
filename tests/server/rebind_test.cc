// Trebind (9p/messages.h), musclefs's extension for clients that
// reconnect: a new fid for an inode by its number, through a running
// server. It finds the file after a rename, and never reaches outside the
// attach root (an identity confined to /sub learns nothing of the rest).
#include <fcntl.h>

#include <catch2/catch.hpp>

#include "9p/client.h"
#include "tests/server/server_harness.h"

using namespace muscle;
using namespace muscle::p9;
using namespace muscle::test;

namespace {

// The error of a Trebind (0: it bound newfid; then `qid` is its qid).
int Rebind(Client& c, uint32_t fid, uint32_t newfid, uint64_t path, Qid* qid = nullptr) {
  auto r = c.Rpc(Trebind{fid, newfid, path});  // an Rlerror comes back as its error
  if (!r.ok()) return r.err();
  auto* b = std::get_if<Rrebind>(&*r);
  REQUIRE(b);
  if (qid) *qid = b->qid;
  return 0;
}

uint64_t PathOf(Client& c, uint32_t root, const std::vector<std::string>& names) {
  auto w = c.Walk(root, 70, names);
  REQUIRE(w.ok());
  REQUIRE(w->size() == names.size());
  REQUIRE(c.Clunk(70).ok());
  return w->back().path;
}

}  // namespace

TEST_CASE("Trebind binds a fid to an inode by number, only below the attach root") {
  TempDir dir;
  server::ServerOptions o;
  o.store_path = dir.path + "/store.db";
  o.listen = {"unix:" + dir.path + "/sock"};
  o.access["sub"] = server::AccessRule{"/sub", false, false};
  o.access["ro"] = server::AccessRule{"", true, false};
  InProcessServer srv(o);
  std::string ep = "unix:" + srv.endpoints()[0].path;

  Client admin;
  REQUIRE(admin.Connect(ep).ok());
  REQUIRE(admin.Version().ok());
  REQUIRE(admin.Attach(0).ok());
  REQUIRE(admin.Mkdir(0, "sub", 0755).ok());
  REQUIRE(admin.WalkPath(0, 1, "sub").ok());
  REQUIRE(admin.Create(1, "f", O_RDWR, 0644).ok());
  REQUIRE(admin.WriteAll(1, "kept").ok());
  REQUIRE(admin.Clunk(1).ok());
  REQUIRE(admin.Create(0, "outside", O_RDWR, 0644).ok());
  REQUIRE(admin.Clunk(0).ok());
  REQUIRE(admin.Attach(0).ok());
  uint64_t f = PathOf(admin, 0, {"sub", "f"});
  uint64_t outside = PathOf(admin, 0, {"outside"});
  uint64_t sub = PathOf(admin, 0, {"sub"});

  // After a rename the number still names the file (a path would not).
  REQUIRE(admin.WalkPath(0, 2, "sub").ok());
  auto mv = admin.Rpc(Trenameat{2, "f", 2, "g"});
  REQUIRE(mv.ok());
  Qid q;
  REQUIRE(Rebind(admin, 0, 5, f, &q) == 0);
  CHECK(q.path == f);
  REQUIRE(admin.Open(5, O_RDONLY).ok());
  CHECK(*admin.ReadAll(5) == "kept");
  // The new fid is a fid like any other; its number is taken now.
  CHECK(Rebind(admin, 0, 5, f) == EBADF);
  CHECK(Rebind(admin, 99, 6, f) == EBADF);  // no such fid
  REQUIRE(admin.Clunk(5).ok());
  // Numbers that name nothing (never made, or removed).
  CHECK(Rebind(admin, 0, 6, 1u << 30) == ESTALE);
  REQUIRE(admin.Unlink(0, "outside").ok());
  CHECK(Rebind(admin, 0, 6, outside) == ESTALE);
  REQUIRE(admin.Create(0, "outside", O_RDWR, 0644).ok());
  REQUIRE(admin.Clunk(0).ok());
  REQUIRE(admin.Attach(0).ok());
  uint64_t again = PathOf(admin, 0, {"outside"});
  CHECK(again != outside);  // a new file, a new number
  outside = again;

  // A confined identity reaches what is below its root, nothing else:
  // neither a file outside nor the whole tree's root.
  Client confined;
  REQUIRE(confined.Connect(ep).ok());
  REQUIRE(SendClaim(confined, "muscle-claim identity=sub\n") == "ok");
  REQUIRE(confined.Version().ok());
  REQUIRE(confined.Attach(0).ok());
  REQUIRE(Rebind(confined, 0, 1, f, &q) == 0);
  CHECK(q.path == f);
  REQUIRE(Rebind(confined, 0, 2, sub) == 0);
  CHECK(Rebind(confined, 0, 3, outside) == ESTALE);
  CHECK(Rebind(confined, 0, 3, 1) == ESTALE);
  // Rebound fids stay confined: ".." at the attach root stays put.
  REQUIRE(confined.Walk(2, 4, {".."}).ok());
  CHECK(confined.GetAttr(4)->qid.path == sub);

  // A read-only identity may rebind (it changes nothing) but not write.
  Client ro;
  REQUIRE(ro.Connect(ep).ok());
  REQUIRE(SendClaim(ro, "muscle-claim identity=ro\n") == "ok");
  REQUIRE(ro.Version().ok());
  REQUIRE(ro.Attach(0).ok());
  REQUIRE(Rebind(ro, 0, 1, f) == 0);
  CHECK(ro.Open(1, O_WRONLY).status().err() == EROFS);

  // A snapshot's fid rebinds within the views: the live file is not theirs.
  REQUIRE(admin.Attach(10, "@snapshots").ok());
  CHECK(Rebind(admin, 10, 11, f) == ESTALE);
}

TEST_CASE("Trebind reaches a file unlinked while open only after a restart, below the attach root") {
  TempDir dir;
  server::ServerOptions o;
  o.store_path = dir.path + "/store.db";
  o.listen = {"unix:" + dir.path + "/sock"};
  o.access["sub"] = server::AccessRule{"/sub", false, false};
  o.access["other"] = server::AccessRule{"/other", false, false};
  uint64_t tmp = 0;
  {
    Client c;  // still connected when the server stops (a plain client
               // that goes first ends its session: the file goes with it)
    InProcessServer srv(o);
    std::string ep = "unix:" + srv.endpoints()[0].path;
    REQUIRE(c.Connect(ep).ok());
    REQUIRE(c.Version().ok());
    REQUIRE(c.Attach(0).ok());
    REQUIRE(c.Mkdir(0, "sub", 0755).ok());
    REQUIRE(c.Mkdir(0, "other", 0755).ok());
    REQUIRE(c.WalkPath(0, 1, "sub").ok());
    REQUIRE(c.Create(1, "tmp", O_RDWR, 0600).ok());
    REQUIRE(c.WriteAll(1, "nameless").ok());
    tmp = PathOf(c, 0, {"sub", "tmp"});
    REQUIRE(c.WalkPath(0, 2, "sub").ok());
    REQUIRE(c.Unlink(2, "tmp").ok());
    // While the server runs, only the fids that had it reach it.
    CHECK(Rebind(c, 0, 5, tmp) == ESTALE);
    CHECK(*c.ReadAll(1) == "nameless");
  }  // stopped with the file open
  InProcessServer srv(o);
  std::string ep = "unix:" + srv.endpoints()[0].path;
  Client c;
  REQUIRE(c.Connect(ep).ok());
  REQUIRE(c.Version().ok());
  REQUIRE(c.Attach(0).ok());
  Qid q;
  REQUIRE(Rebind(c, 0, 5, tmp, &q) == 0);
  CHECK(q.path == tmp);
  REQUIRE(c.Open(5, O_RDONLY).ok());
  CHECK(*c.ReadAll(5) == "nameless");
  // Confined identities: below the directory it was last in, or not at all.
  Client sub;
  REQUIRE(sub.Connect(ep).ok());
  REQUIRE(SendClaim(sub, "muscle-claim identity=sub\n") == "ok");
  REQUIRE(sub.Version().ok());
  REQUIRE(sub.Attach(0).ok());
  CHECK(Rebind(sub, 0, 1, tmp) == 0);
  Client other;
  REQUIRE(other.Connect(ep).ok());
  REQUIRE(SendClaim(other, "muscle-claim identity=other\n") == "ok");
  REQUIRE(other.Version().ok());
  REQUIRE(other.Attach(0).ok());
  CHECK(Rebind(other, 0, 1, tmp) == ESTALE);
}
