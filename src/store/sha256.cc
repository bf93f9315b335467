#include "store/sha256.h"

#include <mbedtls/sha256.h>

#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace muscle::store {

void Sha256Portable(const void* data, size_t len, uint8_t out[32]) {
  mbedtls_sha256_ret(static_cast<const unsigned char*>(data), len, out, 0);
}

#if defined(__x86_64__)
namespace {

alignas(16) const uint32_t kRound[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

// Compresses `blocks` 64-byte blocks into the state words a..h.
__attribute__((target("sha,sse4.1,ssse3"))) void Compress(uint32_t state[8],
                                                          const uint8_t* p,
                                                          size_t blocks) {
  const __m128i byteswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  // The instructions want the state as (a,b,e,f) and (c,d,g,h).
  __m128i abcd = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(state)), 0xB1);
  __m128i efgh = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(state + 4)), 0x1B);
  __m128i abef = _mm_alignr_epi8(abcd, efgh, 8);
  __m128i cdgh = _mm_blend_epi16(efgh, abcd, 0xF0);
  for (; blocks > 0; blocks--, p += 64) {
    __m128i save_abef = abef, save_cdgh = cdgh;
    __m128i w[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
      w[i] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * i)), byteswap);
    // Fully unrolled, so that w[] lives in registers (a loop here kept it
    // on the stack and ran at under half the speed).
#pragma GCC unroll 16
    for (int r = 0; r < 16; r++) {
      if (r >= 4) {
        // w[r%4] holds W[4r-16..], the others the three groups after it.
        __m128i oldest = w[r % 4], next = w[(r + 1) % 4], third = w[(r + 2) % 4],
                newest = w[(r + 3) % 4];
        __m128i n = _mm_sha256msg1_epu32(oldest, next);
        n = _mm_add_epi32(n, _mm_alignr_epi8(newest, third, 4));
        w[r % 4] = _mm_sha256msg2_epu32(n, newest);
      }
      __m128i k = _mm_load_si128(reinterpret_cast<const __m128i*>(kRound + 4 * r));
      __m128i msg = _mm_add_epi32(w[r % 4], k);
      cdgh = _mm_sha256rnds2_epu32(cdgh, abef, msg);
      abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(msg, 0x0E));
    }
    abef = _mm_add_epi32(abef, save_abef);
    cdgh = _mm_add_epi32(cdgh, save_cdgh);
  }
  __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
  __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state), _mm_blend_epi16(feba, dchg, 0xF0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state + 4), _mm_alignr_epi8(dchg, feba, 8));
}

bool DetectShaNi() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  bool sse41 = c & (1u << 19), ssse3 = c & (1u << 9);
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return sse41 && ssse3 && (b & (1u << 29));
}

const bool kShaNi = DetectShaNi();

}  // namespace

bool Sha256Accelerated() { return kShaNi; }

void Sha256(const void* data, size_t len, uint8_t out[32]) {
  if (!kShaNi) return Sha256Portable(data, len, out);
  uint32_t st[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  const uint8_t* p = static_cast<const uint8_t*>(data);
  size_t full = len / 64;
  Compress(st, p, full);
  // Padding: 0x80, zeros, then the length in bits, big-endian.
  uint8_t tail[128] = {0};
  size_t rest = len - full * 64;
  memcpy(tail, p + full * 64, rest);
  tail[rest] = 0x80;
  size_t tail_len = rest + 9 <= 64 ? 64 : 128;
  uint64_t bits = uint64_t(len) * 8;
  for (int i = 0; i < 8; i++) tail[tail_len - 1 - i] = uint8_t(bits >> (8 * i));
  Compress(st, tail, tail_len / 64);
  for (int i = 0; i < 8; i++) {
    out[4 * i] = uint8_t(st[i] >> 24);
    out[4 * i + 1] = uint8_t(st[i] >> 16);
    out[4 * i + 2] = uint8_t(st[i] >> 8);
    out[4 * i + 3] = uint8_t(st[i]);
  }
}

#else
bool Sha256Accelerated() { return false; }
void Sha256(const void* data, size_t len, uint8_t out[32]) { Sha256Portable(data, len, out); }
#endif

}  // namespace muscle::store
