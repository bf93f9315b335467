// libFuzzer target: the TLS record layer (tls/record_layer.h) opening a
// stream the input describes: records sealed under the right keys (any
// content type and length), raw bytes, bit flips anywhere in the stream,
// and the stream cut into pieces of any size. Nothing may crash or grow
// without bound, and when the input asks only for intact application-data
// records, exactly their bytes must come out, however the stream is cut.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "tls/record_layer.h"

using namespace muscle;
using namespace muscle::tls;

namespace {

struct Input {
  const uint8_t* p;
  size_t n;
  bool Take(void* out, size_t k) {
    if (n < k) return false;
    memcpy(out, p, k);
    p += k;
    n -= k;
    return true;
  }
};

TrafficKeys Keys() {
  TrafficKeys k{};
  for (int i = 0; i < 32; i++) k.tx.key[i] = uint8_t(i * 7), k.rx.key[i] = uint8_t(i * 7);
  for (int i = 0; i < 12; i++) k.tx.iv[i] = uint8_t(i * 3), k.rx.iv[i] = uint8_t(i * 3);
  return k;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in{data, size};
  TrafficKeys keys = Keys();
  RecordSealer peer(keys.rx);
  RecordLayer me(keys);
  std::string stream, expected;
  std::vector<size_t> cuts;
  bool clean = true;
  uint8_t op;
  while (in.Take(&op, 1) && stream.size() < (1u << 20)) {
    uint16_t len = 0;
    if (!in.Take(&len, 2)) break;
    switch (op & 3) {
      case 0: {  // application data, length from the input (bytes repeat)
        size_t n = len % (kMaxRecordPlaintext + 1);
        std::string body(n, char(op));
        if (n && in.n) memcpy(body.data(), in.p, std::min(n, in.n));
        if (!peer.Seal(kApplicationData, body.data(), body.size(), &stream).ok()) return 0;
        expected += body;
        break;
      }
      case 1: {  // a record of another content type
        std::string body(len % 64, char(len >> 8));
        if (!peer.Seal(uint8_t(op >> 2), body.data(), body.size(), &stream).ok()) return 0;
        clean &= (op >> 2) == kApplicationData;
        if ((op >> 2) == kApplicationData) expected += body;
        break;
      }
      case 2: {  // raw bytes
        size_t n = std::min<size_t>(len % 300, in.n);
        stream.append(reinterpret_cast<const char*>(in.p), n);
        in.p += n;
        in.n -= n;
        clean &= n == 0;
        break;
      }
      case 3:  // a bit flip, or a cut point
        if (op & 4) {
          if (!stream.empty()) {
            stream[len % stream.size()] ^= char(1 << (op >> 5));
            clean = false;
          }
        } else {
          cuts.push_back(stream.size() == 0 ? 0 : len % (stream.size() + 1));
        }
        break;
    }
  }
  std::string plain, out;
  size_t at = 0;
  std::string pending;
  Status st;
  auto feed = [&](size_t upto) {
    if (!st.ok() || upto <= at) return;
    pending.append(stream, at, upto - at);
    at = upto;
    auto r = me.Read(pending.data(), pending.size(), &plain, &out);
    if (!r.ok()) {
      st = r.status();
      return;
    }
    pending.erase(0, *r);
  };
  std::sort(cuts.begin(), cuts.end());
  for (size_t c : cuts) feed(c);
  feed(stream.size());
  if (clean) {
    if (!st.ok() || plain != expected || !pending.empty()) __builtin_trap();
  }
  // Bounded: while the stream is accepted, what waits is less than a record.
  if (st.ok() && pending.size() >= kRecordHeader + kMaxRecordCiphertext) __builtin_trap();
  return 0;
}
