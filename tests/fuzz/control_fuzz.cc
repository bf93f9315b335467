// libFuzzer target: any bytes as a command written to @ctl
// (server/control.h), against a store (in memory) that holds a small tree
// and snapshots of it; the first byte picks the writer's rights and root.
// Every answer starts "ok" or "error", and the store stays consistent.
#include <sys/stat.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "server/control.h"
#include "store/store.h"

using namespace muscle;

namespace {

store::Store* Fixture() {
  static store::Store* s = [] {
    auto r = store::Store::Open(":memory:");
    if (!r.ok()) abort();
    store::Store* st = r->release();
    auto d = st->Create(store::kRootIno, "sub", S_IFDIR | 0755, 0, 0);
    auto f = st->Create(d->ino, "f", S_IFREG | 0644, 0, 0);
    (void)st->Write(f->ino, 0, "one");
    (void)st->Create(store::kRootIno, "link", S_IFLNK | 0777, 0, 0, 0, "sub/f");
    (void)st->TakeSnapshot("a");
    (void)st->Write(f->ino, 0, "two!");
    (void)st->TakeSnapshot("b");
    return st;
  }();
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  store::Store* s = Fixture();
  static int runs = 0;
  auth::AccessRule rule;
  rule.snapshot = data[0] & 1;
  rule.read_only = data[0] & 2;
  if (data[0] & 4) rule.root = "/sub";
  std::string_view cmd(reinterpret_cast<const char*>(data + 1), size - 1);
  std::string answer = server::RunControl(*s, rule, cmd);
  if (answer.rfind("ok\n", 0) != 0 && answer.rfind("error ", 0) != 0) abort();
  if (++runs % 2000 == 0 && !s->Check().ok()) abort();
  return 0;
}
