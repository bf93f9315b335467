#include "common/file_lock.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace muscle {

namespace {
Status Err(int e, const std::string& what) { return Status(e, what + ": " + strerror(e)); }
}  // namespace

FileLock::~FileLock() {
  if (remove_) unlink(path_.c_str());
  close(fd_);
}

Result<std::unique_ptr<FileLock>> FileLock::PidFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Err(errno, "open " + path);
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (fcntl(fd, F_SETLK, &fl) != 0) {
    int e = errno;
    close(fd);
    pid_t holder = PidFileHolder(path);
    if (e == EACCES || e == EAGAIN)
      return Status(EBUSY, path + " is held by a running musclefs" +
                               (holder > 0 ? " (pid " + std::to_string(holder) + ")" : std::string()) +
                               ": one server per base directory");
    return Err(e, "lock " + path);
  }
  std::unique_ptr<FileLock> lock(new FileLock(fd, path, true));
  std::string text = std::to_string(getpid()) + "\n";
  if (ftruncate(fd, 0) != 0) return Err(errno, "write " + path);
  ssize_t n = pwrite(fd, text.data(), text.size(), 0);
  if (n != ssize_t(text.size())) return Err(n < 0 ? errno : ENOSPC, "write " + path);
  if (fsync(fd) != 0) return Err(errno, "sync " + path);
  return lock;
}

Result<std::unique_ptr<FileLock>> FileLock::Exclusive(const std::string& path) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Err(errno, "open " + path);
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
    int e = errno;
    close(fd);
    if (e == EACCES || e == EAGAIN) return Status(EBUSY, path + " is locked by another user of the store");
    return Err(e, "lock " + path);
  }
  return std::unique_ptr<FileLock>(new FileLock(fd, path, false));
}

pid_t FileLock::PidFileHolder(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return 0;
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  pid_t holder = 0;
  if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) holder = fl.l_pid;
  // Closing this descriptor would drop a POSIX lock this process holds on
  // the file; only other processes ask, so that is fine.
  close(fd);
  return holder;
}

}  // namespace muscle
