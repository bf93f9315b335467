// libFuzzer target: any bytes as a tree object (store/tree_object.h), and
// as the bucket's objects (store/bucket_index.h: a pack index, a catalog,
// an envelope). A decoded tree object re-encodes to exactly the same bytes
// (one encoding per object, which content addressing relies on); a decoded
// pack index or catalog re-encodes to bytes that decode to the same again;
// nothing crashes.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "store/bucket_index.h"
#include "store/tree_object.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace muscle::store;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto o = DecodeObject(in);
  if (o.ok()) {
    if (EncodeObject(*o) != in) abort();
    (void)ChildrenOf(*o);
  }
  auto p = DecodePackIndex(in);
  if (p.ok()) {
    std::string again = EncodePackIndex(*p);
    auto q = DecodePackIndex(again);
    if (!q.ok() || EncodePackIndex(*q) != again) abort();
  }
  auto c = DecodeCatalog(in);
  if (c.ok()) {
    std::string again = EncodeCatalog(*c);
    auto d = DecodeCatalog(again);
    if (!d.ok() || EncodeCatalog(*d) != again) abort();
  }
  (void)OpenBucketObject(nullptr, "store", "catalog", in);
  return 0;
}
