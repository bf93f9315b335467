#include "crypto/seal.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <sodium.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace muscle::crypto {
namespace {

constexpr unsigned char kAdMagic[] = {'m', 'u', 's', 'c', 'l', 'e', 'f', 's', '-', 'a', 'd'};
constexpr unsigned char kAdVersion = 1;

void InitSodium() {
  static const bool ok = sodium_init() >= 0;
  if (!ok) abort();  // only when the OS has no random source at all
}

// Fetched once: an implicit fetch at every init costs a lookup.
EVP_CIPHER* ChaChaPoly() {
  static EVP_CIPHER* c = EVP_CIPHER_fetch(nullptr, "ChaCha20-Poly1305", nullptr);
  return c;
}

EVP_MAC* Hmac() {
  static EVP_MAC* m = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  return m;
}

bool Disjoint(const void* a, size_t an, const void* b, size_t bn) {
  auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return an == 0 || bn == 0 || x + an <= y || y + bn <= x;
}

enum class Outcome { kOk, kLibrary, kAuth };

// XChaCha20-Poly1305-IETF of `len` bytes from `in` to `out` (equal, or
// disjoint): HChaCha20 gives the subkey, libcrypto's ChaCha20-Poly1305
// does the rest. Encrypting writes the tag to `tag`; decrypting checks it.
Outcome XChaChaPoly(bool encrypt, const Key& key, const unsigned char* nonce,
                    const AssociatedData& ad, const unsigned char* in, unsigned char* out,
                    uint64_t len, unsigned char* tag) {
  EVP_CIPHER* cipher = ChaChaPoly();
  if (!cipher) return Outcome::kLibrary;
  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();  // freed with its key schedule cleansed
  if (!c) return Outcome::kLibrary;
  unsigned char subkey[kKeyBytes];
  crypto_core_hchacha20(subkey, nonce, key.bytes().data(), nullptr);
  unsigned char iv[12] = {0};
  memcpy(iv + 4, nonce + 16, 8);
  int n = 0;
  bool ok = EVP_CipherInit_ex2(c, cipher, subkey, iv, encrypt ? 1 : 0, nullptr) == 1;
  sodium_memzero(subkey, sizeof subkey);
  if (ok && !encrypt) ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, int(kTagBytes), tag) == 1;
  auto a = ad.bytes();
  ok = ok && EVP_CipherUpdate(c, nullptr, &n, a.data(), int(a.size())) == 1;
  while (ok && len > 0) {
    int step = int(std::min<uint64_t>(len, uint64_t(1) << 30));
    ok = EVP_CipherUpdate(c, out, &n, in, step) == 1 && n == step;
    in += step;
    out += step;
    len -= uint64_t(step);
  }
  Outcome r = ok ? Outcome::kOk : Outcome::kLibrary;
  if (ok) {
    // Decrypting, the tag is checked here and only here: a failure now is
    // an authentication failure.
    if (EVP_CipherFinal_ex(c, out, &n) != 1) r = encrypt ? Outcome::kLibrary : Outcome::kAuth;
    else if (encrypt && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, int(kTagBytes), tag) != 1)
      r = Outcome::kLibrary;
  }
  EVP_CIPHER_CTX_free(c);
  return r;
}

void PutField(unsigned char* buf, size_t& len, std::string_view f) {
  buf[len++] = static_cast<unsigned char>(f.size());
  if (!f.empty()) memcpy(buf + len, f.data(), f.size());
  len += f.size();
}

}  // namespace

Result<AssociatedData> AssociatedData::ForRecord(SealKind kind, std::string_view store_id,
                                                 std::string_view pack_id, uint64_t position,
                                                 std::string_view name) {
  if (kind != SealKind::kChunk && kind != SealKind::kTreeObject && kind != SealKind::kIndexObject &&
      kind != SealKind::kKeyring)
    return Status(EINVAL, "associated data: not a record kind");
  if (store_id.size() > kMaxField || pack_id.size() > kMaxField || name.size() > kMaxField)
    return Status(EINVAL, "associated data: a field is longer than 64 bytes");
  AssociatedData ad;
  memcpy(ad.buf_, kAdMagic, sizeof kAdMagic);
  ad.len_ = sizeof kAdMagic;
  ad.buf_[ad.len_++] = kAdVersion;
  ad.buf_[ad.len_++] = static_cast<unsigned char>(kind);
  PutField(ad.buf_, ad.len_, store_id);
  PutField(ad.buf_, ad.len_, pack_id);
  for (int i = 0; i < 8; i++) ad.buf_[ad.len_++] = static_cast<unsigned char>(position >> (8 * i));
  PutField(ad.buf_, ad.len_, name);
  return ad;
}

Result<AssociatedData> AssociatedData::ForKeyFile(std::string_view header) {
  if (header.size() > kMaxHeader) return Status(EINVAL, "associated data: key file header too long");
  AssociatedData ad;
  memcpy(ad.buf_, kAdMagic, sizeof kAdMagic);
  ad.len_ = sizeof kAdMagic;
  ad.buf_[ad.len_++] = kAdVersion;
  ad.buf_[ad.len_++] = static_cast<unsigned char>(SealKind::kKeyFile);
  ad.buf_[ad.len_++] = static_cast<unsigned char>(header.size());
  ad.buf_[ad.len_++] = static_cast<unsigned char>(header.size() >> 8);
  if (!header.empty()) memcpy(ad.buf_ + ad.len_, header.data(), header.size());
  ad.len_ += header.size();
  return ad;
}

Status Seal(const Key& key, const AssociatedData& ad, std::string_view plaintext,
            std::span<char> out) {
  if (plaintext.size() > kMaxSealPlaintext) return Status(EINVAL, "seal: plaintext too large");
  if (out.size() != plaintext.size() + kSealOverhead)
    return Status(EINVAL, "seal: the output must be 40 bytes longer than the plaintext");
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  auto* in = reinterpret_cast<const unsigned char*>(plaintext.data());
  if (in != o + kNonceBytes && !Disjoint(in, plaintext.size(), o, out.size()))
    return Status(EINVAL, "seal: the plaintext overlaps the output but is not in place");
  InitSodium();
  randombytes_buf(o, kNonceBytes);
  auto r = XChaChaPoly(true, key, o, ad, in, o + kNonceBytes, plaintext.size(),
                       o + kNonceBytes + plaintext.size());
  if (r != Outcome::kOk) {
    sodium_memzero(o, out.size());
    return Status(ENOMEM, "seal: libcrypto's ChaCha20-Poly1305 failed");
  }
  return Status::Ok();
}

Status Open(const Key& key, const AssociatedData& ad, std::string_view sealed,
            std::span<char> out) {
  if (sealed.size() < kSealOverhead)
    return Status(EIO, "open: " + std::to_string(sealed.size()) +
                           " bytes are too short to be sealed (truncated)");
  size_t len = sealed.size() - kSealOverhead;
  if (out.size() != len) return Status(EINVAL, "open: the output must be 40 bytes shorter than the sealed blob");
  auto* s = reinterpret_cast<const unsigned char*>(sealed.data());
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  if (o != s + kNonceBytes && !Disjoint(o, len, s, sealed.size()))
    return Status(EINVAL, "open: the output overlaps the sealed blob but is not in place");
  unsigned char tag[kTagBytes];
  memcpy(tag, s + kNonceBytes + len, kTagBytes);
  auto r = XChaChaPoly(false, key, s, ad, s + kNonceBytes, o, len, tag);
  if (r == Outcome::kOk) return Status::Ok();
  sodium_memzero(o, len);  // no unauthenticated plaintext left behind
  if (r == Outcome::kAuth)
    return Status(EIO, "open: authentication failed (altered, moved, or another key)");
  return Status(ENOMEM, "open: libcrypto's ChaCha20-Poly1305 failed");
}

Status ChunkId(const Key& chunk_id_key, std::string_view data,
               unsigned char (&out)[kChunkIdBytes]) {
  EVP_MAC* mac = Hmac();
  EVP_MAC_CTX* c = mac ? EVP_MAC_CTX_new(mac) : nullptr;
  if (!c) return Status(ENOMEM, "chunk id: libcrypto's HMAC failed");
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  size_t n = 0;
  bool ok = EVP_MAC_init(c, chunk_id_key.bytes().data(), kKeyBytes, params) == 1 &&
            EVP_MAC_update(c, reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1 &&
            EVP_MAC_final(c, out, &n, sizeof out) == 1 && n == sizeof out;
  EVP_MAC_CTX_free(c);  // cleansed by libcrypto
  if (!ok) return Status(ENOMEM, "chunk id: libcrypto's HMAC failed");
  return Status::Ok();
}

}  // namespace muscle::crypto
