// Reproducers from the adversarial review of the store's failure atomicity.
#include <sqlite3.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "server_harness_lite.h"
#include "store/store.h"
#include "store/vfs.h"

using namespace muscle;
using namespace muscle::store;

namespace {
std::unique_ptr<Store> OpenStore(const std::string& path) {
  auto s = Store::Open(path);
  REQUIRE(s.ok());
  return std::move(*s);
}
}  // namespace

// SetXattr treats any GetXattr error as "does not exist". A read I/O error
// there makes SQLite roll back the whole transaction (sqlite3VdbeHalt:
// IOERR -> sqlite3RollbackAll), so the following put_xattr and StoreAttr run
// in autocommit mode and are committed on their own, although SetXattr then
// fails (RELEASE op: no such savepoint) and reports an error.
TEST_CASE("review: a failed SetXattr is not committed (read fault in GetXattr)") {
  int bad = 0;
  for (int nth = 1; nth <= 40; nth++) {
    TempBase base;
    std::string db = base.path + "/store.db";
    uint64_t ino;
    {
      auto s = OpenStore(db);
      auto f = s->Create(kRootIno, "f", S_IFREG | 0600, 0, 0);
      REQUIRE(f.ok());
      ino = f->ino;
      REQUIRE(s->SetXattr(ino, "user.a", "1", 0).ok());
      REQUIRE(s->Sync(true).ok());
    }
    Status r;
    bool fired;
    {
      auto s = OpenStore(db);
      REQUIRE(s->SetCacheSize(1).ok());
      vfs::InjectFault(vfs::kRead, nth, SQLITE_IOERR_READ, false);
      r = s->SetXattr(ino, "user.b", "2", 0);
      fired = vfs::FaultFired();
      vfs::ClearFault();
      if (!r.ok()) (void)s->Sync(true);
    }
    if (!fired) break;
    auto s = OpenStore(db);
    auto v = s->GetXattr(ino, "user.b");
    if (!r.ok() && v.ok()) {
      bad++;
      UNSCOPED_INFO("nth read " << nth << ": SetXattr failed (" << r.ToString()
                                << ") but user.b is on disk");
    }
  }
  CHECK(bad == 0);
}
