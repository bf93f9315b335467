#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
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
  int s1 = 0, s2 = 0, s3 = 0;
  // a and b: owners on resumable sessions (relays) of identities "ida"
  // and "idb"; p on a plain session.
  LockOwner a{&s1, 1, "h", "ida"}, b{&s2, 2, "h", "idb"}, p{&s3, 3, "h", ""};
  {
    LockTable before;
    CHECK_FALSE(before.SetMarker(marker));  // none: no grace
    CHECK_FALSE(before.InGrace());
    // A reclaim outside a grace period is refused: the range may have
    // been someone else's meanwhile.
    CHECK(before.Lock(7, kLockWrite, 0, 0, a, kLockFlagReclaim, true) == kLockError);
    // A plain client's lock: nobody could come back for it, no marker.
    CHECK(before.Lock(8, kLockWrite, 0, 10, p) == kLockSuccess);
    CHECK_FALSE(exists());
    CHECK(before.Lock(7, kLockWrite, 0, 10, a, 0, true) == kLockSuccess);
    CHECK(exists());
    CHECK(before.Lock(7, kLockUnlock, 0, 10, a, 0, true) == kLockSuccess);
    CHECK_FALSE(exists());  // nothing listed: a restart needs no grace
    CHECK(before.Lock(7, kLockWrite, 0, 10, a, 0, true) == kLockSuccess);
    CHECK(before.Lock(9, kLockRead, 100, 0, b, 0, true) == kLockSuccess);
    // Shutting down: the sessions' locks go, the marker stays, listing them.
    before.KeepMarker();
    before.ReleaseSession(&s1);
    before.ReleaseSession(&s2);
    before.ReleaseSession(&s3);
    CHECK(before.size() == 0);
    CHECK(exists());
  }
  LockTable after;
  REQUIRE(after.SetMarker(marker));
  CHECK(after.ToReclaim() == 2);
  after.BeginGrace(std::chrono::seconds(30));
  CHECK(after.InGrace());
  // In grace: only reclaims take locks; a relay hears GRACE (it retries),
  // a plain client BLOCKED (the kernel makes GRACE ENOLCK); unlocks work.
  CHECK(after.Lock(9, kLockRead, 0, 1, b, 0, true) == kLockGrace);
  CHECK(after.Lock(9, kLockRead, 0, 1, p, 0, false) == kLockBlocked);
  CHECK(after.Lock(9, kLockUnlock, 0, 1, b) == kLockSuccess);
  // A reclaim of another identity's lock, of another owner's, of more
  // than was held, or a write where a read was held: refused.
  LockOwner b_as_a{&s2, 1, "h", "idb"};
  CHECK(after.Lock(7, kLockWrite, 0, 10, b_as_a, kLockFlagReclaim, true) == kLockError);
  LockOwner a_other{&s1, 4, "h", "ida"};
  CHECK(after.Lock(7, kLockWrite, 0, 10, a_other, kLockFlagReclaim, true) == kLockError);
  CHECK(after.Lock(7, kLockWrite, 0, 11, a, kLockFlagReclaim, true) == kLockError);
  CHECK(after.Lock(9, kLockWrite, 100, 0, b, kLockFlagReclaim, true) == kLockError);
  CHECK(after.size() == 0);
  // The owner's own: granted.
  CHECK(after.Lock(7, kLockWrite, 0, 10, a, kLockFlagReclaim, true) == kLockSuccess);
  CHECK(after.ToReclaim() == 1);
  CHECK(after.Test(7, kLockWrite, 5, 1, b).type == kLockWrite);
  // A range nobody reclaimed yet may still be: a test there reports a
  // conflict while the grace period lasts (the lock would be refused).
  LockInfo pending = after.Test(9, kLockRead, 100, 20, p);
  CHECK(pending.type == kLockWrite);
  CHECK(pending.start == 100);
  CHECK(pending.length == 20);
  // Killed now (no shutdown): the next server still lists both, the
  // reclaimed one and the one still to reclaim.
  {
    LockTable again;
    REQUIRE(again.SetMarker(marker));
    CHECK(again.ToReclaim() == 2);
  }
  // The last one reclaimed ends the grace period at once.
  CHECK(after.Lock(9, kLockRead, 100, 0, b, kLockFlagReclaim, true) == kLockSuccess);
  CHECK_FALSE(after.InGrace());
  CHECK(after.Test(9, kLockRead, 0, 20, p).type == kLockUnlock);
  CHECK(after.Lock(9, kLockRead, 0, 1, p) == kLockSuccess);
  CHECK(after.Lock(9, kLockRead, 0, 1, b, kLockFlagReclaim, true) == kLockError);
  after.ReleaseSession(&s1);
  after.ReleaseSession(&s2);
  after.ReleaseSession(&s3);
  CHECK_FALSE(exists());
  // A grace period that runs out: its end, by time.
  {
    LockTable t;
    t.SetMarker(marker);
    REQUIRE(t.Lock(7, kLockWrite, 0, 10, a, 0, true) == kLockSuccess);
  }
  LockTable timed;
  REQUIRE(timed.SetMarker(marker));
  timed.BeginGrace(std::chrono::milliseconds(300));
  CHECK(timed.Lock(7, kLockRead, 0, 1, p) == kLockBlocked);
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  CHECK_FALSE(timed.InGrace());
  CHECK(timed.Lock(7, kLockRead, 0, 1, p) == kLockSuccess);
  timed.ReleaseSession(&s3);
  CHECK_FALSE(exists());
  // A grace period nobody used ends with the marker gone, even when no
  // lock request came after it (a shutdown then leaves none).
  {
    LockTable t;
    t.SetMarker(marker);
    REQUIRE(t.Lock(7, kLockWrite, 0, 10, a, 0, true) == kLockSuccess);
    t.KeepMarker();
    t.ReleaseSession(&s1);
  }
  LockTable unused;
  REQUIRE(unused.SetMarker(marker));
  unused.BeginGrace(std::chrono::milliseconds(100));
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  unused.KeepMarker();
  CHECK_FALSE(exists());
  // An empty marker (an older server's): a grace period, any reclaim.
  { std::ofstream(marker.c_str()); }
  LockTable old;
  REQUIRE(old.SetMarker(marker));
  CHECK(old.ToReclaim() == 0);
  old.BeginGrace(std::chrono::seconds(30));
  CHECK(old.InGrace());
  CHECK(old.Lock(5, kLockWrite, 0, 0, b, kLockFlagReclaim, true) == kLockSuccess);
  old.ReleaseSession(&s2);
  // --lock-grace 0: no grace, no marker.
  {
    LockTable t;
    t.SetMarker(marker);
    REQUIRE(t.Lock(7, kLockWrite, 0, 10, a, 0, true) == kLockSuccess);
  }
  REQUIRE(exists());
  LockTable none;
  REQUIRE(none.SetMarker(marker));
  none.BeginGrace(std::chrono::seconds(0));
  CHECK_FALSE(none.InGrace());
  CHECK_FALSE(exists());
  rmdir(dir);
}

TEST_CASE("locks after a restart: reclaims of split ranges, a shutdown, a damaged list") {
  char dir[] = "/tmp/muscle-locks-XXXXXX";
  REQUIRE(mkdtemp(dir));
  std::string marker = std::string(dir) + "/store.db.locks";
  int s1 = 0, s2 = 0, s3 = 0;
  LockOwner a{&s1, 1, "h", "ida"}, b{&s2, 2, "h", "idb"}, c{&s3, 3, "h", "idc"};
  {
    // Killed while a change was on its way to the relay: the list has the
    // range in pieces (here of mixed types) where the relay has it whole.
    LockTable t;
    t.SetMarker(marker);
    REQUIRE(t.Lock(7, kLockRead, 0, 100, a, 0, true) == kLockSuccess);
    REQUIRE(t.Lock(7, kLockWrite, 40, 20, a, 0, true) == kLockSuccess);
    REQUIRE(t.Lock(8, kLockWrite, 0, 50, b, 0, true) == kLockSuccess);
    REQUIRE(t.Lock(8, kLockWrite, 50, 100, b, 0, true) == kLockSuccess);
    REQUIRE(t.Lock(10, kLockRead, 0, 10, c, 0, true) == kLockSuccess);
    REQUIRE(t.Lock(10, kLockRead, 20, 10, c, 0, true) == kLockSuccess);
    // Too long a client_id is refused.
    LockOwner long_id{&s1, 1, std::string(LockTable::kMaxClientId + 1, 'x'), "ida"};
    CHECK(t.Lock(9, kLockRead, 0, 1, long_id, 0, true) == kLockError);
  }
  {
    LockTable t;
    REQUIRE(t.SetMarker(marker));
    // a: R[0,39] W[40,59] R[60,99]; b: W[0,49] W[50,149]; c: R[0,9] R[20,29]
    CHECK(t.ToReclaim() == 7);
    t.BeginGrace(std::chrono::seconds(30));
    CHECK(t.Lock(7, kLockWrite, 0, 100, a, kLockFlagReclaim, true) == kLockError);  // R in it
    CHECK(t.Lock(7, kLockRead, 0, 101, a, kLockFlagReclaim, true) == kLockError);   // past it
    CHECK(t.Lock(7, kLockRead, 0, 100, a, kLockFlagReclaim, true) == kLockSuccess);
    CHECK(t.Lock(8, kLockWrite, 0, 150, b, kLockFlagReclaim, true) == kLockSuccess);
    CHECK(t.Lock(10, kLockRead, 0, 30, c, kLockFlagReclaim, true) == kLockError);  // a gap
    CHECK(t.Lock(10, kLockRead, 0, 10, c, kLockFlagReclaim, true) == kLockSuccess);
    CHECK(t.Lock(10, kLockRead, 20, 10, c, kLockFlagReclaim, true) == kLockSuccess);
    t.ReleaseSession(&s3);
    // a's write piece [40,59] is left (a read was reclaimed over it).
    CHECK(t.ToReclaim() == 1);
    CHECK(t.InGrace());
    // A reclaim that conflicts with another's is refused as any lock.
    CHECK(t.Lock(8, kLockRead, 0, 1, a, kLockFlagReclaim, true) == kLockBlocked);
    CHECK(t.Lock(7, kLockWrite, 40, 20, a, kLockFlagReclaim, true) == kLockSuccess);
    CHECK_FALSE(t.InGrace());
    // Shutting down: what sessions still lock after it stays listed, and
    // so do the sessions' locks as they end.
    t.KeepMarker();
    CHECK(t.Lock(9, kLockRead, 0, 10, c, 0, true) == kLockSuccess);
    t.ReleaseSession(&s1);
    t.ReleaseSession(&s2);
    t.ReleaseSession(&s3);
  }
  {
    LockTable t;
    REQUIRE(t.SetMarker(marker));
    // a: R[0,39] W[40,59] R[60,99]; b: W[0,149]; c: R[0,9].
    CHECK(t.ToReclaim() == 5);
  }
  // A damaged list: bad numbers and hex are skipped, not misread.
  {
    std::ofstream f(marker.c_str());
    f << "musclefs-locks 1\n"
      << "-7 1 0 9 1 696461 68\n"
      << "7 1 0 9 1 69646 68\n"
      << "7 1 9 0 1 696461 68\n"
      << "7 1 0 9 1 6964zz 68\n"
      << "7 2 0 9 1 696461 68\n"
      << "7 1 0 99999999999999999999 1 696461 68\n"
      << "7 1 0 9\n";
  }
  {
    LockTable t;
    CHECK_FALSE(t.SetMarker(marker));  // nothing usable: no grace, and it goes
    CHECK(access(marker.c_str(), F_OK) != 0);
  }
  // Not a regular file: ignored, not a grace period.
  REQUIRE(mkdir(marker.c_str(), 0700) == 0);
  {
    LockTable t;
    CHECK_FALSE(t.SetMarker(marker));
    CHECK_FALSE(t.InGrace());
  }
  rmdir(marker.c_str());
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
