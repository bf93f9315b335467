// Snapshots through a running server: the @snapshots and @ctl attach names
// over 9P, read-only browsing, and the access rules (confined, read-only,
// and the "snapshot" right), with identities claimed on the unix socket
// as muscle stdio does (transport/claim.h); TLS uses the same rules.
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <catch2/catch.hpp>

#include "9p/client.h"
#include "server/control.h"
#include "store/snapshot_view.h"
#include "tests/server/server_harness.h"

using namespace muscle;
using namespace muscle::p9;
using namespace muscle::test;

namespace {

// Connects (as `claim`, or as the local administrator when empty).
void Connect(Client& c, const std::string& ep, const std::string& claim) {
  REQUIRE(c.Connect(ep).ok());
  if (!claim.empty()) REQUIRE(SendClaim(c, claim) == "ok");
  REQUIRE(c.Version().ok());
}

// One control command on a fresh @ctl attach; the whole answer.
std::string Control(Client& c, const std::vector<std::string>& words, uint32_t fid = 90) {
  auto q = c.Attach(fid, "@ctl");
  REQUIRE(q.ok());
  REQUIRE(c.Open(fid, O_RDWR).ok());
  REQUIRE(c.Write(fid, 0, server::ControlCommand(words)).ok());
  auto a = c.ReadAll(fid);
  REQUIRE(a.ok());
  REQUIRE(c.Clunk(fid).ok());
  return *a;
}

std::string ReadPath(Client& c, uint32_t root, const std::string& path, uint32_t fid = 50) {
  Status s = c.WalkPath(root, fid, path);
  if (!s.ok()) return "<" + s.ToString() + ">";
  REQUIRE(c.Open(fid, O_RDONLY).ok());
  auto d = c.ReadAll(fid);
  REQUIRE(c.Clunk(fid).ok());
  REQUIRE(d.ok());
  return *d;
}

void Put(Client& c, uint32_t dir, const std::string& name, const std::string& data) {
  uint32_t fid = 60;
  REQUIRE(c.Walk(dir, fid, {}).ok());
  auto q = c.Create(fid, name, O_WRONLY | O_TRUNC, 0644);
  if (!q.ok()) {
    REQUIRE(c.Clunk(fid).ok());
    REQUIRE(c.Walk(dir, fid, {name}).ok());
    REQUIRE(c.Open(fid, O_WRONLY | O_TRUNC).ok());
  }
  REQUIRE(c.WriteAll(fid, data).ok());
  REQUIRE(c.Clunk(fid).ok());
}

}  // namespace

TEST_CASE("snapshots over 9P: browse read-only, control by right, confined to a subtree") {
  TempDir dir;
  server::ServerOptions o;
  o.store_path = dir.path + "/store.db";
  o.listen = {"unix:" + dir.path + "/sock"};
  o.access["sub"] = server::AccessRule{"/sub", false, false};
  o.access["ro"] = server::AccessRule{"", true, false};
  o.access["snap"] = server::AccessRule{"", false, true};
  o.access["subsnap"] = server::AccessRule{"/sub", false, true};
  o.access["rosnap"] = server::AccessRule{"", true, true};
  InProcessServer srv(o);
  std::string ep = "unix:" + srv.endpoints()[0].path;

  Client admin;
  Connect(admin, ep, "");
  REQUIRE(admin.Attach(0).ok());
  REQUIRE(admin.Mkdir(0, "sub", 0755).ok());
  REQUIRE(admin.Walk(0, 1, {"sub"}).ok());
  Put(admin, 1, "f", "v1");
  Put(admin, 0, "top", "t1");
  std::string answer = Control(admin, {"snapshot", "s1"});
  INFO(answer);
  REQUIRE(answer.rfind("ok\ns1\t", 0) == 0);
  Put(admin, 1, "f", "v2 (newer)");
  REQUIRE(admin.Unlink(0, "top").ok());

  SECTION("the administrator browses every snapshot, read-only") {
    REQUIRE(admin.Attach(10, "@snapshots").ok());
    REQUIRE(admin.Walk(10, 9, {}).ok());
    REQUIRE(admin.Open(9, O_RDONLY).ok());
    auto names = admin.ReadDirNames(9);
    REQUIRE(names.ok());
    CHECK(std::count(names->begin(), names->end(), "s1") == 1);
    CHECK(ReadPath(admin, 10, "s1/sub/f") == "v1");
    CHECK(ReadPath(admin, 10, "s1/top") == "t1");
    CHECK(ReadPath(admin, 0, "sub/f") == "v2 (newer)");
    // Attach one snapshot, or a directory in it.
    REQUIRE(admin.Attach(11, "@snapshots/s1/sub").ok());
    CHECK(ReadPath(admin, 11, "f") == "v1");
    auto up = admin.Walk(11, 12, {".."});  // the attach root stays put
    REQUIRE(up.ok());
    CHECK(ReadPath(admin, 12, "f") == "v1");
    CHECK(!admin.Attach(13, "@snapshots/nope").ok());
    CHECK(!admin.Attach(13, "@snapshots/s1/top").ok());  // not a directory
    CHECK(!admin.Attach(13, "@other").ok());
    // Every change fails with EROFS.
    REQUIRE(admin.Walk(10, 20, {"s1", "sub", "f"}).ok());
    auto w = admin.Open(20, O_WRONLY);
    REQUIRE(!w.ok());
    CHECK(w.status().err() == EROFS);
    REQUIRE(admin.Walk(10, 21, {"s1", "sub"}).ok());
    auto c = admin.Create(21, "new", O_WRONLY, 0644);
    REQUIRE(!c.ok());
    CHECK(c.status().err() == EROFS);
    REQUIRE(admin.Walk(10, 22, {"s1", "sub"}).ok());
    CHECK(admin.Mkdir(22, "d", 0755).status().err() == EROFS);
    CHECK(admin.Unlink(22, "f").err() == EROFS);
    // Across the two trees (the live root, fid 0, and a snapshot's
    // directory and file): refused whichever side names the snapshot.
    auto refused = [&](const Message& m) {
      auto r = admin.Rpc(m);  // an Rlerror comes back as its error
      return !r.ok() && r.err() == EROFS;
    };
    CHECK(refused(Tlink{0, 20, "hard"}));
    CHECK(refused(Trenameat{22, "f", 0, "stolen"}));
    CHECK(refused(Trenameat{0, "sub", 22, "planted"}));
    REQUIRE(admin.WalkPath(0, 24, "sub/f").ok());
    CHECK(refused(Trename{24, 22, "moved"}));  // a live file into a snapshot
    REQUIRE(admin.Clunk(24).ok());
    CHECK(ReadPath(admin, 0, "sub/f") == "v2 (newer)");
    CHECK(ReadPath(admin, 11, "f") == "v1");
    auto g = admin.GetAttr(20);
    REQUIRE(g.ok());
    CHECK(g->size == 2);
    CHECK(g->qid.path != 0);
  }
  SECTION("a confined identity sees its own subtree in every snapshot") {
    Client c;
    Connect(c, ep, "muscle-claim identity=sub\n");
    REQUIRE(c.Attach(0, "@snapshots").ok());
    CHECK(ReadPath(c, 0, "s1/f") == "v1");
    CHECK(ReadPath(c, 0, "s1/top").find("<") == 0);  // outside its root
    CHECK(ReadPath(c, 0, "s1/sub/f").find("<") == 0);
    auto up = c.Walk(0, 1, {"s1", "..", "..", "top"});
    CHECK(!(up.ok() && up->size() == 4));
    // It may list and read history, not take, prune or restore.
    std::string list = Control(c, {"snapshots"});
    CHECK(list.rfind("ok\ns1\t", 0) == 0);
    CHECK(list.find("\t-\n") != std::string::npos);  // no global "added" figure
    CHECK(Control(c, {"history", "f"}).find("ok\n") == 0);
    CHECK(Control(c, {"snapshot"}).rfind("error EPERM", 0) == 0);
    CHECK(Control(c, {"restore", "s1", "f"}).rfind("error EPERM", 0) == 0);
    CHECK(Control(c, {"prune", "keep-last", "1"}).rfind("error EPERM", 0) == 0);
  }
  SECTION("a read-only identity may browse and list, not restore") {
    Client c;
    Connect(c, ep, "muscle-claim identity=ro\n");
    REQUIRE(c.Attach(0, "@snapshots").ok());
    CHECK(ReadPath(c, 0, "s1/top") == "t1");
    CHECK(Control(c, {"snapshots"}).rfind("ok\ns1", 0) == 0);
    CHECK(Control(c, {"snapshot"}).rfind("error EPERM", 0) == 0);
    REQUIRE(c.Attach(1).ok());
    CHECK(c.Mkdir(1, "x", 0755).status().err() == EROFS);
  }
  SECTION("the snapshot right: take, restore inside its root, prune") {
    Client c;
    Connect(c, ep, "muscle-claim identity=subsnap\n");
    std::string a = Control(c, {"snapshot", "by-subsnap"});
    CHECK(a.rfind("ok\nby-subsnap", 0) == 0);
    CHECK(Control(c, {"restore", "s1", "f"}) == "ok\nf\n");
    CHECK(ReadPath(admin, 0, "sub/f") == "v1");
    // Paths are below its root: "top" is /sub/top, which s1 does not have.
    CHECK(Control(c, {"restore", "s1", "top"}).rfind("error ENOENT", 0) == 0);
    CHECK(Control(c, {"restore", "s1", "../top"}).rfind("error EINVAL", 0) == 0);
    Client s;
    Connect(s, ep, "muscle-claim identity=snap\n");
    CHECK(Control(s, {"restore", "s1", "top", "top-back"}) == "ok\ntop-back\n");
    CHECK(ReadPath(admin, 0, "top-back") == "t1");
    std::string d = Control(s, {"diff", "s1", "", ""});
    CHECK(d.find("+\ttop-back\n") != std::string::npos);
    // Taking, restoring and diffing inside its root, never pruning: a
    // snapshot is of the whole tree.
    CHECK(Control(c, {"prune", "keep-last", "1"}).rfind("error EPERM", 0) == 0);
    CHECK(Control(c, {"prune", "keep-last", "1", "dry-run"}).rfind("error EPERM", 0) == 0);
    CHECK(Control(s, {"prune", "keep-last", "1", "dry-run"}) .find("ok\ns1\t") == 0);
    CHECK(Control(s, {"prune", "keep-last", "1"}).find("ok\ns1\t") == 0);
    CHECK(Control(s, {"snapshots"}).find("s1") == std::string::npos);
    CHECK(Control(s, {"frobnicate"}).rfind("error EINVAL", 0) == 0);
  }
  SECTION("a confined identity acts only on the snapshots its view shows") {
    // "hidden": a snapshot taken while /sub did not exist.
    REQUIRE(admin.Rpc(Trenameat{0, "sub", 0, "sub-away"}).ok());
    REQUIRE(Control(admin, {"snapshot", "hidden"}).rfind("ok\n", 0) == 0);
    REQUIRE(admin.Rpc(Trenameat{0, "sub-away", 0, "sub"}).ok());
    auto root_hash = [&](const std::string& name) {
      for (const auto& f : server::ControlFields(Control(admin, {"snapshots"})))
        if (f.size() >= 3 && f[0] == name) return f[2];
      return std::string();
    };
    std::string s1_root = root_hash("s1");
    REQUIRE(s1_root.size() == 64);
    Client c;
    Connect(c, ep, "muscle-claim identity=subsnap\n");
    // A hidden snapshot answers as a name that does not exist.
    std::string none = Control(c, {"diff", "nope", "", ""});
    CHECK(none.rfind("error ENOENT", 0) == 0);
    CHECK(Control(c, {"diff", "hidden", "", ""}).rfind("error ENOENT", 0) == 0);
    CHECK(Control(c, {"diff", "s1", "hidden", ""}).rfind("error ENOENT", 0) == 0);
    CHECK(Control(c, {"restore", "hidden", "f", "g"}) == "error ENOENT: no snapshot 'hidden'\n");
    CHECK(none == "error ENOENT: no snapshot 'nope'\n");
    CHECK(Control(c, {"snapshots"}).find("hidden") == std::string::npos);
    CHECK(Control(c, {"history", "f"}).find("hidden") == std::string::npos);
    // The whole tree's root hash is not a name it may use; its subtree's is.
    CHECK(Control(c, {"diff", s1_root.substr(0, 12), "", ""}).rfind("error ENOENT", 0) == 0);
    CHECK(Control(c, {"restore", s1_root.substr(0, 12), "f", "g"}).rfind("error ENOENT", 0) == 0);
    std::string sub_hash;
    for (const auto& f : server::ControlFields(Control(c, {"snapshots"})))
      if (f.size() >= 3 && f[0] == "s1") sub_hash = f[2];
    REQUIRE(sub_hash.size() == 64);
    CHECK(Control(c, {"diff", sub_hash.substr(0, 12), "", ""}).rfind("ok\n", 0) == 0);
    // Names that could be taken for hash prefixes are refused (they would
    // shadow another snapshot's hash, the administrator's included).
    CHECK(Control(c, {"snapshot", s1_root.substr(0, 8)}).rfind("error EINVAL", 0) == 0);
    CHECK(Control(admin, {"snapshot", "c0ffee"}).rfind("error EINVAL", 0) == 0);
    CHECK(Control(admin, {"snapshot", "c0ffee-2"}).rfind("ok\n", 0) == 0);
    CHECK(Control(admin, {"diff", s1_root.substr(0, 8), "", ""}).rfind("ok\n", 0) == 0);
    // Read-only with the snapshot right: no pruning (it destroys history).
    Client ro;
    Connect(ro, ep, "muscle-claim identity=rosnap\n");
    CHECK(Control(ro, {"prune", "keep-last", "1"}).rfind("error EROFS", 0) == 0);
    CHECK(Control(admin, {"snapshots"}).find("hidden") != std::string::npos);
  }
}

TEST_CASE("snapshots over 9P2000.u and 9P2000: directories list as stat records") {
  TempDir dir;
  server::ServerOptions o;
  o.store_path = dir.path + "/store.db";
  o.listen = {"unix:" + dir.path + "/sock"};
  InProcessServer srv(o);
  std::string ep = "unix:" + srv.endpoints()[0].path;
  Client admin;
  Connect(admin, ep, "");
  REQUIRE(admin.Attach(0).ok());
  REQUIRE(admin.Mkdir(0, "d", 0755).ok());
  REQUIRE(admin.Walk(0, 1, {"d"}).ok());
  for (int i = 0; i < 40; i++) Put(admin, 1, "file-" + std::to_string(i), "x");
  REQUIRE(Control(admin, {"snapshot", "s"}).rfind("ok\n", 0) == 0);
  for (const char* version : {"9P2000.u", "9P2000"}) {
    INFO(version);
    Client c;
    REQUIRE(c.Connect(ep).ok());
    REQUIRE(c.Version(8192, version).ok());
    Message attach = std::string(version) == "9P2000" ? Message(Tattach2000{0, kNoFid, "0", "@snapshots/s/d"})
                                                      : Message(Tattach{0, kNoFid, "", "@snapshots/s/d", 0});
    REQUIRE(c.Rpc(attach).ok());
    REQUIRE(c.Rpc(Twalk{0, 1, {}}).ok());
    REQUIRE(c.Rpc(Topen{1, kORead}).ok());
    size_t records = 0;
    uint64_t offset = 0;
    for (;;) {
      auto r = c.Rpc(Tread{1, offset, 1000});  // a few records per read
      INFO((r.ok() ? "" : r.status().ToString()));
      REQUIRE(r.ok());
      const std::string& b = std::get<Rread>(*r).data.bytes;
      if (b.empty()) break;
      offset += b.size();
      for (size_t i = 0; i + 2 <= b.size(); records++) i += 2 + (uint8_t(b[i]) | uint8_t(b[i + 1]) << 8);
    }
    CHECK(records == 40);
    auto w = c.Rpc(Topen{1, kOWrite});
    CHECK(!w.ok());
  }
}

TEST_CASE("control files and their answers are bounded per identity") {
  TempDir dir;
  server::ServerOptions o;
  o.store_path = dir.path + "/store.db";
  o.listen = {"unix:" + dir.path + "/sock"};
  o.access["ro"] = server::AccessRule{"", true, false};
  o.access["other"] = server::AccessRule{"", true, false};
  InProcessServer srv(o);
  std::string ep = "unix:" + srv.endpoints()[0].path;
  Client admin;
  Connect(admin, ep, "");
  REQUIRE(admin.Attach(0).ok());
  REQUIRE(Control(admin, {"snapshot", "empty"}).rfind("ok\n", 0) == 0);
  // A diff answer of ~1 MiB: 4,400 new files with long names (at the top:
  // a new directory is one line).
  for (int i = 0; i < 4400; i++) {
    REQUIRE(admin.Walk(0, 2, {}).ok());
    char name[300];
    snprintf(name, sizeof name, "%05d-%s", i, std::string(233, 'n').c_str());
    REQUIRE(admin.Create(2, name, O_WRONLY, 0644).ok());
    REQUIRE(admin.Clunk(2).ok());
  }
  // Control files: a read-only identity holds at most its share...
  Client ro, other;
  Connect(ro, ep, "muscle-claim identity=ro\n");
  Connect(other, ep, "muscle-claim identity=other\n");
  int opened = 0;
  for (uint32_t fid = 100; fid < 100 + 200; fid++) {
    auto a = ro.Attach(fid, "@ctl");
    if (!a.ok()) {
      CHECK(a.err() == EMFILE);
      break;
    }
    opened++;
  }
  CHECK(opened == int(store::SnapshotView::kMaxControlFilesIdentity));
  // ...and the others (the administrator too) still open theirs.
  CHECK(other.Attach(100, "@ctl").ok());
  CHECK(admin.Attach(100, "@ctl").ok());
  for (uint32_t fid = 100; fid < 100 + uint32_t(opened); fid++) REQUIRE(ro.Clunk(fid).ok());
  REQUIRE(other.Clunk(100).ok());
  REQUIRE(admin.Clunk(100).ok());
  // Answers held: one identity's at most 8 MiB; past that ENOMEM for it only.
  int held = 0, refused = 0;
  for (uint32_t fid = 200; fid < 210; fid++) {
    REQUIRE(ro.Attach(fid, "@ctl").ok());
    REQUIRE(ro.Open(fid, O_RDWR).ok());
    REQUIRE(ro.Write(fid, 0, server::ControlCommand({"diff", "empty", "", ""})).ok());
    auto head = ro.Read(fid, 0, 64);
    REQUIRE(head.ok());
    if (head->rfind("ok\n", 0) == 0) held++;
    else if (head->rfind("error ENOMEM", 0) == 0) refused++;
  }
  CHECK(held == 7);
  CHECK(refused == 3);
  std::string big = Control(admin, {"diff", "empty", "", ""});
  CHECK(big.rfind("ok\n", 0) == 0);
  CHECK(big.size() > (1u << 20));
}

TEST_CASE("control files are bounded; a claimed root alone gives no snapshot right") {
  TempDir dir;
  server::ServerOptions o;
  o.store_path = dir.path + "/store.db";
  o.listen = {"unix:" + dir.path + "/sock"};
  InProcessServer srv(o);
  std::string ep = "unix:" + srv.endpoints()[0].path;
  Client admin;
  Connect(admin, ep, "");
  REQUIRE(admin.Attach(0).ok());
  REQUIRE(admin.Mkdir(0, "sub", 0755).ok());
  REQUIRE(Control(admin, {"snapshot", "s"}).rfind("ok\n", 0) == 0);
  {
    // muscle stdio --root /sub, without an identity: confined, no right.
    Client c;
    Connect(c, ep, "muscle-claim root=/sub\n");
    CHECK(Control(c, {"prune", "keep-last", "1"}).rfind("error EPERM", 0) == 0);
    CHECK(Control(c, {"snapshot"}).rfind("error EPERM", 0) == 0);
    // It does not see, nor may it probe, the whole tree's root hash.
    std::string list = Control(admin, {"snapshots"});
    std::string root_hash = server::ControlFields(list)[1][2];
    REQUIRE(c.Attach(1, "@snapshots").ok());
    auto by_root = c.Walk(1, 2, {root_hash.substr(0, 12)});
    CHECK(!(by_root.ok() && by_root->size() == 1));
    std::string mine = server::ControlFields(Control(c, {"snapshots"}))[1][2];
    CHECK(mine != root_hash);
    auto by_mine = c.Walk(1, 3, {mine.substr(0, 12)});
    CHECK((by_mine.ok() && by_mine->size() == 1));
  }
  // At most 1024 control files at once, and they are given back on clunk.
  Client many;
  Connect(many, ep, "");
  int opened = 0;
  for (uint32_t fid = 100; fid < 100 + 1100; fid++) {
    if (!many.Attach(fid, "@ctl").ok()) break;
    opened++;
  }
  CHECK(opened == 1024);
  REQUIRE(many.Clunk(100).ok());
  CHECK(many.Attach(5000, "@ctl").ok());
  CHECK(!many.Attach(5001, "@ctl").ok());
}

TEST_CASE("status shows an identity its own connections only; the administrator sees everyone's") {
  TempDir dir;
  server::ServerOptions o;
  o.store_path = ":memory:";
  o.listen = {"unix:" + dir.path + "/sock"};
  o.access["alice"] = server::AccessRule{"", false, false};
  o.access["bob"] = server::AccessRule{"", false, false};
  InProcessServer srv(o);
  std::string ep = "unix:" + srv.endpoints()[0].path;
  Client admin, alice, bob;
  Connect(admin, ep, "");
  Connect(alice, ep, "muscle-claim identity=alice\n");
  Connect(bob, ep, "muscle-claim identity=bob\n");
  REQUIRE(bob.Attach(0).ok());
  auto lines = [](const std::string& answer, const std::string& first) {
    std::vector<std::string> out;
    for (const auto& f : server::ControlFields(answer))
      if (!f.empty() && f[0] == first) {
        std::string l;
        for (const auto& x : f) l += x + " ";
        out.push_back(l);
      }
    return out;
  };
  auto mentions = [](const std::vector<std::string>& ls, const std::string& what) {
    for (const auto& l : ls)
      if (l.find(what) != std::string::npos) return true;
    return false;
  };
  std::string a = Control(alice, {"status"});
  REQUIRE(a.find("ok\n") == 0);
  CHECK(mentions(lines(a, "connection"), "identity=alice"));
  CHECK(!mentions(lines(a, "connection"), "identity=bob"));
  CHECK(!mentions(lines(a, "connection"), "identity=-"));
  CHECK(!mentions(lines(a, "identity"), "bob"));
  CHECK(mentions(lines(a, "latency"), "read"));  // the server's figures stay
  std::string all = Control(admin, {"status"});
  CHECK(mentions(lines(all, "connection"), "identity=alice"));
  CHECK(mentions(lines(all, "connection"), "identity=bob"));
  CHECK(mentions(lines(all, "identity"), "bob"));
}
