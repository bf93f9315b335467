#include "tls/session_tickets.h"

#include <mbedtls/chachapoly.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>
#include <sys/random.h>

#include <cstring>
#include <ctime>
#include <vector>

namespace muscle::tls {

namespace {

// Ticket: key id (4) | nonce (12) | ciphertext | tag (16); the key id is
// also the additional data. Plaintext: issued at (8, unix seconds) |
// identity length (1) | identity | key digest (32) | session.
constexpr size_t kIdLen = 4, kNonceLen = 12, kTagLen = 16, kDigestLen = 32;
constexpr size_t kHeader = kIdLen + kNonceLen;

void PutBE(unsigned char* p, uint64_t v, int n) {
  for (int i = n - 1; i >= 0; --i, v >>= 8) p[i] = static_cast<unsigned char>(v);
}
uint64_t GetBE(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

// Zeroizes a scratch buffer that held session secrets.
struct Scratch {
  std::vector<unsigned char> b;
  explicit Scratch(size_t n) : b(n) {}
  ~Scratch() { mbedtls_platform_zeroize(b.data(), b.size()); }
};

}  // namespace

std::string KeyDigest(const std::string& key) {
  unsigned char d[kDigestLen];
  mbedtls_sha256_ret(reinterpret_cast<const unsigned char*>(key.data()), key.size(), d, 0);
  return std::string(reinterpret_cast<char*>(d), sizeof d);
}

TicketSealer::TicketSealer(uint32_t lifetime_seconds) : lifetime_(lifetime_seconds) {
  RotateKey();
}

TicketSealer::~TicketSealer() {
  mbedtls_platform_zeroize(current_.bytes, sizeof current_.bytes);
  mbedtls_platform_zeroize(previous_.bytes, sizeof previous_.bytes);
}

void TicketSealer::RotateKey() {
  previous_ = current_;
  current_ = Key();
  current_.id = next_id_++;
  current_.created = std::chrono::steady_clock::now();
  // getrandom of 32 bytes does not fail once the pool is initialised; a
  // failure leaves the key invalid, so tickets are simply not issued.
  current_.valid = getrandom(current_.bytes, sizeof current_.bytes, 0) == sizeof current_.bytes;
}

TicketSealer::Key* TicketSealer::KeyById(uint32_t id) {
  if (current_.valid && current_.id == id) return &current_;
  if (previous_.valid && previous_.id == id) return &previous_;
  return nullptr;
}

Status TicketSealer::Seal(const Owner& owner, const mbedtls_ssl_session& session,
                          unsigned char* start, const unsigned char* end, size_t* len) {
  if (owner.identity.empty() || owner.identity.size() > 255 || owner.key_digest.size() != kDigestLen)
    return Status(EINVAL, "ticket owner");
  std::lock_guard<std::mutex> g(mu_);
  auto age = std::chrono::steady_clock::now() - current_.created;
  if (!current_.valid || age >= std::chrono::seconds(lifetime_) || current_.nonces_used >= (1ull << 40))
    RotateKey();
  if (!current_.valid) return Status(EIO, "no ticket key");

  size_t session_len = 0;
  mbedtls_ssl_session_save(&session, nullptr, 0, &session_len);
  size_t plain_len = 8 + 1 + owner.identity.size() + kDigestLen + session_len;
  if (end < start || size_t(end - start) < kHeader + plain_len + kTagLen)
    return Status(ENOSPC, "ticket buffer");

  Scratch plain(plain_len);
  unsigned char* p = plain.b.data();
  PutBE(p, uint64_t(time(nullptr)), 8);
  p[8] = static_cast<unsigned char>(owner.identity.size());
  memcpy(p + 9, owner.identity.data(), owner.identity.size());
  memcpy(p + 9 + owner.identity.size(), owner.key_digest.data(), kDigestLen);
  size_t written = 0;
  if (mbedtls_ssl_session_save(&session, p + 9 + owner.identity.size() + kDigestLen, session_len,
                               &written) != 0)
    return Status(EIO, "session save");

  PutBE(start, current_.id, kIdLen);
  memset(start + kIdLen, 0, 4);
  PutBE(start + kIdLen + 4, ++current_.nonces_used, 8);
  mbedtls_chachapoly_context aead;
  mbedtls_chachapoly_init(&aead);
  int rc = mbedtls_chachapoly_setkey(&aead, current_.bytes);
  if (rc == 0)
    rc = mbedtls_chachapoly_encrypt_and_tag(&aead, plain_len, start + kIdLen, start, kIdLen,
                                            plain.b.data(), start + kHeader,
                                            start + kHeader + plain_len);
  mbedtls_chachapoly_free(&aead);
  if (rc != 0) return Status(EIO, "ticket encryption");
  *len = kHeader + plain_len + kTagLen;
  return Status::Ok();
}

Status TicketSealer::Open(const unsigned char* ticket, size_t len, mbedtls_ssl_session* session,
                          Owner* owner) {
  if (len < kHeader + 8 + 1 + kDigestLen + kTagLen) return Status(EINVAL, "ticket too short");
  std::lock_guard<std::mutex> g(mu_);
  Key* key = KeyById(uint32_t(GetBE(ticket, kIdLen)));
  if (!key) return Status(EINVAL, "ticket key unknown or retired");
  size_t plain_len = len - kHeader - kTagLen;
  Scratch plain(plain_len);
  mbedtls_chachapoly_context aead;
  mbedtls_chachapoly_init(&aead);
  int rc = mbedtls_chachapoly_setkey(&aead, key->bytes);
  if (rc == 0)
    rc = mbedtls_chachapoly_auth_decrypt(&aead, plain_len, ticket + kIdLen, ticket, kIdLen,
                                         ticket + kHeader + plain_len, ticket + kHeader,
                                         plain.b.data());
  mbedtls_chachapoly_free(&aead);
  if (rc != 0) return Status(EINVAL, "ticket not authentic");

  const unsigned char* p = plain.b.data();
  int64_t issued = int64_t(GetBE(p, 8));
  int64_t now = int64_t(time(nullptr));
  if (now - issued > int64_t(lifetime_) || issued - now > 60) return Status(EINVAL, "ticket expired");
  size_t id_len = p[8];
  if (id_len == 0 || 9 + id_len + kDigestLen > plain_len) return Status(EINVAL, "ticket malformed");
  owner->identity.assign(reinterpret_cast<const char*>(p + 9), id_len);
  owner->key_digest.assign(reinterpret_cast<const char*>(p + 9 + id_len), kDigestLen);
  size_t off = 9 + id_len + kDigestLen;
  if (mbedtls_ssl_session_load(session, p + off, plain_len - off) != 0)
    return Status(EINVAL, "ticket session malformed");
  return Status::Ok();
}

SessionCache::~SessionCache() { Clear(); }

void SessionCache::Save(const mbedtls_ssl_context& ssl) {
  mbedtls_ssl_session s;
  mbedtls_ssl_session_init(&s);
  if (mbedtls_ssl_get_session(&ssl, &s) == 0) {
    size_t n = 0;
    mbedtls_ssl_session_save(&s, nullptr, 0, &n);
    std::string b(n, '\0');
    if (mbedtls_ssl_session_save(&s, reinterpret_cast<unsigned char*>(b.data()), n, &n) == 0) {
      std::lock_guard<std::mutex> g(mu_);
      mbedtls_platform_zeroize(saved_.data(), saved_.size());
      saved_.swap(b);
    }
    mbedtls_platform_zeroize(b.data(), b.size());
  }
  mbedtls_ssl_session_free(&s);
}

void SessionCache::Offer(mbedtls_ssl_context* ssl) {
  std::string b;
  {
    std::lock_guard<std::mutex> g(mu_);
    b = saved_;
  }
  if (b.empty()) return;
  mbedtls_ssl_session s;
  mbedtls_ssl_session_init(&s);
  if (mbedtls_ssl_session_load(&s, reinterpret_cast<const unsigned char*>(b.data()), b.size()) == 0)
    mbedtls_ssl_set_session(ssl, &s);
  mbedtls_ssl_session_free(&s);
  mbedtls_platform_zeroize(b.data(), b.size());
}

void SessionCache::Clear() {
  std::lock_guard<std::mutex> g(mu_);
  mbedtls_platform_zeroize(saved_.data(), saved_.size());
  saved_.clear();
}

}  // namespace muscle::tls
