#include "tls/record_layer.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstring>

namespace muscle::tls {

namespace {

constexpr uint8_t kAlertWarning = 1;
constexpr uint8_t kAlertFatal = 2;

void PutU64(unsigned char* p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8) p[i] = uint8_t(v);
}

// nonce = IV xor (0^32 || seq), RFC 7905 section 2.
void Nonce(const DirectionKeys& k, unsigned char nonce[12]) {
  memcpy(nonce, k.iv, 12);
  unsigned char s[8];
  PutU64(s, k.seq);
  for (int i = 0; i < 8; i++) nonce[4 + i] ^= s[i];
}

void Aad(uint64_t seq, uint8_t type, size_t len, unsigned char aad[13]) {
  PutU64(aad, seq);
  aad[8] = type;
  aad[9] = 3;
  aad[10] = 3;
  aad[11] = uint8_t(len >> 8);
  aad[12] = uint8_t(len);
}

EVP_CIPHER_CTX* NewContext(const DirectionKeys& k, bool encrypt) {
  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
  if (!c) return nullptr;
  if (EVP_CipherInit_ex(c, EVP_chacha20_poly1305(), nullptr, k.key, nullptr, encrypt ? 1 : 0) !=
      1) {
    EVP_CIPHER_CTX_free(c);
    return nullptr;
  }
  return c;
}

}  // namespace

void DirectionKeys::Wipe() {
  OPENSSL_cleanse(key, sizeof key);
  OPENSSL_cleanse(iv, sizeof iv);
}

RecordSealer::RecordSealer(const DirectionKeys& keys) : keys_(keys), ctx_(NewContext(keys, true)) {}

RecordSealer::~RecordSealer() {
  EVP_CIPHER_CTX_free(ctx_);
  keys_.Wipe();
}

Status RecordSealer::SealOne(uint8_t type, const unsigned char* data, size_t len,
                             unsigned char* out) {
  if (!ctx_) return Status(ENOMEM, "TLS record layer: no cipher context");
  if (keys_.seq == UINT64_MAX) return Status(EPROTO, "TLS sequence number exhausted");
  unsigned char nonce[12], aad[13];
  Nonce(keys_, nonce);
  Aad(keys_.seq, type, len, aad);
  out[0] = type;
  out[1] = 3;
  out[2] = 3;
  out[3] = uint8_t((len + kAeadTag) >> 8);
  out[4] = uint8_t(len + kAeadTag);
  int n = 0;
  if (EVP_EncryptInit_ex(ctx_, nullptr, nullptr, nullptr, nonce) != 1 ||
      EVP_EncryptUpdate(ctx_, nullptr, &n, aad, sizeof aad) != 1 ||
      (len > 0 && EVP_EncryptUpdate(ctx_, out + kRecordHeader, &n, data, int(len)) != 1) ||
      EVP_EncryptFinal_ex(ctx_, out + kRecordHeader + len, &n) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_GET_TAG, int(kAeadTag),
                          out + kRecordHeader + len) != 1)
    return Status(EIO, "TLS record layer: seal failed");
  keys_.seq++;
  return Status::Ok();
}

Status RecordSealer::Seal(uint8_t type, const char* data, size_t len, std::string* out) {
  size_t records = len == 0 ? 1 : (len + kMaxRecordPlaintext - 1) / kMaxRecordPlaintext;
  size_t at = out->size();
  out->resize(at + len + records * (kRecordHeader + kAeadTag));
  auto* dst = reinterpret_cast<unsigned char*>(out->data()) + at;
  auto* src = reinterpret_cast<const unsigned char*>(data);
  size_t off = 0;
  do {
    size_t n = std::min(kMaxRecordPlaintext, len - off);
    Status s = SealOne(type, src + off, n, dst);
    if (!s.ok()) {
      out->resize(at);
      return s;
    }
    dst += kRecordHeader + n + kAeadTag;
    off += n;
  } while (off < len);
  return Status::Ok();
}

RecordOpener::RecordOpener(const DirectionKeys& keys) : keys_(keys), ctx_(NewContext(keys, false)) {}

RecordOpener::~RecordOpener() {
  EVP_CIPHER_CTX_free(ctx_);
  keys_.Wipe();
}

Result<size_t> RecordOpener::Open(const char* data, size_t len, uint8_t* type, std::string* plain,
                                  int* alert) {
  *alert = -1;
  if (len < kRecordHeader) return size_t(0);
  auto* p = reinterpret_cast<const unsigned char*>(data);
  size_t clen = size_t(p[3]) << 8 | p[4];
  if (p[1] != 3 || p[2] != 3) {
    *alert = kDecodeError;
    return Status(EPROTO, "TLS record with a wrong version");
  }
  if (clen > kMaxRecordCiphertext) {
    *alert = kRecordOverflow;
    return Status(EPROTO, "TLS record too long");
  }
  if (len < kRecordHeader + clen) return size_t(0);
  if (clen < kAeadTag || clen - kAeadTag > kMaxRecordPlaintext) {
    *alert = clen < kAeadTag ? kBadRecordMac : kRecordOverflow;
    return Status(EPROTO, "TLS record of a bad length");
  }
  if (!ctx_) {
    *alert = kInternalError;
    return Status(ENOMEM, "TLS record layer: no cipher context");
  }
  if (keys_.seq == UINT64_MAX) {
    *alert = kInternalError;
    return Status(EPROTO, "TLS sequence number exhausted");
  }
  size_t n = clen - kAeadTag;
  unsigned char nonce[12], aad[13];
  Nonce(keys_, nonce);
  Aad(keys_.seq, p[0], n, aad);
  size_t at = plain->size();
  plain->resize(at + n);
  auto* dst = reinterpret_cast<unsigned char*>(plain->data()) + at;
  const unsigned char* body = p + kRecordHeader;
  int out = 0;
  // The tag is set before the data goes through, as libcrypto requires.
  bool ok = EVP_DecryptInit_ex(ctx_, nullptr, nullptr, nullptr, nonce) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_TAG, int(kAeadTag),
                                const_cast<unsigned char*>(body + n)) == 1 &&
            EVP_DecryptUpdate(ctx_, nullptr, &out, aad, sizeof aad) == 1 &&
            (n == 0 || EVP_DecryptUpdate(ctx_, dst, &out, body, int(n)) == 1) &&
            EVP_DecryptFinal_ex(ctx_, dst + n, &out) == 1;
  if (!ok) {
    OPENSSL_cleanse(dst, n);
    plain->resize(at);
    *alert = kBadRecordMac;
    return Status(EPROTO, "TLS record failed authentication (tampered, replayed or reordered)");
  }
  keys_.seq++;
  *type = p[0];
  return kRecordHeader + clen;
}

void RecordLayer::SendAlert(uint8_t level, uint8_t code, std::string* out) {
  char a[2] = {char(level), char(code)};
  (void)sealer_.Seal(kAlert, a, sizeof a, out);
}

void RecordLayer::CloseNotify(std::string* out) {
  if (closed_ || failed_) return;
  closed_ = true;
  SendAlert(kAlertWarning, kCloseNotify, out);
}

Result<size_t> RecordLayer::Read(const char* data, size_t len, std::string* plain,
                                 std::string* out) {
  if (failed_) return Status(EPROTO, "TLS connection failed");
  if (peer_closed_) return Status(ECONNRESET, "peer closed the TLS session");
  size_t used = 0;
  std::string record;
  while (used < len) {
    uint8_t type = 0;
    int alert = -1;
    size_t before = plain->size();
    Result<size_t> r = opener_.Open(data + used, len - used, &type, plain, &alert);
    if (!r.ok()) {
      failed_ = true;
      if (alert >= 0) {
        char a[2] = {char(kAlertFatal), char(alert)};
        (void)sealer_.Seal(kAlert, a, sizeof a, out);
      }
      return r.status();
    }
    if (*r == 0) break;
    used += *r;
    if (type == kApplicationData) continue;
    // Not data: take it back out of the plaintext and look at it.
    record.assign(*plain, before, std::string::npos);
    plain->resize(before);
    if (type == kAlert) {
      if (record.size() != 2) {
        failed_ = true;
        SendAlert(kAlertFatal, kDecodeError, out);
        return Status(EPROTO, "malformed TLS alert");
      }
      if (uint8_t(record[1]) == kCloseNotify) {
        // The peer sends nothing more; this side may still answer what it
        // received (then sends its own close_notify): not a failure.
        peer_closed_ = true;
        return Status(ECONNRESET, "peer closed the TLS session");
      }
      if (uint8_t(record[0]) == kAlertWarning) continue;
      failed_ = true;
      return Status(EPROTO, "peer sent fatal TLS alert " + std::to_string(uint8_t(record[1])));
    }
    failed_ = true;
    SendAlert(kAlertFatal, kUnexpectedMessage, out);
    if (type == kHandshake)
      return Status(EPROTO, "TLS renegotiation or handshake message after the handshake refused");
    return Status(EPROTO, "unexpected TLS record type " + std::to_string(type));
  }
  return used;
}

}  // namespace muscle::tls
