#include <catch2/catch.hpp>

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
