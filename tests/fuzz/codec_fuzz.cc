// libFuzzer target: any bytes as one 9P frame, decoded in each dialect.
// Decoding never crashes; a frame that decodes re-encodes to a frame that
// decodes (in the same dialect) to the same bytes.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "9p/codec.h"

using namespace muscle::p9;

namespace {
void OneDialect(const uint8_t* data, size_t size, Dialect dialect) {
  Decoded d = Decode(data, size, dialect);
  if (d.status != DecodeStatus::kOk) return;
  std::string once;
  Encode(d.tag, d.msg, once);
  Decoded again = Decode(reinterpret_cast<const uint8_t*>(once.data()), once.size(), dialect);
  if (again.status != DecodeStatus::kOk || again.tag != d.tag || again.type != d.type) abort();
  std::string twice;
  Encode(again.tag, again.msg, twice);
  if (twice != once) abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (Dialect d : {k9P2000, k9P2000u, k9P2000L}) OneDialect(data, size, d);
  return 0;
}
