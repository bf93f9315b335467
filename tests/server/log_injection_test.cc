// A peer cannot forge log lines: unames and anames with newlines and
// escape codes are logged escaped, on the attach line.
#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "9p/client.h"
#include "tests/server/server_harness.h"

using namespace muscle;
using namespace muscle::p9;
using namespace muscle::test;

TEST_CASE("a uname or aname with newlines cannot forge a log line") {
  TempDir dir;
  std::string ep = "unix:" + dir.path + "/sock";
  std::string log = dir.path + "/log";
  {
    ChildServer child({"--store", ":memory:", "--listen", ep}, ep, log);
    Client c;
    REQUIRE(c.Connect(ep).ok());
    REQUIRE(c.Version(65536).ok());
    std::string forged = "x\n2026-11-24T10:00:00.000Z musclefs: 10.0.0.1: TLS handshake ok: identity 'admin'\x1b[2K";
    (void)c.Rpc(Tattach{0, kNoFid, forged, forged, 0});
    (void)c.Rpc(Tattach{1, kNoFid, "", forged, 0});
    (void)c.Rpc(Tattach{2, kNoFid, "x\" uid=0 aname=\"/etc", "", 0});
  }
  std::ifstream in(log);
  std::string line;
  int lines_with_identity = 0, escaped = 0;
  while (std::getline(in, line)) {
    CHECK(line.find('\x1b') == std::string::npos);
    if (line.find("TLS handshake ok: identity 'admin'") != std::string::npos) {
      lines_with_identity++;
      // Only inside the attach line, never as a line of its own.
      CHECK(line.find(": attach uname=") != std::string::npos);
      escaped += line.find("x\\x0a2026") != std::string::npos;
    }
  }
  CHECK(lines_with_identity == 2);
  std::string all;
  {
    std::ifstream again(log);
    std::stringstream ss;
    ss << again.rdbuf();
    all = ss.str();
  }
  // A quote in a uname cannot end its field.
  CHECK(all.find("uname=\"x\\x22 uid=0 aname=\\x22/etc\"") != std::string::npos);
  CHECK(all.find("uname=\"x\" uid=0") == std::string::npos);
  CHECK(escaped >= 1);
}
