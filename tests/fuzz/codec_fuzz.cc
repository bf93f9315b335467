// libFuzzer target: any bytes as one 9P frame. Decoding never crashes; a
// frame that decodes re-encodes to a frame that decodes to the same bytes.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "9p/codec.h"

using namespace muscle::p9;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Decoded d = Decode(data, size);
  if (d.status != DecodeStatus::kOk) return 0;
  std::string once;
  Encode(d.tag, d.msg, once);
  Decoded again = Decode(reinterpret_cast<const uint8_t*>(once.data()), once.size());
  if (again.status != DecodeStatus::kOk || again.tag != d.tag || again.type != d.type) abort();
  std::string twice;
  Encode(again.tag, again.msg, twice);
  if (twice != once) abort();
  return 0;
}
