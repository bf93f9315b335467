// Resumable sessions end to end: a 9P client talks to `muscle relay
// --reconnect` (the Relay class, on its own loop) which reaches the
// server's TLS listener through a proxy of ours that cuts every
// connection on demand. Writes and reads in flight across the cuts all
// succeed and every byte is right; a session whose lease ended is
// restored on a new one (9p/restore_book.h).
#include <catch2/catch.hpp>
#include <fstream>

#include "9p/client.h"
#include "tests/server/server_harness.h"
#include "tests/transport/relay_rig.h"

using namespace muscle;
using namespace muscle::test;

namespace {

server::ServerOptions Options(const std::string& dir, int lease_seconds, int loops,
                              int silence_ms = 30000) {
  std::ofstream(dir + "/keys") << "site-a:" << kHex << "\nsite-b:" << kHex << "\n";
  chmod((dir + "/keys").c_str(), 0600);
  server::ServerOptions o;
  o.store_path = ":memory:";
  o.listen = {"tls://127.0.0.1:0", "unix:" + dir + "/sock"};
  o.keys_path = dir + "/keys";
  o.session_lease = std::chrono::seconds(lease_seconds);
  o.loops = loops;
  o.session_silence = std::chrono::milliseconds(silence_ms);
  return o;
}

}  // namespace

TEST_CASE("a relay with --reconnect carries writes and reads across network cuts") {
  // Several loops: a redial usually lands on another loop than its session.
  int loops = GENERATE(1, 3);
  TempDir dir;
  InProcessServer srv(Options(dir.path, 60, loops));
  CutProxy proxy(srv.endpoints()[0].port);
  RelayThread relay(proxy.port(), "site-a", dir.path + "/relay.sock");
  p9::Client c;
  Connect(c, "unix:" + dir.path + "/relay.sock", 65536 + 24);
  REQUIRE(c.Walk(0, 1, {}).ok());
  REQUIRE(c.Create(1, "f", 0x2 /* O_RDWR */, 0644).ok());

  std::atomic<bool> done{false};
  std::thread cutter([&] {
    while (!done) {
      usleep(150000);
      proxy.Cut();
    }
  });
  // Passes over the file, each with new bytes, until the proxy has cut
  // the connection several times (a fast machine writes 3 MiB between
  // two cuts).
  std::string data;
  Status failed;
  for (uint32_t pass = 0; failed.ok() && pass < 40 && (pass == 0 || proxy.connections() <= 5);
       pass++) {
    data = RandomBytes(3 << 20, 42 + pass);
    size_t off = 0;
    while (off < data.size() && failed.ok()) {
      auto w = c.Write(1, off, data.substr(off, 65536));
      if (!w.ok()) failed = w.status();
      else off += *w;
      // Reads in between: replies cross the cuts too.
      if (failed.ok() && off % (1 << 20) == 0) {
        auto r = c.Read(1, off - 4096, 4096);
        if (!r.ok()) failed = r.status();
        else CHECK(*r == data.substr(off - 4096, 4096));
      }
    }
  }
  done = true;
  cutter.join();
  REQUIRE(failed.ok());
  CHECK(proxy.connections() > 5);  // it did redial, many times
  std::string back;
  for (size_t o = 0; o < data.size(); o += 65536) {
    auto r = c.Read(1, o, 65536);
    REQUIRE(r.ok());
    back += *r;
  }
  CHECK(back == data);
  CHECK(relay.errors().empty());
}

TEST_CASE("a resumable session whose lease ended is restored on a new session") {
  TempDir dir;
  InProcessServer srv(Options(dir.path, 1, 1));
  CutProxy proxy(srv.endpoints()[0].port);
  RelayThread relay(proxy.port(), "site-a", dir.path + "/relay.sock");
  p9::Client c;
  Connect(c, "unix:" + dir.path + "/relay.sock", 65536 + 24);
  // Away for longer than the lease: the server forgets the session, and
  // the redial is told so.
  proxy.SetRefusing(true);
  proxy.Cut();
  sleep(3);
  proxy.SetRefusing(false);
  // The relay opens a new session and restores the conversation on it
  // (tests/transport/restart_test.cc has the server restarts).
  auto r = c.GetAttr(0);
  CHECK(r.ok());
  CHECK(relay.restores() == 1);
  CHECK(relay.errors().empty());
}

TEST_CASE("a resumable session that hears nothing detaches, and its lease then ends it") {
  // The path goes dead without a reset: the server's socket stays open.
  // Only its silence watch lets the lease run (without it the session
  // would be resumed when the path comes back).
  TempDir dir;
  InProcessServer srv(Options(dir.path, 1, 1, 600));
  CutProxy proxy(srv.endpoints()[0].port);
  RelayThread relay(proxy.port(), "site-a", dir.path + "/relay.sock");
  p9::Client c;
  Connect(c, "unix:" + dir.path + "/relay.sock", 65536 + 24);
  proxy.SetStalled(true);
  sleep(3);
  proxy.SetStalled(false);
  // Restored on a new session: the old one's lease had ended.
  CHECK(c.GetAttr(0).ok());
  CHECK(relay.restores() == 1);
  CHECK(relay.errors().empty());
}

TEST_CASE("a resumable session ends with its client (BYE), and with its identity's removal") {
  TempDir dir;
  InProcessServer srv(Options(dir.path, 60, 2));
  CutProxy proxy(srv.endpoints()[0].port);
  RelayThread relay(proxy.port(), "site-a", dir.path + "/relay.sock");
  auto sessions = [&] {
    size_t n = 0;
    srv.OnLoop([&](server::Server& s) { n = s.resumable_sessions(); });
    return n;
  };
  auto wait_for = [&](size_t want) {
    for (int i = 0; i < 100 && sessions() != want; i++) usleep(20000);
    return sessions();
  };
  {
    p9::Client c;
    Connect(c, "unix:" + dir.path + "/relay.sock", 65536 + 24);
    CHECK(sessions() == 1);
  }
  // The client went away: the relay said BYE, nothing is kept for a lease.
  CHECK(wait_for(0) == 0);

  p9::Client c;
  Connect(c, "unix:" + dir.path + "/relay.sock", 65536 + 24);
  REQUIRE(sessions() == 1);
  // Detached (the network is away), then the identity is removed: the
  // session goes at once, not when its lease ends.
  proxy.SetRefusing(true);
  proxy.Cut();
  usleep(300000);
  std::ofstream(dir.path + "/keys") << "site-b:" << kHex << "\n";
  Status reload;
  srv.OnLoop([&](server::Server& s) { reload = s.ReloadKeys(); });
  REQUIRE(reload.ok());
  CHECK(wait_for(0) == 0);
}

TEST_CASE("a frame larger than msize from the relay's client closes that client, not the session for ever") {
  TempDir dir;
  InProcessServer srv(Options(dir.path, 60, 1));
  CutProxy proxy(srv.endpoints()[0].port);
  RelayThread relay(proxy.port(), "site-a", dir.path + "/relay.sock");
  {
    p9::Client c;
    Connect(c, "unix:" + dir.path + "/relay.sock", 65536 + 24);
    REQUIRE(c.Walk(0, 1, {}).ok());
    REQUIRE(c.Create(1, "f", 0x2 /* O_RDWR */, 0644).ok());
    CHECK_FALSE(c.Write(1, 0, std::string(200000, 'x')).ok());
  }
  auto errors = relay.errors();
  for (int i = 0; i < 50 && errors.empty(); i++, usleep(20000)) errors = relay.errors();
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("larger than msize 65560") != std::string::npos);
  // The server never saw it: one connection, no redial, no restore.
  usleep(300000);
  CHECK(proxy.connections() == 1);
  CHECK(relay.restores() == 0);
  // The relay serves the next client.
  p9::Client c;
  Connect(c, "unix:" + dir.path + "/relay.sock", 65536 + 24);
  REQUIRE(c.Walk(0, 1, {"f"}).ok());
}
