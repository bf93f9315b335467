// Content-defined chunking: bounds, determinism, and resynchronisation
// after an insertion (the property deduplication relies on).
#include <catch2/catch.hpp>
#include <random>
#include <set>
#include <vector>

#include "store/chunker.h"

using namespace muscle::store;

namespace {

std::vector<size_t> Cuts(const std::string& data) {
  std::vector<size_t> cuts;
  size_t pos = 0;
  while (pos < data.size()) {
    size_t n = FindChunkEnd(reinterpret_cast<const uint8_t*>(data.data()) + pos,
                            data.size() - pos, true);
    REQUIRE(n > 0);
    pos += n;
    cuts.push_back(pos);
  }
  return cuts;
}

// Byte-wise mt19937, not test::RandomBytes: the data these cases were
// written on (the number of chunks, hence of assertions, depends on it).
std::string Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = char(rng());
  return s;
}

}  // namespace

TEST_CASE("chunk sizes stay within bounds and average near the target") {
  std::string data = Random(16 << 20, 1);
  auto cuts = Cuts(data);
  size_t prev = 0;
  for (size_t i = 0; i < cuts.size(); i++) {
    size_t len = cuts[i] - prev;
    if (i + 1 < cuts.size()) {
      CHECK(len >= kMinChunk);
      CHECK(len <= kMaxChunk);
    }
    prev = cuts[i];
  }
  double avg = double(data.size()) / double(cuts.size());
  CHECK(avg > 40 * 1024);
  CHECK(avg < 100 * 1024);
}

TEST_CASE("no cut is decided before enough data arrives") {
  std::string data = Random(kMaxChunk - 1, 2);
  // Without at_end, a prefix without a content cut asks for more.
  size_t n = FindChunkEnd(reinterpret_cast<const uint8_t*>(data.data()), kMinChunk, false);
  CHECK(n == 0);
  CHECK(FindChunkEnd(reinterpret_cast<const uint8_t*>(data.data()), 10, true) == 10);
  std::string zeros(kMaxChunk * 2, '\0');
  // Constant data has no content cut: chunks are cut at the maximum.
  CHECK(FindChunkEnd(reinterpret_cast<const uint8_t*>(zeros.data()), zeros.size(), false) ==
        kMaxChunk);
}

TEST_CASE("an insertion near the start leaves later chunks unchanged") {
  std::string data = Random(8 << 20, 3);
  auto before = Cuts(data);
  std::string edited = data;
  edited.insert(1000, "a few inserted bytes");
  auto after = Cuts(edited);
  std::set<size_t> shifted;
  for (size_t c : before) shifted.insert(c + 20);
  size_t same = 0;
  for (size_t c : after) same += shifted.count(c);
  // All but the first chunk or two resynchronise.
  CHECK(same + 2 >= after.size());
}
