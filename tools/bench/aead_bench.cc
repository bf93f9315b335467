// Measures ChaCha20-Poly1305 sealing of TLS-sized records (16 KiB of
// plaintext, 13 bytes of additional data, a fresh nonce per record) with
// the AEAD libraries Debian packages: OpenSSL's libcrypto (what the record
// layer uses, tls/record_layer.h), libsodium and mbedTLS 2.28. Built when
// libsodium's headers are installed (libsodium-dev); not part of the tests.
//   build/aead_bench [MiB]
#include <mbedtls/chachapoly.h>
#include <openssl/evp.h>
#include <sodium.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

namespace {

constexpr size_t kRecord = 16384;

double Rate(size_t records, const std::function<void(size_t)>& seal) {
  seal(0);  // warm up
  auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < records; i++) seal(i);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return double(records) * kRecord / s / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  if (sodium_init() < 0) return 1;
  size_t mib = argc > 1 ? size_t(atol(argv[1])) : 512;
  size_t records = mib * 64;
  unsigned char key[32] = {1}, nonce[12] = {2}, aad[13] = {3};
  std::vector<unsigned char> in(kRecord, 7), out(kRecord + 16);

  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
  EVP_EncryptInit_ex(c, EVP_chacha20_poly1305(), nullptr, key, nullptr);
  auto openssl = [&](size_t i) {
    int n;
    nonce[11] = uint8_t(i);
    EVP_EncryptInit_ex(c, nullptr, nullptr, nullptr, nonce);
    EVP_EncryptUpdate(c, nullptr, &n, aad, sizeof aad);
    EVP_EncryptUpdate(c, out.data(), &n, in.data(), int(kRecord));
    EVP_EncryptFinal_ex(c, out.data() + n, &n);
    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, out.data() + kRecord);
  };
  auto sodium = [&](size_t i) {
    unsigned long long len;
    nonce[11] = uint8_t(i);
    crypto_aead_chacha20poly1305_ietf_encrypt(out.data(), &len, in.data(), kRecord, aad,
                                              sizeof aad, nullptr, nonce, key);
  };
  mbedtls_chachapoly_context m;
  mbedtls_chachapoly_init(&m);
  mbedtls_chachapoly_setkey(&m, key);
  auto mbed = [&](size_t i) {
    nonce[11] = uint8_t(i);
    mbedtls_chachapoly_encrypt_and_tag(&m, kRecord, nonce, aad, sizeof aad, in.data(), out.data(),
                                       out.data() + kRecord);
  };
  printf("ChaCha20-Poly1305, 16 KiB records, %zu MiB each, one core:\n", mib);
  for (int round = 0; round < 2; round++) {  // alternate, to cancel drift
    printf("  libcrypto (OpenSSL %s): %.0f MB/s\n", OpenSSL_version(OPENSSL_VERSION_STRING),
           Rate(records, openssl));
    printf("  libsodium %s: %.0f MB/s\n", sodium_version_string(), Rate(records, sodium));
    printf("  mbedTLS 2.28: %.0f MB/s\n", Rate(records / 4, mbed));
  }
  EVP_CIPHER_CTX_free(c);
  mbedtls_chachapoly_free(&m);
  return 0;
}
