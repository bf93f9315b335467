// Malformed and hostile input: every bad frame gets an Rlerror or a closed
// connection, the server never crashes, and a well-behaved client keeps
// being served throughout.
#include <fcntl.h>
#include <poll.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <random>

#include "9p/client.h"
#include "9p/codec.h"
#include "tests/server/server_harness.h"

using namespace muscle;
using namespace muscle::p9;
using namespace muscle::test;

namespace {

std::string Frame(uint8_t type, uint16_t tag, const std::string& body) {
  std::string f(7, '\0');
  uint32_t size = uint32_t(7 + body.size());
  memcpy(f.data(), &size, 4);
  f[4] = char(type);
  memcpy(f.data() + 5, &tag, 2);
  return f + body;
}

// What the server did with one bad frame on a versioned connection.
enum class Outcome { kError, kClosed, kOther };

Outcome Feed(const std::string& ep, const std::string& bytes) {
  Client c;
  REQUIRE(c.Connect(ep).ok());
  REQUIRE(c.Version(8192).ok());
  REQUIRE(c.SendRaw(bytes).ok());
  pollfd p{c.fd(), POLLIN, 0};
  if (poll(&p, 1, 2000) <= 0) return Outcome::kOther;  // no answer at all
  auto m = c.Receive();
  if (!m.ok()) return Outcome::kClosed;
  return std::holds_alternative<Rlerror>(*m) ? Outcome::kError : Outcome::kOther;
}

void StillServes(Client& good) {
  REQUIRE(good.Walk(0, 1, {}).ok());
  REQUIRE(good.GetAttr(1).ok());
  REQUIRE(good.Clunk(1).ok());
}

}  // namespace

TEST_CASE("malformed frames get an error or a closed connection") {
  TempDir dir;
  InProcessServer srv(":memory:", dir.path, 65536);
  std::string ep = srv.unix_endpoint();
  Client good;
  REQUIRE(good.Connect(ep).ok());
  REQUIRE(good.Version().ok());
  REQUIRE(good.Attach(0).ok());

  SECTION("size field zero, below the header, or huge") {
    for (uint32_t size : {0u, 1u, 6u, 0x7fffffffu, 0xffffffffu, 65537u}) {
      std::string f(4, '\0');
      memcpy(f.data(), &size, 4);
      f += std::string(16, 'x');
      INFO("size " << size);
      CHECK(Feed(ep, f) == Outcome::kClosed);
      StillServes(good);
    }
  }
  SECTION("a string length longer than the frame") {
    std::string body("\x00\x00\x00\x00\xff\xff\x00\x00\xff\xff", 10);
    CHECK(Feed(ep, Frame(Tattach::kType, 1, body)) == Outcome::kError);
    StillServes(good);
  }
  SECTION("unknown and legacy types") {
    for (uint8_t t : {0, 99, 112, 114, 124, 126, 250})
      CHECK(Feed(ep, Frame(t, 3, "junk")) == Outcome::kError);
    // An R-message sent by a client.
    CHECK(Feed(ep, Frame(Rread::kType, 3, std::string(4, '\0'))) == Outcome::kError);
    StillServes(good);
  }
  SECTION("fid misuse") {
    Client c;
    REQUIRE(c.Connect(ep).ok());
    REQUIRE(c.Version().ok());
    CHECK(c.Rpc(Tgetattr{5, kGetattrAll}).err() == EBADF);  // before attach
    REQUIRE(c.Attach(5).ok());
    CHECK(c.Attach(5).err() == EBADF);                       // fid reuse
    CHECK(c.Walk(5, 5, {"nope"}).err() == ENOENT);
    CHECK(c.Rpc(Tclunk{77}).err() == EBADF);
    CHECK(c.Rpc(Tattach{6, 9, "", "", 0}).err() == EBADF);  // unknown afid
    CHECK(c.Rpc(Tauth{9, "", "", 0}).err() == ENOENT);
    CHECK(c.Attach(7, "/no/such/tree").err() == ENOENT);
    StillServes(good);
  }
  SECTION("msize above the limit is cut to the server's") {
    Client c;
    REQUIRE(c.Connect(ep).ok());
    REQUIRE(c.Version(16 << 20).ok());
    CHECK(c.msize() == 65536);
    REQUIRE(c.Attach(0).ok());
    // On a file open for writing, a frame within msize works...
    REQUIRE(c.Walk(0, 1, {}).ok());
    REQUIRE(c.Create(1, "msize-test", O_RDWR, 0644).ok());
    CHECK(c.Write(1, 0, std::string(60000, 'y')).ok());
    // ...and one larger than the negotiated msize closes the connection.
    std::string frame;
    Encode(7, Twrite{1, 0, Data{std::string(70000, 'x')}}, frame);
    REQUIRE(c.SendRaw(frame).ok());
    CHECK_FALSE(c.Receive().ok());  // closed, no reply
    StillServes(good);
  }
  SECTION("requests before Tversion, and a tiny msize") {
    Client c;
    REQUIRE(c.Connect(ep).ok());
    CHECK(c.Attach(0).err() == EPROTO);
    auto r = c.Rpc(Tversion{100, "9P2000.L"});
    REQUIRE(r.ok());
    CHECK(std::get<Rversion>(*r).version == "unknown");
    auto v = c.Rpc(Tversion{8192, "9P1999"});
    REQUIRE(v.ok());
    CHECK(std::get<Rversion>(*v).version == "unknown");
    // Plain 9P2000 is a dialect of its own now (tests/9p/dialects_test.cc).
    auto p = c.Rpc(Tversion{8192, "9P2000"});
    REQUIRE(p.ok());
    CHECK(std::get<Rversion>(*p).version == "9P2000");
  }
  SECTION("random frames from several connections") {
    std::mt19937 rng(99);
    for (int i = 0; i < 300; i++) {
      Client c;
      REQUIRE(c.Connect(ep).ok());
      if (i % 2) REQUIRE(c.Version(8192).ok());
      if (i % 4 == 1) c.Attach(0);
      std::string junk;
      for (int f = 0; f < 5; f++) {
        uint8_t type = uint8_t(rng() % 2 ? 6 + (rng() % 120) : rng());
        std::string body(rng() % 40, '\0');
        for (auto& ch : body) ch = char(rng());
        junk += Frame(type, uint16_t(rng() % 4), body);
      }
      c.SendRaw(junk);
      if (i % 25 == 0) StillServes(good);
    }
    StillServes(good);
  }
}
