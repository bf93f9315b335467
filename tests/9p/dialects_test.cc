// 9P2000 and 9P2000.u end to end: the server over its unix socket and
// loopback TCP, spoken to by the project's client in each dialect, with
// files written through one dialect read back through the others.
#include <fcntl.h>

#include <catch2/catch.hpp>
#include <set>

#include "9p/client.h"
#include "9p/codec.h"
#include "9p/wire.h"
#include "tests/server/server_harness.h"

using namespace muscle;
using namespace muscle::p9;
using namespace muscle::test;

namespace {

template <class R>
R Expect(Client& c, const Message& m) {
  auto r = c.Rpc(m);
  INFO(NameOf(m) << ": " << (r.ok() ? NameOf(*r) : r.status().ToString()));
  REQUIRE(r.ok());
  REQUIRE(std::holds_alternative<R>(*r));
  return std::get<R>(*r);
}

// A connection in a stat dialect, attached as fid 0 to the root.
void Connect(Client& c, const std::string& ep, const std::string& version) {
  REQUIRE(c.Connect(ep).ok());
  REQUIRE(c.Version(65536, version).ok());
  if (version == "9P2000") Expect<Rattach>(c, Tattach2000{0, kNoFid, "1000", ""});
  else Expect<Rattach>(c, Tattach{0, kNoFid, "", "", 1000});
}

void Put(Client& c, const std::string& version, const std::string& name, const std::string& data) {
  Expect<Rwalk>(c, Twalk{0, 1, {}});
  if (version == "9P2000") Expect<Rcreate>(c, Tcreate{1, name, 0644, kOWrite});
  else Expect<Rcreate>(c, TcreateU{1, name, 0644, kOWrite, ""});
  for (size_t off = 0; off < data.size();) {
    size_t n = std::min<size_t>(data.size() - off, c.msize() - kIoHeaderSize);
    auto w = Expect<Rwrite>(c, Twrite{1, off, Data{data.substr(off, n)}});
    REQUIRE(w.count == n);
    off += n;
  }
  Expect<Rclunk>(c, Tclunk{1});
}

std::string Get(Client& c, const std::string& name) {
  Expect<Rwalk>(c, Twalk{0, 2, {name}});
  Expect<Ropen>(c, Topen{2, kORead});
  std::string out;
  for (;;) {
    auto r = Expect<Rread>(c, Tread{2, out.size(), c.msize() - kIoHeaderSize});
    if (r.data.bytes.empty()) break;
    out += r.data.bytes;
  }
  Expect<Rclunk>(c, Tclunk{2});
  return out;
}

// The names in the root, read as stat records at consecutive offsets.
std::set<std::string> List(Client& c, Dialect d, uint32_t count) {
  Expect<Rwalk>(c, Twalk{0, 3, {}});
  Expect<Ropen>(c, Topen{3, kORead});
  std::set<std::string> names;
  uint64_t offset = 0;
  for (;;) {
    auto r = Expect<Rread>(c, Tread{3, offset, count});
    const std::string& b = r.data.bytes;
    if (b.empty()) break;
    WireReader rd(reinterpret_cast<const uint8_t*>(b.data()), b.size());
    while (rd.remaining()) {
      StatU st;
      REQUIRE((d == k9P2000u ? DecodeStat(rd, st) : DecodeStat(rd, static_cast<Stat&>(st))));
      REQUIRE(names.insert(st.name).second);
    }
    offset += b.size();
  }
  // Anywhere but 0 or the end of the last read is refused.
  REQUIRE(!c.Rpc(Tread{3, 1, count}).ok());
  Expect<Rclunk>(c, Tclunk{3});
  return names;
}

}  // namespace

TEST_CASE("9P2000 and 9P2000.u over unix and tcp: files, stat, wstat, directory reads") {
  TempDir dir;
  InProcessServer srv(dir.path + "/store.db", dir.path);
  for (std::string ep : {srv.unix_endpoint(), srv.tcp_endpoint()}) {
    for (std::string version : {"9P2000", "9P2000.u"}) {
      INFO(version << " over " << ep);
      Dialect d = version == "9P2000" ? k9P2000 : k9P2000u;
      Client c;
      Connect(c, ep, version);
      std::string name = "f-" + version + (ep[0] == 'u' ? "-unix" : "-tcp");
      std::string data = RandomBytes(200000, 7);
      Put(c, version, name, data);
      CHECK(Get(c, name) == data);
      // Stat, then change mode, mtime and name through one Twstat.
      Expect<Rwalk>(c, Twalk{0, 4, {name}});
      Stat st = d == k9P2000u ? Stat(Expect<RstatU>(c, Tstat{4}).stat)
                              : Expect<Rstat>(c, Tstat{4}).stat;
      CHECK(st.name == name);
      CHECK(st.length == data.size());
      CHECK(st.uid == "1000");
      CHECK((st.mode & 0777) == 0644);
      StatU w = DontTouchStat();
      w.mode = 0600;
      w.mtime = 1000000000;
      w.name = name + "-renamed";
      if (d == k9P2000u) Expect<Rwstat>(c, TwstatU{4, w});
      else Expect<Rwstat>(c, Twstat{4, static_cast<Stat>(w)});
      Stat after = d == k9P2000u ? Stat(Expect<RstatU>(c, Tstat{4}).stat)
                                 : Expect<Rstat>(c, Tstat{4}).stat;
      CHECK(after.name == name + "-renamed");
      CHECK((after.mode & 0777) == 0600);
      CHECK(after.mtime == 1000000000);
      CHECK(after.length == data.size());  // untouched
      // A wstat that changes nothing is a sync.
      if (d == k9P2000u) Expect<Rwstat>(c, TwstatU{4, DontTouchStat()});
      else Expect<Rwstat>(c, Twstat{4, static_cast<Stat>(DontTouchStat())});
      Expect<Rclunk>(c, Tclunk{4});
      auto names = List(c, d, 200);  // a few records per read
      CHECK(names.count(name + "-renamed"));
      CHECK(!names.count(name));
      CHECK(!names.count("."));
      CHECK(!names.count(".."));
      // Errors: 9P2000 has text only, .u an errno too.
      auto missing = c.Rpc(Twalk{0, 5, {"no-such-file"}});
      REQUIRE(!missing.ok());
      if (d == k9P2000u) CHECK(missing.status().err() == ENOENT);
      CHECK(missing.status().message() == strerror(ENOENT));
      // ORCLOSE: gone at clunk.
      Expect<Rwalk>(c, Twalk{0, 6, {}});
      if (d == k9P2000u) Expect<Rcreate>(c, TcreateU{6, "scratch", 0600, kORdwr | kORclose, ""});
      else Expect<Rcreate>(c, Tcreate{6, "scratch", 0600, kORdwr | kORclose});
      Expect<Rclunk>(c, Tclunk{6});
      CHECK(!c.Rpc(Twalk{0, 7, {"scratch"}}).ok());
    }
  }
}

TEST_CASE("one tree for every dialect: written through one, read the same through the others") {
  TempDir dir;
  InProcessServer srv(dir.path + "/store.db", dir.path);
  Client plain, dotu, dotl;
  Connect(plain, srv.unix_endpoint(), "9P2000");
  Connect(dotu, srv.tcp_endpoint(), "9P2000.u");
  REQUIRE(dotl.Connect(srv.unix_endpoint()).ok());
  REQUIRE(dotl.Version(65536).ok());
  REQUIRE(dotl.Attach(0).ok());
  std::string a = RandomBytes(300000, 1), b = RandomBytes(123457, 2), l = RandomBytes(70000, 3);
  Put(plain, "9P2000", "by-9p2000", a);
  Put(dotu, "9P2000.u", "by-9p2000.u", b);
  REQUIRE(dotl.Walk(0, 20, {}).ok());
  REQUIRE(dotl.Create(20, "by-9p2000.L", O_RDWR | O_CREAT, 0644).ok());
  REQUIRE(dotl.WriteAll(20, l).ok());
  REQUIRE(dotl.Clunk(20).ok());
  for (auto [name, data] : {std::pair{"by-9p2000", a}, {"by-9p2000.u", b}, {"by-9p2000.L", l}}) {
    INFO(name);
    CHECK(Get(plain, name) == data);
    CHECK(Get(dotu, name) == data);
    REQUIRE(dotl.WalkPath(0, 21, name).ok());
    REQUIRE(dotl.Open(21, O_RDONLY).ok());
    CHECK(*dotl.ReadAll(21) == data);
    REQUIRE(dotl.Clunk(21).ok());
  }
  // .u's symlink is .L's symlink; .L's owner is .u's n_uid.
  Expect<Rwalk>(dotu, Twalk{0, 8, {}});
  Expect<Rcreate>(dotu, TcreateU{8, "ln", kDmSymlink | 0777, kORead, "by-9p2000"});
  Expect<Rclunk>(dotu, Tclunk{8});
  REQUIRE(dotl.WalkPath(0, 22, "ln").ok());
  auto t = dotl.Rpc(Treadlink{22});
  REQUIRE(t.ok());
  CHECK(std::get<Rreadlink>(*t).target == "by-9p2000");
  auto ga = dotl.GetAttr(22);
  REQUIRE(ga.ok());
  Expect<Rwalk>(dotu, Twalk{0, 9, {"ln"}});
  StatU st = Expect<RstatU>(dotu, Tstat{9}).stat;
  CHECK(st.extension == "by-9p2000");
  CHECK(st.n_uid == ga->uid);
  CHECK(st.qid.path == ga->qid.path);
}
