// Local identity claims (transport/claim.h) on the unix socket, as
// `muscle stdio` makes them for SSH users, and the half-close that lets a
// client shut down its sending side and still get every reply.
#include "transport/claim.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>

#include "9p/client.h"
#include "9p/codec.h"
#include "tests/server/server_harness.h"

using namespace muscle;
using namespace muscle::p9;
using namespace muscle::test;

namespace {

server::ServerOptions ClaimOptions(const std::string& dir) {
  server::ServerOptions o;
  o.store_path = ":memory:";
  o.listen = {"unix:" + dir + "/sock", "tcp://127.0.0.1:0"};
  o.access["sub"] = server::AccessRule{"/sub", false};
  o.access["ro"] = server::AccessRule{"", true};
  o.access["full"] = server::AccessRule{};
  return o;
}

// Everything the server sends until it closes or 2 s pass without a byte.
std::string ReadUntilClosed(int fd) {
  std::string got;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 2000) <= 0) return got + "<timeout>";
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) return got;
    got.append(buf, size_t(n));
  }
}

}  // namespace

TEST_CASE("claim lines parse strictly") {
  using transport::ParseClaim;
  auto c = ParseClaim("muscle-claim identity=alice root=/a/b read-only");
  REQUIRE(c.ok());
  CHECK(c->identity == "alice");
  CHECK(c->root == "/a/b");
  CHECK(c->read_only);
  CHECK(ParseClaim("muscle-claim").ok());
  CHECK(ParseClaim("muscle-claim root=/")->root.empty());
  for (const char* bad :
       {"muscle-claim root=/a/../b", "muscle-claim root=a", "muscle-claim root=/a//b",
        "muscle-claim root=/a/", "muscle-claim root=/./a", "muscle-claim identity=a identity=b",
        "muscle-claim identity=", "muscle-claim identity=a\x01", "muscle-claim  read-only",
        "muscle-claim read-only ", "muscle-claim write", "muscle-claimx", "claim identity=a"}) {
    INFO(bad);
    CHECK(!ParseClaim(bad).ok());
  }
  transport::Claim in{"bob", "/x/y", true};
  auto out =
      ParseClaim(transport::FormatClaim(in).substr(0, transport::FormatClaim(in).size() - 1));
  REQUIRE(out.ok());
  CHECK((out->identity == "bob" && out->root == "/x/y" && out->read_only));
}

TEST_CASE("a claim on the unix socket confines the session") {
  TempDir dir;
  InProcessServer srv(ClaimOptions(dir.path));
  std::string unix_ep = "unix:" + srv.endpoints()[0].path;
  Qid sub_qid;
  {
    Client c;
    REQUIRE(c.Connect(unix_ep).ok());
    REQUIRE(c.Version().ok());
    REQUIRE(c.Attach(0).ok());
    auto q = c.Mkdir(0, "sub", 0755);
    REQUIRE(q.ok());
    sub_qid = *q;
    REQUIRE(c.Mkdir(0, "outside", 0755).ok());
  }

  SECTION("an identity's subtree: aname and .. stay inside") {
    Client c;
    REQUIRE(c.Connect(unix_ep).ok());
    CHECK(SendClaim(c, "muscle-claim identity=sub\n") == "ok");
    REQUIRE(c.Version().ok());
    auto root = c.Attach(0);
    REQUIRE(root.ok());
    CHECK(root->path == sub_qid.path);
    CHECK(!c.Attach(1, "../outside").ok());
    CHECK(!c.Attach(2, "/..").ok());
    auto up = c.Walk(0, 3, {"..", "outside"});
    CHECK(!(up.ok() && up->size() == 2));
  }
  SECTION("a claimed root lies below the identity's root") {
    Client c;
    REQUIRE(c.Connect(unix_ep).ok());
    {
      Client setup;
      REQUIRE(setup.Connect(unix_ep).ok());
      REQUIRE(setup.Version().ok());
      REQUIRE(setup.Attach(0, "/sub").ok());
      REQUIRE(setup.Mkdir(0, "deeper", 0755).ok());
    }
    CHECK(SendClaim(c, "muscle-claim identity=sub root=/deeper\n") == "ok");
    REQUIRE(c.Version().ok());
    REQUIRE(c.Attach(0).ok());
    auto up = c.Walk(0, 1, {"..", "..", "outside"});
    CHECK(!(up.ok() && up->size() == 3));
  }
  SECTION("read-only from the rule or the claim") {
    for (const char* line : {"muscle-claim identity=ro\n", "muscle-claim identity=full read-only\n",
                             "muscle-claim read-only\n"}) {
      INFO(line);
      Client c;
      REQUIRE(c.Connect(unix_ep).ok());
      CHECK(SendClaim(c, line) == "ok");
      REQUIRE(c.Version().ok());
      REQUIRE(c.Attach(0).ok());
      auto m = c.Mkdir(0, "new", 0755);
      REQUIRE(!m.ok());
      CHECK(m.status().err() == EROFS);
    }
  }
  SECTION("an unknown identity or a malformed claim is refused and closed") {
    for (const char* line : {"muscle-claim identity=stranger\n", "muscle-claim root=/a/../..\n"}) {
      INFO(line);
      Client c;
      REQUIRE(c.Connect(unix_ep).ok());
      CHECK(SendClaim(c, line).rfind("error: ", 0) == 0);
      CHECK(ReadUntilClosed(c.fd()).empty());
    }
  }
  SECTION("a second claim after the first is an oversized frame") {
    Client c;
    REQUIRE(c.Connect(unix_ep).ok());
    CHECK(SendClaim(c, "muscle-claim identity=sub read-only\n") == "ok");
    REQUIRE(c.SendRaw("muscle-claim identity=full\n").ok());
    CHECK(ReadUntilClosed(c.fd()).empty());
  }
  SECTION("no claims over TCP") {
    Client c;
    REQUIRE(c.Connect("tcp://127.0.0.1:" + std::to_string(srv.endpoints()[1].port)).ok());
    REQUIRE(c.SendRaw("muscle-claim identity=sub\n").ok());
    CHECK(ReadUntilClosed(c.fd()).empty());
  }
  SECTION("a claim line too long is refused") {
    Client c;
    REQUIRE(c.Connect(unix_ep).ok());
    REQUIRE(c.SendRaw("muscle-claim" + std::string(2000, 'x')).ok());
    CHECK(ReadUntilClosed(c.fd()).empty());
  }
}

TEST_CASE("a half-closed connection gets every reply, then the server closes") {
  TempDir dir;
  InProcessServer srv(ClaimOptions(dir.path));
  for (int claimed = 0; claimed < 2; claimed++) {
    INFO("claimed " << claimed);
    Client c;
    REQUIRE(c.Connect("unix:" + srv.endpoints()[0].path).ok());
    std::string out = claimed ? "muscle-claim identity=full\n" : "";
    Encode(0xffff, Tversion{65536, "9P2000.L"}, out);
    // Independent requests (replies may come in any order).
    for (uint16_t tag = 1; tag <= 3; tag++) Encode(tag, Tattach{tag, kNoFid, "u", "", 0}, out);
    REQUIRE(c.SendRaw(out).ok());
    REQUIRE(shutdown(c.fd(), SHUT_WR) == 0);
    std::string got = ReadUntilClosed(c.fd());
    if (claimed) {
      REQUIRE(got.rfind("ok\n", 0) == 0);
      got = got.substr(3);
    }
    std::vector<uint8_t> types;
    size_t pos = 0;
    while (got.size() - pos >= 7) {
      uint32_t size;
      memcpy(&size, got.data() + pos, 4);
      REQUIRE(size <= got.size() - pos);
      types.push_back(uint8_t(got[pos + 4]));
      pos += size;
    }
    CHECK(pos == got.size());
    std::sort(types.begin() + 1, types.end());
    CHECK(types ==
          std::vector<uint8_t>{Rversion::kType, Rattach::kType, Rattach::kType, Rattach::kType});
  }
}
