// A watchdog on progress, not a deadline: fires when a counter has stood
// still for `limit` ticks in a row while the work it counts is going on.
// The relay ticks one at each keepalive with the restore book's count of
// answered restore steps, so a restore of many fids may take as long as it
// needs while it moves, and one the server stopped answering (its
// transport alive, its 9P not) is noticed after `limit` intervals.
// Threading: none of its own (the relay's loop thread).
#pragma once

#include <cstdint>

namespace muscle::transport {

class StallWatch {
 public:
  explicit StallWatch(int limit) : limit_(limit) {}
  // True when `progress` has not moved for `limit` ticks while `active`
  // (then it starts counting again).
  bool Tick(bool active, uint64_t progress) {
    if (!active || progress != last_) {
      last_ = progress;
      still_ = 0;
      return false;
    }
    if (++still_ < limit_) return false;
    still_ = 0;
    return true;
  }

 private:
  int limit_;
  int still_ = 0;
  uint64_t last_ = 0;
};

}  // namespace muscle::transport
