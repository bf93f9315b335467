// Disk space: the reserve file released when the disk fills (so that the
// commit that deletes files still completes), the room left for the
// database, and low-space mode, in which operations that add data answer
// ENOSPC before anything is acknowledged (see store.h, "Disk full").
#include "store/store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/log.h"
#include "store/snapshot_internal.h"
#include "store/statements.h"
#include "store/vfs.h"

namespace muscle::store {

namespace {

// Free space kept beyond what buffered writes will need before writes are
// refused (low-space mode starts), and twice this to leave it again.
constexpr uint64_t kSpaceSlack = 4u << 20;

uint64_t AvailBytes(const std::string& path) {
  struct statvfs v;
  if (statvfs(path.c_str(), &v) != 0) return UINT64_MAX;
  return uint64_t(v.f_bavail) * v.f_frsize;
}

std::string DirOf(const std::string& path) {
  std::string dir = path.substr(0, path.rfind('/') + 1);
  return dir.empty() ? "." : dir;
}


}  // namespace

void Store::EnsureReserve() {
  if (memory_) return;
  struct statvfs v;
  std::string dir = path_.substr(0, path_.rfind('/') + 1);
  if (dir.empty()) dir = ".";
  if (statvfs(dir.c_str(), &v) != 0) return;
  uint64_t want = std::min<uint64_t>(reserve_limit, uint64_t(v.f_blocks) * v.f_frsize / 32);
  struct stat st;
  if (stat(reserve_path_.c_str(), &st) == 0 && uint64_t(st.st_size) >= want) return;
  if (uint64_t(v.f_bavail) * v.f_frsize < want + kSpaceSlack) return;
  int fd = open(reserve_path_.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return;
  if (posix_fallocate(fd, 0, off_t(want)) != 0) unlink(reserve_path_.c_str());
  close(fd);
}

bool Store::ReleaseReserve() {
  struct stat st;
  if (stat(reserve_path_.c_str(), &st) != 0 || unlink(reserve_path_.c_str()) != 0)
    return false;
  if (!low_space_)
    Log("store: disk full (ENOSPC) under %s: released the %lld KiB reserve so that "
        "deletes complete; writes get ENOSPC until space returns",
        path_.c_str(), (long long)(st.st_size >> 10));
  low_space_ = true;
  return true;
}

uint64_t Store::Room() {
  uint64_t room = AvailBytes(DirOf(path_));
  // Pages freed by deletes are reused by the database before it grows.
  Stmt q(db_, "SELECT freelist_count * page_size FROM pragma_freelist_count, pragma_page_size");
  if (q.Step()) room += uint64_t(q.Int(0));
  return room;
}

Status Store::CheckSpace(size_t adding) {
  // Replayed changes were accepted once: taken whatever the space.
  if (memory_ || replaying_) return Status::Ok();
  if (low_space_) return Status(ENOSPC);
  written_since_statvfs_ += adding;
  auto now = std::chrono::steady_clock::now();
  if (written_since_statvfs_ >= (1u << 20) || now - statvfs_at_ >= std::chrono::milliseconds(100)) {
    avail_bytes_ = Room();
    written_since_statvfs_ = 0;
    statvfs_at_ = now;
  }
  if (avail_bytes_ >= 2 * (uint64_t(dirty_bytes_) + adding) + kSpaceSlack) return Status::Ok();
  low_space_ = true;
  Log("store: disk nearly full under %s (%llu KiB free): writes get ENOSPC until "
      "space returns; deletes still work", path_.c_str(),
      (unsigned long long)(avail_bytes_ >> 10));
  return Status(ENOSPC);
}

void Store::RecheckSpace() {
  if (low_space_ && !memory_) {
    auto now = std::chrono::steady_clock::now();
    if (now - statvfs_at_ >= space_check_interval) {
      statvfs_at_ = now;
      EnsureReserve();
      avail_bytes_ = Room();
      if (avail_bytes_ >= 2 * kSpaceSlack) {
        low_space_ = false;
        Log("store: space available again under %s (%llu KiB free); writes accepted",
            path_.c_str(), (unsigned long long)(avail_bytes_ >> 10));
      }
    }
  }
}

}  // namespace muscle::store
