// TLS session resumption: a server engine and a client engine wired
// together in memory, so each handshake's kind (full or resumed) is visible.
#include <catch2/catch.hpp>
#include <cstring>
#include <map>

#include "auth/keys.h"
#include "tls/session_tickets.h"
#include "tls/tls_engine.h"

using namespace muscle;

namespace {

struct Keys {
  std::map<std::string, auth::Secret> by_identity;
  const auth::Secret* Find(const std::string& id) const {
    auto it = by_identity.find(id);
    return it == by_identity.end() ? nullptr : &it->second;
  }
};

const auth::Secret kKeyA(std::string(32, 'a'));
const auth::Secret kKeyB(std::string(32, 'b'));

struct Outcome {
  bool ok = false;
  bool resumed = false;
  std::string identity;
  std::string echoed;  // plaintext the server received after the handshake
};

// One connection: handshake, then "ping" from client to server.
Outcome Connect(tls::TlsContext& server_ctx, tls::TlsContext& client_ctx) {
  tls::TlsEngine server(server_ctx), client(client_ctx);
  std::string to_server, to_client;
  Outcome out;
  server.on_ciphertext = [&](std::string b) { to_client += b; };
  client.on_ciphertext = [&](std::string b) { to_server += b; };
  server.on_plaintext = [&](const char* d, size_t n) { out.echoed.append(d, n); };
  if (!client.Start().ok()) return out;
  for (int i = 0; i < 20 && !(server.ready() && client.ready()); ++i) {
    std::string s, c;
    s.swap(to_server);
    c.swap(to_client);
    if (!s.empty() && !server.Feed(s.data(), s.size()).ok()) return out;
    if (!c.empty() && !client.Feed(c.data(), c.size()).ok()) return out;
  }
  if (!server.ready() || !client.ready()) return out;
  REQUIRE(client.Write("ping", 4).ok());
  REQUIRE(server.Feed(to_server.data(), to_server.size()).ok());
  out.ok = true;
  out.resumed = server.resumed();
  out.identity = server.identity();
  return out;
}

}  // namespace

TEST_CASE("session tickets: reconnects resume; key changes and old tickets do not") {
  Keys keys;
  keys.by_identity["alice"] = kKeyA;
  auto server = tls::TlsContext::ForServer([&](const std::string& id) { return keys.Find(id); });
  REQUIRE(server.ok());
  auto cache = std::make_shared<tls::SessionCache>();
  auto client = tls::TlsContext::ForClient("alice", kKeyA, cache);
  REQUIRE(client.ok());

  Outcome first = Connect(**server, **client);
  REQUIRE(first.ok);
  CHECK(!first.resumed);
  CHECK(first.echoed == "ping");

  Outcome second = Connect(**server, **client);
  REQUIRE(second.ok);
  CHECK(second.resumed);
  CHECK(second.identity == "alice");  // the identity travels in the ticket
  CHECK(second.echoed == "ping");

  SECTION("a client without a cache always does the full exchange") {
    auto plain = tls::TlsContext::ForClient("alice", kKeyA);
    REQUIRE(plain.ok());
    Outcome o = Connect(**server, **plain);
    REQUIRE(o.ok);
    CHECK(!o.resumed);
  }
  SECTION("a rotated key in the keys file ends resumption") {
    keys.by_identity["alice"] = kKeyB;
    // The cached session is refused; the full handshake with the old key
    // then fails, as it must.
    CHECK(!Connect(**server, **client).ok);
    auto rotated = tls::TlsContext::ForClient("alice", kKeyB, cache);
    REQUIRE(rotated.ok());
    Outcome o = Connect(**server, **rotated);
    REQUIRE(o.ok);
    CHECK(!o.resumed);
    CHECK(Connect(**server, **rotated).resumed);
  }
  SECTION("a removed identity cannot resume") {
    keys.by_identity.erase("alice");
    CHECK(!Connect(**server, **client).ok);
  }
  SECTION("tickets under a retired ticket key fall back to a full handshake") {
    (*server)->tickets()->RotateForTest();
    Outcome o = Connect(**server, **client);  // previous key: still accepted
    REQUIRE(o.ok);
    CHECK(o.resumed);
    (*server)->tickets()->RotateForTest();
    (*server)->tickets()->RotateForTest();
    o = Connect(**server, **client);
    REQUIRE(o.ok);
    CHECK(!o.resumed);
    CHECK(Connect(**server, **client).resumed);  // and it got a fresh ticket
  }
  SECTION("a server with tickets off never resumes") {
    auto no_tickets =
        tls::TlsContext::ForServer([&](const std::string& id) { return keys.Find(id); }, 0);
    REQUIRE(no_tickets.ok());
    auto fresh = tls::TlsContext::ForClient("alice", kKeyA, std::make_shared<tls::SessionCache>());
    REQUIRE(Connect(**no_tickets, **fresh).ok);
    Outcome o = Connect(**no_tickets, **fresh);
    REQUIRE(o.ok);
    CHECK(!o.resumed);
  }
}

TEST_CASE("ticket sealer: tampering, truncation and another server's tickets are refused") {
  tls::TicketSealer sealer(3600), other(3600);
  mbedtls_ssl_session s;
  mbedtls_ssl_session_init(&s);
  s.ciphersuite = MBEDTLS_TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256;
  memset(s.master, 7, sizeof s.master);
  tls::TicketSealer::Owner owner{"alice", tls::KeyDigest(kKeyA.bytes())};
  unsigned char ticket[1024];
  size_t len = 0;
  REQUIRE(sealer.Seal(owner, s, ticket, ticket + sizeof ticket, &len).ok());
  CHECK(!sealer.Seal(owner, s, ticket, ticket + 40, &len).ok());  // too small: refused
  REQUIRE(sealer.Seal(owner, s, ticket, ticket + sizeof ticket, &len).ok());

  mbedtls_ssl_session back;
  mbedtls_ssl_session_init(&back);
  tls::TicketSealer::Owner got;
  REQUIRE(sealer.Open(ticket, len, &back, &got).ok());
  CHECK(got.identity == "alice");
  CHECK(got.key_digest == owner.key_digest);
  CHECK(back.ciphersuite == s.ciphersuite);
  CHECK(memcmp(back.master, s.master, sizeof s.master) == 0);
  mbedtls_ssl_session_free(&back);

  CHECK(!other.Open(ticket, len, &back, &got).ok());
  for (size_t i = 0; i < len; i += 7) {
    unsigned char copy[1024];
    memcpy(copy, ticket, len);
    copy[i] ^= 0x01;
    mbedtls_ssl_session_init(&back);
    CHECK(!sealer.Open(copy, len, &back, &got).ok());
    mbedtls_ssl_session_free(&back);
  }
  for (size_t n = 0; n < len; n += 5) {
    mbedtls_ssl_session_init(&back);
    CHECK(!sealer.Open(ticket, n, &back, &got).ok());
    mbedtls_ssl_session_free(&back);
  }
  mbedtls_ssl_session_free(&s);
}
