// The userspace TLS record layer (tls/record_layer.h) against mbedTLS
// itself: engines wired together in memory, one side on the record layer,
// the other sealing and opening with mbedTLS, so every record must be
// byte-compatible with a real TLS 1.2 ChaCha20-Poly1305 peer. Then the
// attacks: tampered, truncated, replayed, reordered, oversized records,
// stray handshake records and alerts.
#include <catch2/catch.hpp>
#include <cstring>
#include <random>

#include "auth/keys.h"
#include "tests/test_util.h"
#include "tls/record_layer.h"
#include "tls/tls_engine.h"

using namespace muscle;
using namespace muscle::test;
using tls::TlsEngine;

namespace {

const auth::Secret kKey(std::string(32, 'k'));

struct Contexts {
  std::unique_ptr<tls::TlsContext> server, client;
  Contexts(bool server_offload, bool client_offload) {
    auto s = tls::TlsContext::ForServer(
        [](const std::string& id) { return id == "c" ? &kKey : nullptr; }, 0);
    auto c = tls::TlsContext::ForClient("c", kKey);
    REQUIRE(s.ok());
    REQUIRE(c.ok());
    server = std::move(*s);
    client = std::move(*c);
    server->set_record_offload(server_offload);
    client->set_record_offload(client_offload);
  }
};

// A connected pair; what each side sends waits in a queue until Deliver.
struct Pair {
  TlsEngine server, client;
  std::string to_server, to_client;    // ciphertext in flight
  std::string at_server, at_client;    // plaintext received
  Status server_status, client_status;
  explicit Pair(Contexts& c) : server(*c.server), client(*c.client) {
    server.on_ciphertext = [this](std::string b) { to_client += b; };
    client.on_ciphertext = [this](std::string b) { to_server += b; };
    server.on_plaintext = [this](const char* d, size_t n) { at_server.append(d, n); };
    client.on_plaintext = [this](const char* d, size_t n) { at_client.append(d, n); };
    REQUIRE(client.Start().ok());
    for (int i = 0; i < 20 && !(server.ready() && client.ready()); ++i) Deliver();
    REQUIRE(server.ready());
    REQUIRE(client.ready());
  }
  void Deliver() {
    std::string s, c;
    s.swap(to_server);
    c.swap(to_client);
    if (!s.empty() && server_status.ok()) server_status = server.Feed(s.data(), s.size());
    if (!c.empty() && client_status.ok()) client_status = client.Feed(c.data(), c.size());
  }
};

// Splits a stream of TLS records into records.
std::vector<std::string> Records(const std::string& s) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at + 5 <= s.size()) {
    size_t n = size_t(uint8_t(s[at + 3])) << 8 | uint8_t(s[at + 4]);
    REQUIRE(at + 5 + n <= s.size());
    out.push_back(s.substr(at, 5 + n));
    at += 5 + n;
  }
  REQUIRE(at == s.size());
  return out;
}

}  // namespace

TEST_CASE("record layer: every length 0..16 KiB both ways against mbedTLS records") {
  for (int config = 0; config < 3; config++) {
    // 0: server offloaded, client mbedTLS; 1: the reverse; 2: both.
    Contexts c(config != 1, config != 0);
    Pair p(c);
    CHECK(p.server.records() ==
          (config != 1 ? TlsEngine::Records::kUserspace : TlsEngine::Records::kMbedTls));
    CHECK(p.client.records() ==
          (config != 0 ? TlsEngine::Records::kUserspace : TlsEngine::Records::kMbedTls));
    std::string sent_up, sent_down;
    size_t step = config == 2 ? 1 : 7;  // every length once, a sample for the others
    for (size_t n = 0; n <= tls::kMaxRecordPlaintext; n += step) {
      std::string up = RandomBytes(n, uint32_t(n)), down = RandomBytes(n, uint32_t(n + 1));
      if (n > 0) {  // an empty write sends nothing
        REQUIRE(p.client.Write(up.data(), up.size()).ok());
        REQUIRE(p.server.Write(down.data(), down.size()).ok());
      }
      sent_up += up;
      sent_down += down;
      if (n % 512 == 0) p.Deliver();
    }
    // Multi-record messages across a large range of sequence numbers.
    std::string big = RandomBytes(1 << 20, 99);
    REQUIRE(p.server.Write(big.data(), big.size()).ok());
    REQUIRE(p.client.Write(big.data(), big.size()).ok());
    sent_up += big;
    sent_down += big;
    p.Deliver();
    REQUIRE(p.server_status.ok());
    REQUIRE(p.client_status.ok());
    CHECK(p.at_server == sent_up);
    CHECK(p.at_client == sent_down);
  }
}

TEST_CASE("record layer: bytes fed in every split open the same") {
  Contexts c(true, false);
  Pair p(c);
  std::string msg = RandomBytes(40000, 5);
  REQUIRE(p.client.Write(msg.data(), msg.size()).ok());
  std::string wire;
  wire.swap(p.to_server);
  // One byte at a time, then the rest in odd-sized pieces.
  for (size_t i = 0; i < wire.size();) {
    size_t n = i < 20000 ? 1 : 333;
    n = std::min(n, wire.size() - i);
    REQUIRE(p.server.Feed(wire.data() + i, n).ok());
    i += n;
  }
  CHECK(p.at_server == msg);
}

TEST_CASE("record layer: tampered, truncated, replayed and reordered records are fatal") {
  auto run = [](auto mutate) {
    Contexts c(true, false);
    Pair p(c);
    std::string a = RandomBytes(3000, 1), b = RandomBytes(3000, 2);
    REQUIRE(p.client.Write(a.data(), a.size()).ok());
    REQUIRE(p.client.Write(b.data(), b.size()).ok());
    auto recs = Records(p.to_server);
    p.to_server.clear();
    REQUIRE(recs.size() == 2);
    std::string wire = mutate(recs);
    Status s = p.server.Feed(wire.data(), wire.size());
    // The server owes the peer a fatal alert, which mbedTLS understands.
    std::string alert;
    alert.swap(p.to_client);
    Status cs = alert.empty() ? Status() : p.client.Feed(alert.data(), alert.size());
    return std::make_tuple(s, cs, p.at_server);
  };
  SECTION("intact: control") {
    auto [s, cs, got] = run([](auto& r) { return r[0] + r[1]; });
    CHECK(s.ok());
    CHECK(got.size() == 6000);
  }
  SECTION("a flipped ciphertext bit") {
    auto [s, cs, got] = run([](auto& r) {
      r[1][100] ^= 1;
      return r[0] + r[1];
    });
    CHECK(s.err() == EPROTO);
    CHECK(got.size() == 3000);  // the first record was genuine
    CHECK(!cs.ok());            // mbedTLS saw the bad_record_mac alert
  }
  SECTION("a flipped tag bit") {
    auto [s, cs, got] = run([](auto& r) {
      r[0].back() ^= 0x80;
      return r[0] + r[1];
    });
    CHECK(s.err() == EPROTO);
    CHECK(got.empty());
  }
  SECTION("a changed content type") {
    auto [s, cs, got] = run([](auto& r) {
      r[0][0] = tls::kHandshake;
      return r[0];
    });
    CHECK(s.err() == EPROTO);
  }
  SECTION("truncated: length cut by one, last byte dropped") {
    auto [s, cs, got] = run([](auto& r) {
      std::string t = r[0].substr(0, r[0].size() - 1);
      size_t n = t.size() - 5;
      t[3] = char(n >> 8);
      t[4] = char(n);
      return t + r[1];
    });
    CHECK(s.err() == EPROTO);
    CHECK(got.empty());
  }
  SECTION("replayed") {
    auto [s, cs, got] = run([](auto& r) { return r[0] + r[0]; });
    CHECK(s.err() == EPROTO);
    CHECK(got.size() == 3000);
  }
  SECTION("reordered") {
    auto [s, cs, got] = run([](auto& r) { return r[1] + r[0]; });
    CHECK(s.err() == EPROTO);
    CHECK(got.empty());
  }
  SECTION("a wrong version") {
    auto [s, cs, got] = run([](auto& r) {
      r[0][2] = 1;
      return r[0];
    });
    CHECK(s.err() == EPROTO);
  }
  SECTION("an oversized record") {
    auto [s, cs, got] = run([](auto& r) {
      std::string h = r[0].substr(0, 5);
      size_t n = tls::kMaxRecordCiphertext + 1;
      h[3] = char(n >> 8);
      h[4] = char(n);
      return h;  // refused from the header alone, before the body arrives
    });
    CHECK(s.err() == EPROTO);
  }
  SECTION("a record shorter than its tag") {
    auto [s, cs, got] = run([](auto& r) {
      std::string h = r[0].substr(0, 5);
      h[3] = 0;
      h[4] = 15;
      return h + std::string(15, 'x');
    });
    CHECK(s.err() == EPROTO);
  }
}

TEST_CASE("record layer: alerts, stray handshake records and nothing accepted after a failure") {
  tls::TrafficKeys k{};
  for (int i = 0; i < 32; i++) k.tx.key[i] = k.rx.key[i] = uint8_t(i);
  for (int i = 0; i < 12; i++) k.tx.iv[i] = k.rx.iv[i] = uint8_t(100 + i);
  k.tx.seq = k.rx.seq = 7;
  auto feed = [&](uint8_t type, std::string body) {
    tls::RecordSealer peer(k.rx);
    tls::RecordLayer me(k);
    std::string wire, plain, out;
    REQUIRE(peer.Seal(tls::kApplicationData, "hello", 5, &wire).ok());
    REQUIRE(peer.Seal(type, body.data(), body.size(), &wire).ok());
    auto r = me.Read(wire.data(), wire.size(), &plain, &out);
    CHECK(plain == "hello");
    Status again = me.Write("x", 1, &out);
    return std::make_tuple(r.status(), out, again);
  };
  SECTION("close_notify ends the peer's stream; this side may still answer") {
    auto [s, out, again] = feed(tls::kAlert, std::string("\x01\x00", 2));
    CHECK(s.err() == ECONNRESET);
    CHECK(again.ok());  // the replies to what came before it
  }
  SECTION("a fatal alert") {
    auto [s, out, again] = feed(tls::kAlert, std::string("\x02\x28", 2));
    CHECK(s.err() == EPROTO);
    CHECK(out.empty());  // no alert answers an alert
  }
  SECTION("a malformed alert") {
    auto [s, out, again] = feed(tls::kAlert, std::string("\x02", 1));
    CHECK(s.err() == EPROTO);
    CHECK(!out.empty());
  }
  SECTION("renegotiation (a handshake record) is refused with unexpected_message") {
    auto [s, out, again] = feed(tls::kHandshake, std::string("\x01\x00\x00\x00", 4));
    CHECK(s.err() == EPROTO);
    CHECK(s.message().find("renegotiation") != std::string::npos);
    // The alert is sealed under our keys: open it as the peer would.
    tls::RecordOpener peer(k.tx);
    uint8_t type = 0;
    std::string plain;
    int alert = 0;
    auto r = peer.Open(out.data(), out.size(), &type, &plain, &alert);
    REQUIRE(r.ok());
    CHECK(type == tls::kAlert);
    CHECK(plain == std::string("\x02\x0a", 2));
    CHECK(!again.ok());
  }
  SECTION("ChangeCipherSpec after the handshake") {
    auto [s, out, again] = feed(tls::kChangeCipherSpec, std::string("\x01", 1));
    CHECK(s.err() == EPROTO);
  }
  SECTION("a warning alert other than close_notify is skipped") {
    auto [s, out, again] = feed(tls::kAlert, std::string("\x01\x64", 2));
    CHECK(s.ok());
    CHECK(again.ok());
  }
}

TEST_CASE("record layer: keys handed over mid-stream continue the sequence (the kernel's view)") {
  Contexts c(true, false);
  Pair p(c);
  std::string a = RandomBytes(50000, 3);
  REQUIRE(p.client.Write(a.data(), a.size()).ok());
  REQUIRE(p.server.Write(a.data(), a.size()).ok());
  p.Deliver();
  REQUIRE(p.at_server == a);
  REQUIRE(p.at_client == a);
  auto keys = p.server.KeysForKernel();
  REQUIRE(keys.ok());
  // Another record layer with those keys stands in for the kernel.
  tls::RecordLayer kernel(*keys);
  keys->Wipe();
  p.server.MovedToKernel();
  CHECK(p.server.records() == TlsEngine::Records::kKernel);
  std::string b = RandomBytes(70000, 4), wire, plain;
  REQUIRE(kernel.Write(b.data(), b.size(), &wire).ok());
  p.at_client.clear();
  REQUIRE(p.client.Feed(wire.data(), wire.size()).ok());
  CHECK(p.at_client == b);
  REQUIRE(p.client.Write(b.data(), b.size()).ok());
  std::string out;
  auto r = kernel.Read(p.to_server.data(), p.to_server.size(), &plain, &out);
  REQUIRE(r.ok());
  CHECK(*r == p.to_server.size());
  CHECK(plain == b);
  // The engine itself now passes bytes through.
  p.at_server.clear();
  REQUIRE(p.server.Feed("plain", 5).ok());
  CHECK(p.at_server == "plain");
}

TEST_CASE("record layer: no kernel hand-over while received ciphertext is pending") {
  Contexts c(true, false);
  Pair p(c);
  std::string a = RandomBytes(1000, 3);
  REQUIRE(p.client.Write(a.data(), a.size()).ok());
  // Half a record arrives: the kernel cannot start mid-record.
  REQUIRE(p.server.Feed(p.to_server.data(), 10).ok());
  CHECK(p.server.KeysForKernel().err() == EAGAIN);
  REQUIRE(p.server.Feed(p.to_server.data() + 10, p.to_server.size() - 10).ok());
  CHECK(p.server.KeysForKernel().ok());
  CHECK(p.at_server == a);
}
