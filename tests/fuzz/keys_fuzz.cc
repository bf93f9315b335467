// libFuzzer target: any text as a keys file (stunnel PSKsecrets format).
#include <cstdint>
#include <string>

#include "auth/keys.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto t = muscle::auth::KeyTable::Parse(text, "fuzz");
  if (t.ok())
    for (const auto& id : (*t)->Identities()) (void)(*t)->Find(id);
  return 0;
}
