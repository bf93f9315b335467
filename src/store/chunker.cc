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

}  // namespace

size_t FindChunkEnd(const uint8_t* data, size_t len, bool at_end) {
  if (len <= kMinChunk) return at_end ? len : 0;
  size_t limit = len < kMaxChunk ? len : kMaxChunk;
  size_t normal = limit < kAvgChunk ? limit : kAvgChunk;
  uint64_t h = 0;
  // The hash window is 64 bytes; start it just before the minimum so that
  // the first candidate cut depends only on content.
  size_t i = kMinChunk - 64;
  for (; i < normal; i++) {
    h = (h << 1) + kGear[data[i]];
    if (i >= kMinChunk && !(h & kMaskSmall)) return i + 1;
  }
  for (; i < limit; i++) {
    h = (h << 1) + kGear[data[i]];
    if (!(h & kMaskLarge)) return i + 1;
  }
  if (limit == kMaxChunk) return kMaxChunk;
  return at_end ? len : 0;
}

}  // namespace muscle::store
