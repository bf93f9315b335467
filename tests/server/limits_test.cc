// Resource limits, accounted before work is done: pipelined reads whose
// replies are never read, fids, xattr buffers; and a shutdown that does not
// wait forever for a client that does not read.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "9p/client.h"
#include "9p/codec.h"
#include "9p/session.h"
#include "tests/server/server_harness.h"

using namespace muscle;
using namespace muscle::p9;
using namespace muscle::test;

namespace {

uint64_t RssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  return 0;
}

}  // namespace

TEST_CASE("pipelined reads whose replies are never read cost bounded memory") {
  TempDir dir;
  std::string ep = "unix:" + dir.path + "/sock";
  ChildServer child({"--store", ":memory:", "--listen", ep}, ep);
  Client c;
  Connect(c, ep);
  REQUIRE(c.Walk(0, 1, {}).ok());
  REQUIRE(c.Create(1, "f", O_RDWR, 0644).ok());
  REQUIRE(c.WriteAll(1, RandomBytes(1 << 20, 1)).ok());
  REQUIRE(c.Fsync(1).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  uint64_t before = RssKiB(child.pid());
  std::string frames;
  const int kReads = 300;
  for (int i = 0; i < kReads; i++) Encode(uint16_t(100 + i), Tread{1, 0, 1 << 20}, frames);
  REQUIRE(c.SendRaw(frames).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  uint64_t after = RssKiB(child.pid());
  INFO("server RSS " << before << " KiB -> " << after << " KiB with " << kReads
                     << " pipelined 1 MiB reads unread");
  CHECK(after < before + 64 * 1024);
  // Nothing was lost: every read is answered once the client reads.
  int answered = 0;
  while (answered < kReads) {
    auto m = c.Receive();
    REQUIRE(m.ok());
    auto* r = std::get_if<Rread>(&*m);
    REQUIRE(r);
    CHECK(r->data.bytes.size() == c.msize() - kIoHeaderSize);
    answered++;
  }
}

TEST_CASE("fids and xattr buffers per connection are capped") {
  TempDir dir;
  InProcessServer srv(":memory:", dir.path);
  Client c;
  Connect(c, srv.unix_endpoint());
  // Fids: walks to new fids succeed up to the cap, then EMFILE.
  std::string frames;
  for (uint32_t i = 1; i < Session::kMaxFids; i++) Encode(uint16_t(i % 60000), Twalk{0, i, {}}, frames);
  size_t sent = 0;
  int ok = 0;
  // Send in slices so that tags stay unique among those in flight.
  for (uint32_t i = 1; i < Session::kMaxFids; i += 50) {
    std::string part;
    for (uint32_t j = i; j < std::min<uint32_t>(i + 50, Session::kMaxFids); j++)
      Encode(uint16_t(j - i + 1), Twalk{0, j, {}}, part);
    REQUIRE(c.SendRaw(part).ok());
    for (uint32_t j = i; j < std::min<uint32_t>(i + 50, Session::kMaxFids); j++) {
      auto m = c.Receive();
      REQUIRE(m.ok());
      ok += std::holds_alternative<Rwalk>(*m);
      sent++;
    }
  }
  CHECK(ok == int(Session::kMaxFids) - 1);  // with fid 0: the cap
  CHECK(c.Walk(0, 999999, {}).err() == EMFILE);
  REQUIRE(c.Clunk(5).ok());
  CHECK(c.Walk(0, 999999, {}).ok());  // room again

  // Xattr buffers: each Txattrcreate reserves its size until clunk.
  Client x;
  Connect(x, srv.unix_endpoint());
  int created = 0, refused = 0;
  for (uint32_t i = 1; i <= 40; i++) {
    REQUIRE(x.Walk(0, i, {}).ok());
    auto r = x.Rpc(Txattrcreate{i, "user.big", 65536, 0});
    REQUIRE(r.ok() == (r.err() == 0));
    if (r.ok()) created++;
    else if (r.err() == ENOSPC) refused++;
  }
  CHECK(created == int(Session::kMaxXattrBytes / 65536));
  CHECK(refused == 40 - created);
}

TEST_CASE("xattr buffers per identity are capped, so one identity cannot starve the others") {
  TempDir dir;
  server::ServerOptions o;
  o.store_path = ":memory:";
  o.listen = {"unix:" + dir.path + "/sock"};
  o.access["mallory"] = server::AccessRule{"", false, false};
  o.access["alice"] = server::AccessRule{"", false, false};
  InProcessServer srv(o);
  std::string ep = "unix:" + dir.path + "/sock";
  // Fills one connection's buffers (kMaxXattrBytes); how many it got.
  auto fill = [&](Client& c, const std::string& identity) {
    REQUIRE(c.Connect(ep).ok());
    if (!identity.empty()) REQUIRE(SendClaim(c, "muscle-claim identity=" + identity + "\n") == "ok");
    REQUIRE(c.Version().ok());
    REQUIRE(c.Attach(0).ok());
    int created = 0;
    for (uint32_t i = 1; i <= Session::kMaxXattrBytes / 65536; i++) {
      REQUIRE(c.Walk(0, i, {}).ok());
      auto r = c.Rpc(Txattrcreate{i, "user.big", 65536, 0});
      if (r.ok()) created++;
      else CHECK(r.err() == ENOSPC);
    }
    return created;
  };
  constexpr int kPerConnection = int(Session::kMaxXattrBytes / 65536);
  constexpr size_t kConnections = Session::kMaxXattrBytesIdentity / Session::kMaxXattrBytes;
  std::vector<std::unique_ptr<Client>> held;
  for (size_t i = 0; i < kConnections; i++) {
    held.push_back(std::make_unique<Client>());
    CHECK(fill(*held.back(), "mallory") == kPerConnection);
  }
  // One more of mallory's gets nothing; alice and the administrator their share.
  held.push_back(std::make_unique<Client>());
  CHECK(fill(*held.back(), "mallory") == 0);
  held.push_back(std::make_unique<Client>());
  CHECK(fill(*held.back(), "alice") == kPerConnection);
  // The administrator (no identity) is held to the process total only.
  for (size_t i = 0; i <= kConnections; i++) {
    held.push_back(std::make_unique<Client>());
    CHECK(fill(*held.back(), "") == kPerConnection);
  }
  // Mallory's buffers come back when its connections go.
  held.erase(held.begin(), held.begin() + 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  Client again;
  CHECK(fill(again, "mallory") == kPerConnection);
}

TEST_CASE("shutdown closes connections that do not take their replies within the grace period") {
  TempDir dir;
  server::ServerOptions o;
  o.store_path = ":memory:";
  o.listen = {"unix:" + dir.path + "/sock"};
  o.shutdown_grace = std::chrono::milliseconds(1000);
  InProcessServer srv(o);
  Client c;
  Connect(c, "unix:" + dir.path + "/sock");
  REQUIRE(c.Walk(0, 1, {}).ok());
  REQUIRE(c.Create(1, "f", O_RDWR, 0644).ok());
  REQUIRE(c.WriteAll(1, RandomBytes(1 << 20, 2)).ok());
  std::string frames;
  for (int i = 0; i < 64; i++) Encode(uint16_t(100 + i), Tread{1, 0, 1 << 20}, frames);
  REQUIRE(c.SendRaw(frames).ok());  // and never read the replies
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto t0 = std::chrono::steady_clock::now();
  srv.Stop();
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took < std::chrono::seconds(5));
  CHECK(took >= std::chrono::milliseconds(900));
}
