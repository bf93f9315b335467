#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "9p/lock_table.h"
#include "9p/messages.h"

using namespace muscle::p9;

TEST_CASE("byte-range locks: conflicts, splitting, release") {
  LockTable t;
  int s1 = 0, s2 = 0;
  LockOwner a{&s1, 1, "h"}, b{&s2, 2, "h"};
  CHECK(t.Lock(7, kLockRead, 0, 100, a) == kLockSuccess);
  CHECK(t.Lock(7, kLockRead, 50, 100, b) == kLockSuccess);   // readers share
  CHECK(t.Lock(7, kLockWrite, 90, 5, b) == kLockBlocked);    // a reads there
  CHECK(t.Lock(7, kLockWrite, 100, 10, b) == kLockSuccess);  // upgrade own part
  CHECK(t.Test(7, kLockRead, 105, 1, a).type == kLockWrite);
  CHECK(t.Test(7, kLockRead, 105, 1, b).type == kLockUnlock);  // own locks never conflict
  // Unlocking the middle of a range splits it.
  CHECK(t.Lock(7, kLockUnlock, 20, 10, a) == kLockSuccess);
  CHECK(t.Lock(8, kLockWrite, 0, 0, b) == kLockSuccess);  // to EOF on another inode
  CHECK(t.Lock(7, kLockWrite, 20, 10, b) == kLockSuccess);
  CHECK(t.Lock(7, kLockWrite, 10, 1, b) == kLockBlocked);
  // length 0 means "to end of file", including huge offsets.
  CHECK(t.Lock(8, kLockRead, UINT64_MAX - 1, 0, a) == kLockBlocked);
  t.ReleaseSession(&s2);
  CHECK(t.Lock(8, kLockWrite, 0, 0, a) == kLockSuccess);
  t.ReleaseSession(&s1);
  CHECK(t.size() == 0);
  CHECK(t.Lock(1, 9, 0, 0, a) == kLockError);
}

TEST_CASE("locks after a restart: a marker while locks are held, a grace period for reclaims") {
  char dir[] = "/tmp/muscle-locks-XXXXXX";
  REQUIRE(mkdtemp(dir));
  std::string marker = std::string(dir) + "/store.db.locks";
  auto exists = [&] { return access(marker.c_str(), F_OK) == 0; };
  int s1 = 0, s2 = 0;
  LockOwner a{&s1, 1, "h"}, b{&s2, 2, "h"};
  {
    LockTable before;
    CHECK_FALSE(before.SetMarker(marker));  // none: no grace
    CHECK_FALSE(before.InGrace());
    // A reclaim outside a grace period is refused: the range may have
    // been someone else's meanwhile.
    CHECK(before.Lock(7, kLockWrite, 0, 0, a, kLockFlagReclaim, true) == kLockError);
    CHECK(before.Lock(7, kLockWrite, 0, 10, a) == kLockSuccess);
    CHECK(exists());
    CHECK(before.Lock(7, kLockUnlock, 0, 10, a) == kLockSuccess);
    CHECK_FALSE(exists());  // nothing held: a restart needs no grace
    CHECK(before.Lock(7, kLockWrite, 0, 10, a) == kLockSuccess);
    // Shutting down: the sessions' locks go, the marker stays.
    before.KeepMarker();
    before.ReleaseSession(&s1);
    CHECK(before.size() == 0);
    CHECK(exists());
  }
  LockTable after;
  REQUIRE(after.SetMarker(marker));
  after.BeginGrace(std::chrono::seconds(1));
  CHECK(after.InGrace());
  // In grace: only reclaims take locks; a relay hears GRACE (it retries),
  // a plain client BLOCKED (the kernel makes GRACE ENOLCK); unlocks and
  // tests work.
  CHECK(after.Lock(9, kLockRead, 0, 1, b, 0, true) == kLockGrace);
  CHECK(after.Lock(9, kLockRead, 0, 1, b, 0, false) == kLockBlocked);
  CHECK(after.Lock(9, kLockUnlock, 0, 1, b) == kLockSuccess);
  CHECK(after.Lock(7, kLockWrite, 0, 10, a, kLockFlagReclaim, true) == kLockSuccess);
  CHECK(after.Test(7, kLockWrite, 5, 1, b).type == kLockWrite);
  // A reclaim that conflicts with another's reclaim is refused as any lock.
  CHECK(after.Lock(7, kLockRead, 5, 1, b, kLockFlagReclaim, true) == kLockBlocked);
  // A range nobody reclaimed yet may still be: a test there reports a
  // conflict while the grace period lasts (the lock would be refused).
  LockInfo pending = after.Test(9, kLockRead, 100, 20, b);
  CHECK(pending.type == kLockWrite);
  CHECK(pending.start == 100);
  CHECK(pending.length == 20);
  std::this_thread::sleep_for(std::chrono::milliseconds(1050));
  CHECK_FALSE(after.InGrace());
  CHECK(after.Test(9, kLockRead, 100, 20, b).type == kLockUnlock);
  CHECK(after.Lock(9, kLockRead, 0, 1, b, 0, true) == kLockSuccess);
  CHECK(after.Lock(9, kLockRead, 0, 1, b, kLockFlagReclaim, true) == kLockError);
  after.ReleaseSession(&s1);
  after.ReleaseSession(&s2);
  CHECK_FALSE(exists());
  // A grace period nobody used ends with the marker gone, even when no
  // lock request came after it (a shutdown then leaves none).
  {
    LockTable t;
    t.SetMarker(marker);
    REQUIRE(t.Lock(7, kLockWrite, 0, 10, a) == kLockSuccess);
    t.KeepMarker();
    t.ReleaseSession(&s1);
  }
  LockTable unused;
  REQUIRE(unused.SetMarker(marker));
  unused.BeginGrace(std::chrono::milliseconds(100));
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  unused.KeepMarker();
  CHECK_FALSE(exists());
  // --lock-grace 0: no grace, no marker.
  {
    LockTable t;
    t.SetMarker(marker);
    REQUIRE(t.Lock(7, kLockWrite, 0, 10, a) == kLockSuccess);
  }
  REQUIRE(exists());
  LockTable none;
  REQUIRE(none.SetMarker(marker));
  none.BeginGrace(std::chrono::seconds(0));
  CHECK_FALSE(none.InGrace());
  CHECK_FALSE(exists());
  rmdir(dir);
}

TEST_CASE("byte-range locks: a session holds a bounded number of ranges") {
  LockTable t;
  int s1 = 0, s2 = 0;
  LockOwner a{&s1, 1, "h"}, b{&s2, 2, "h"};
  const uint64_t n = LockTable::kMaxRangesPerSession;
  for (uint64_t i = 0; i < n; i++) REQUIRE(t.Lock(i, kLockRead, 0, 1, a) == kLockSuccess);
  // One more range: refused (ENOLCK), and nothing changed.
  CHECK(t.Lock(n, kLockRead, 0, 1, a) == kLockError);
  CHECK(t.size() == n);
  // Growing a range it has is no new range; splitting one by an unlock
  // in its middle is.
  CHECK(t.Lock(0, kLockRead, 0, 100, a) == kLockSuccess);
  CHECK(t.Lock(0, kLockUnlock, 10, 10, a) == kLockError);
  CHECK(t.Test(0, kLockWrite, 15, 1, b).type == kLockRead);  // still locked there
  // Another session has its own bound.
  CHECK(t.Lock(n, kLockRead, 0, 1, b) == kLockSuccess);
  // Giving one back makes room.
  CHECK(t.Lock(1, kLockUnlock, 0, 0, a) == kLockSuccess);
  CHECK(t.Lock(0, kLockUnlock, 10, 10, a) == kLockSuccess);
  CHECK(t.Lock(n + 1, kLockRead, 0, 1, a) == kLockError);
  t.ReleaseSession(&s1);
  CHECK(t.size() == 1);
  CHECK(t.Lock(n + 1, kLockRead, 0, 1, a) == kLockSuccess);
}
