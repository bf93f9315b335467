// The resumable stream's state machine: two ends joined by a lossy pipe
// that drops everything in flight at a "network drop"; after each redial
// every byte arrives exactly once, in order.
#include <catch2/catch.hpp>

#include <random>

#include "transport/resumable.h"
#include "transport/session_registry.h"

using namespace muscle;
using namespace muscle::transport;

namespace {
struct End {
  ResumableStream s;
  std::string got;     // what on_data produced
  std::string wire;    // frames not yet delivered to the other end
  int acks = 0;
  End() {
    s.on_wire = [this](std::string w) { wire += w; };
    s.on_data = [this](const char* d, size_t n) { got.append(d, n); };
    s.on_acked = [this] { acks++; };
  }
};

// Delivers up to `n` bytes of a's wire to b, in pieces of random size.
void Deliver(End& a, End& b, size_t n, std::mt19937& rng) {
  n = std::min(n, a.wire.size());
  size_t pos = 0;
  while (pos < n) {
    size_t k = std::min(n - pos, size_t(rng() % 7000 + 1));
    REQUIRE(b.s.Feed(a.wire.data() + pos, k).ok());
    pos += k;
  }
  a.wire.erase(0, n);
}

void Redial(End& a, End& b) {
  a.s.Detach();
  b.s.Detach();
  a.wire.clear();  // lost in the network
  b.wire.clear();
  uint64_t ra = a.s.received(), rb = b.s.received();
  REQUIRE(a.s.Attach(rb).ok());
  REQUIRE(b.s.Attach(ra).ok());
}
}  // namespace

TEST_CASE("resumable stream: every byte once, in order, across drops mid-frame") {
  std::mt19937 rng(7);
  End relay, server;
  REQUIRE(relay.s.Attach(0).ok());
  REQUIRE(server.s.Attach(0).ok());
  std::string sent_up, sent_down;
  for (int round = 0; round < 200; round++) {
    std::string up(rng() % 300000 + 1, '\0'), down(rng() % 90000 + 1, '\0');
    for (auto& c : up) c = char(rng());
    for (auto& c : down) c = char(rng());
    relay.s.Send(up.data(), up.size());
    server.s.Send(down.data(), down.size());
    sent_up += up;
    sent_down += down;
    // Part of what is on the wire gets through, then (sometimes) the
    // connection drops with frames half delivered.
    Deliver(relay, server, rng() % (relay.wire.size() + 1), rng);
    Deliver(server, relay, rng() % (server.wire.size() + 1), rng);
    if (round % 3 == 0) Redial(relay, server);
    if (round % 10 == 0) relay.s.Ping();
  }
  Redial(relay, server);
  while (!relay.wire.empty() || !server.wire.empty()) {
    Deliver(relay, server, relay.wire.size(), rng);
    Deliver(server, relay, server.wire.size(), rng);
  }
  CHECK(server.got == sent_up);
  CHECK(relay.got == sent_down);
  // A ping gets an ACK back: after one round trip nothing stays kept.
  relay.s.Ping();
  Deliver(relay, server, relay.wire.size(), rng);
  Deliver(server, relay, server.wire.size(), rng);
  CHECK(relay.s.unacked() == 0);
  server.s.Ping();
  Deliver(server, relay, server.wire.size(), rng);
  Deliver(relay, server, relay.wire.size(), rng);
  CHECK(server.s.unacked() == 0);
  CHECK(relay.acks > 0);
}

TEST_CASE("resumable stream: bounded keep, bad frames and impossible resumes refused") {
  End a, b;
  REQUIRE(a.s.Attach(0).ok());
  REQUIRE(b.s.Attach(0).ok());
  std::string big(3 * ResumableStream::kMaxData + 5, 'x');
  a.s.Send(big.data(), big.size());
  CHECK(a.s.unacked() == big.size());
  std::mt19937 rng(1);
  Deliver(a, b, a.wire.size(), rng);
  // b acknowledged on its own once kAckEvery arrived.
  Deliver(b, a, b.wire.size(), rng);
  CHECK(a.s.unacked() < big.size());
  CHECK(a.s.unacked() < ResumableStream::kAckEvery + 5);
  // Resuming from before what was acknowledged, or beyond what was sent.
  a.s.Detach();
  CHECK(!a.s.Attach(0).ok());
  CHECK(!a.s.Attach(big.size() + 1).ok());
  CHECK(a.s.Attach(b.s.received()).ok());

  End c;
  REQUIRE(c.s.Attach(0).ok());
  const char unknown[] = {9, 0, 0, 0, 0};
  CHECK(!c.s.Feed(unknown, 5).ok());
  End d;
  const char huge[] = {1, 0, 0, 0, 0x7f};
  CHECK(!d.s.Feed(huge, 5).ok());
  End e;
  const char ack_beyond[] = {2, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0};
  CHECK(!e.s.Feed(ack_beyond, sizeof ack_beyond).ok());
}

TEST_CASE("resumable stream: hello lines") {
  auto h = ParseHello("muscle-resumable new");
  REQUIRE(h.ok());
  CHECK(!h->resume);
  std::string id = NewSessionId();
  CHECK(id.size() == 32);
  CHECK(id != NewSessionId());
  auto r = ParseHello(FormatHello({true, id, 12345}).substr(0, FormatHello({true, id, 12345}).size() - 1));
  REQUIRE(r.ok());
  CHECK(r->resume);
  CHECK(r->id == id);
  CHECK(r->received == 12345);
  CHECK(!ParseHello("muscle-resumable resume XYZ 1").ok());
  CHECK(!ParseHello("muscle-resumable resume " + id + " -1").ok());
  CHECK(!ParseHello("muscle-resumable").ok());
  std::string got;
  uint64_t n = 0;
  CHECK(ParseHelloAnswer("ok " + id + " 7", &got, &n).ok());
  CHECK((got == id && n == 7));
  std::string features = "x";
  CHECK(ParseHelloAnswer("ok " + id + " 8", &got, &n, &features).ok());
  CHECK((n == 8 && features.empty()));
  CHECK(ParseHelloAnswer("ok " + id + " 9 once later", &got, &n, &features).ok());
  CHECK((n == 9 && features == "once later"));
  CHECK(!ParseHelloAnswer("ok " + id + " 9x once", &got, &n, &features).ok());
  Status e = ParseHelloAnswer("error unknown session", &got, &n);
  CHECK(e.err() == ESTALE);
  CHECK(!ParseHelloAnswer("garbage", &got, &n).ok());
}

TEST_CASE("session registry: a session only for its own identity, bounded per identity") {
  SessionRegistry r;
  auto* conn = reinterpret_cast<Connection*>(0x1000);
  SessionRegistry::Post post = [](std::function<void()>) {};
  std::string id = NewSessionId();
  REQUIRE(r.Add(id, "alice", conn, post));
  SessionRegistry::Post got;
  CHECK(!r.Claim(id, "bob", &got));
  CHECK(!r.Claim(NewSessionId(), "alice", &got));
  CHECK(!r.Claimed(id));
  CHECK(r.Claim(id, "alice", &got));
  CHECK(r.Claimed(id));
  CHECK(r.Owner(id) == conn);
  r.Unclaim(id);
  CHECK(!r.Claimed(id));
  r.Remove(id, conn);
  CHECK(r.Owner(id) == nullptr);
  for (size_t i = 0; i < SessionRegistry::kMaxPerIdentity; i++)
    REQUIRE(r.Add(NewSessionId(), "alice", conn, post));
  CHECK(!r.Add(NewSessionId(), "alice", conn, post));
  CHECK(r.Add(NewSessionId(), "bob", conn, post));
}
