#include "store/chunker.h"

#include <array>

namespace muscle::store {
namespace {

// splitmix64 with a fixed seed: a deterministic gear table.
constexpr std::array<uint64_t, 256> MakeGear() {
  std::array<uint64_t, 256> g{};
  uint64_t x = 0x6d7573636c656673ULL;  // "musclefs"
  for (auto& v : g) {
    x += 0x9e3779b97f4a7c15ULL;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    v = z ^ (z >> 31);
  }
  return g;
}
constexpr std::array<uint64_t, 256> kGear = MakeGear();

// The hash shifts left, so its top bits depend on the most recent 64 bytes.
// Average 64 KiB = 2^16: 18 bits before the average (harder), 14 after.
constexpr uint64_t kMaskSmall = ((1ULL << 18) - 1) << (64 - 18);
constexpr uint64_t kMaskLarge = ((1ULL << 14) - 1) << (64 - 14);

// Looks for the first i in [i, end) where the hash after byte i has no bit
// of `mask` set, four bytes per step: the four hashes of a step are
// (h << k) plus sums of the step's table entries, which do not depend on
// h, so the loop-carried chain is one shift and one add per four bytes
// instead of per byte. Exactly the hashes (and so the cuts) of the
// byte-at-a-time loop. Returns the cut length, or 0 with `h` and `i`
// advanced to `end`.
inline size_t Scan(const uint64_t* gear, const uint8_t* data, size_t& i, size_t end, uint64_t& h,
                   uint64_t mask) {
  for (; i + 4 <= end; i += 4) {
    uint64_t g0 = gear[data[i]], g1 = gear[data[i + 1]];
    uint64_t g2 = gear[data[i + 2]], g3 = gear[data[i + 3]];
    uint64_t s1 = (g0 << 1) + g1, s2 = (s1 << 1) + g2, s3 = (s2 << 1) + g3;
    uint64_t h0 = (h << 1) + g0, h1 = (h << 2) + s1, h2 = (h << 3) + s2, h3 = (h << 4) + s3;
    if (((h0 & mask) == 0) | ((h1 & mask) == 0) | ((h2 & mask) == 0) | ((h3 & mask) == 0)) {
      if (!(h0 & mask)) return i + 1;
      if (!(h1 & mask)) return i + 2;
      if (!(h2 & mask)) return i + 3;
      return i + 4;
    }
    h = h3;
  }
  for (; i < end; i++) {
    h = (h << 1) + gear[data[i]];
    if (!(h & mask)) return i + 1;
  }
  return 0;
}

}  // namespace

size_t FindChunkEnd(const uint8_t* data, size_t len, bool at_end) {
  return FindChunkEnd(data, len, at_end, kGear.data());
}

size_t FindChunkEnd(const uint8_t* data, size_t len, bool at_end, const uint64_t* gear) {
  if (len <= kMinChunk) return at_end ? len : 0;
  size_t limit = len < kMaxChunk ? len : kMaxChunk;
  size_t normal = limit < kAvgChunk ? limit : kAvgChunk;  // > kMinChunk
  uint64_t h = 0;
  // The hash window is 64 bytes; start it just before the minimum so that
  // the first candidate cut depends only on content.
  size_t i = kMinChunk - 64;
  for (; i < kMinChunk; i++) h = (h << 1) + gear[data[i]];
  if (size_t n = Scan(gear, data, i, normal, h, kMaskSmall)) return n;
  if (size_t n = Scan(gear, data, i, limit, h, kMaskLarge)) return n;
  if (limit == kMaxChunk) return kMaxChunk;
  return at_end ? len : 0;
}

}  // namespace muscle::store
