#include <catch2/catch.hpp>
#include <cstring>
#include <random>
#include <string>

#include "store/sha256.h"

using namespace muscle::store;

TEST_CASE("SHA-256: hardware path equals the portable one at every length") {
  std::mt19937 rng(5);
  std::string data(70000, '\0');
  for (auto& c : data) c = char(rng());
  uint8_t a[32], b[32];
  for (size_t len : {0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 65536, 69999}) {
    Sha256(data.data(), len, a);
    Sha256Portable(data.data(), len, b);
    INFO("length " << len << " accelerated " << Sha256Accelerated());
    CHECK(memcmp(a, b, 32) == 0);
  }
  // Known answer: SHA-256("abc").
  Sha256("abc", 3, a);
  const uint8_t abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
                           0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
                           0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
  CHECK(memcmp(a, abc, 32) == 0);
}
