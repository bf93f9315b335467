#include "transport/stall_watch.h"

#include <catch2/catch.hpp>

using muscle::transport::StallWatch;

TEST_CASE("stall watch: fires after the limit of still ticks while active, never while moving") {
  StallWatch w(3);
  // A long restore that moves at every tick never fires.
  for (uint64_t p = 1; p <= 100; p++) CHECK_FALSE(w.Tick(true, p));
  // Standing still: the third still tick fires, then it counts again.
  CHECK_FALSE(w.Tick(true, 100));
  CHECK_FALSE(w.Tick(true, 100));
  CHECK(w.Tick(true, 100));
  CHECK_FALSE(w.Tick(true, 100));
  CHECK_FALSE(w.Tick(true, 100));
  CHECK(w.Tick(true, 100));
  // Inactive (no restore, or the connection is down): never, and the
  // count starts over.
  CHECK_FALSE(w.Tick(true, 100));
  CHECK_FALSE(w.Tick(false, 100));
  CHECK_FALSE(w.Tick(true, 100));
  CHECK_FALSE(w.Tick(true, 100));
  CHECK(w.Tick(true, 100));
  // One step of progress resets it.
  CHECK_FALSE(w.Tick(true, 100));
  CHECK_FALSE(w.Tick(true, 101));
  CHECK_FALSE(w.Tick(true, 101));
  CHECK_FALSE(w.Tick(true, 101));
  CHECK(w.Tick(true, 101));
}
