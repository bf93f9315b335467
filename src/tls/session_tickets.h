// TLS session resumption (RFC 5077 tickets) for the PSK transport.
//
// A full ECDHE-PSK handshake costs about 2.5 ms of CPU on each side with
// mbedTLS 2.28's bignum code; a resumed one costs a few HMACs. Reconnecting
// clients (the relay, stunnel, `muscle bench`) present the ticket they got
// and skip the key exchange.
//
// Server: a TicketSealer encrypts the session (master secret, suite) with a
// ChaCha20-Poly1305 key that lives only in this process, together with the
// PSK identity and a SHA-256 digest of that identity's key. A ticket is
// accepted only while the identity is still in the keys file with the same
// key (so `muscle keys remove` and `rotate` also end resumption), within its
// lifetime, and under the current or the previous ticket key (the key is
// replaced every lifetime). A rejected ticket just means a full handshake.
//
// Client: a SessionCache keeps the last session of one server/identity for
// the next connection.
//
// Threading: a TicketSealer may be shared by threads (the server's event
// loops, so a ticket issued on one opens on any); a SessionCache too (the
// benchmark's connections).
#pragma once

#include <mbedtls/ssl.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "common/result.h"

namespace muscle::tls {

class TicketSealer {
 public:
  static constexpr uint32_t kDefaultLifetimeSeconds = 3600;
  explicit TicketSealer(uint32_t lifetime_seconds = kDefaultLifetimeSeconds);
  ~TicketSealer();
  TicketSealer(const TicketSealer&) = delete;
  TicketSealer& operator=(const TicketSealer&) = delete;

  // What a ticket carries besides the session.
  struct Owner {
    std::string identity;
    std::string key_digest;  // SHA-256 of the PSK
  };

  // Writes the ticket for `session` owned by `owner` into [start, end).
  Status Seal(const Owner& owner, const mbedtls_ssl_session& session, unsigned char* start,
              const unsigned char* end, size_t* len);
  // Decrypts a ticket; fills `session` and `owner`. Any failure (forged,
  // expired, old key, garbage) is an error.
  Status Open(const unsigned char* ticket, size_t len, mbedtls_ssl_session* session,
              Owner* owner);

  uint32_t lifetime_seconds() const { return lifetime_; }
  // For tests: makes the next Seal start a new key, as if a lifetime passed.
  void RotateForTest() {
    std::lock_guard<std::mutex> g(mu_);
    RotateKey();
  }

 private:
  struct Key {
    uint32_t id = 0;
    unsigned char bytes[32] = {};
    uint64_t nonces_used = 0;
    std::chrono::steady_clock::time_point created;
    bool valid = false;
  };
  void RotateKey();
  Key* KeyById(uint32_t id);

  uint32_t lifetime_;
  std::mutex mu_;  // guards the keys
  Key current_;
  Key previous_;
  uint32_t next_id_ = 1;
};

// SHA-256 of a key, as stored in tickets.
std::string KeyDigest(const std::string& key);

class SessionCache {
 public:
  SessionCache() = default;
  ~SessionCache();
  SessionCache(const SessionCache&) = delete;
  SessionCache& operator=(const SessionCache&) = delete;

  // Stores the session of a finished handshake on `ssl`.
  void Save(const mbedtls_ssl_context& ssl);
  // Offers the cached session, if any, for the next handshake on `ssl`.
  void Offer(mbedtls_ssl_context* ssl);
  void Clear();

 private:
  std::mutex mu_;
  std::string saved_;  // mbedtls_ssl_session_save() output
};

}  // namespace muscle::tls
