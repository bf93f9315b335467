// libFuzzer target: any bytes as a tree object (store/tree_object.h). A
// decoded object re-encodes to exactly the same bytes (one encoding per
// object, which content addressing relies on); nothing crashes.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "store/tree_object.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto o = muscle::store::DecodeObject(in);
  if (o.ok()) {
    if (muscle::store::EncodeObject(*o) != in) abort();
    (void)muscle::store::ChildrenOf(*o);
  }
  return 0;
}
