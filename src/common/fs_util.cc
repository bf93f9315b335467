#include "common/fs_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace muscle {

void MakeDirs(const std::string& dir, mode_t mode) {
  std::string p;
  for (size_t i = 0; i <= dir.size(); i++) {
    if ((i == dir.size() || dir[i] == '/') && !p.empty()) mkdir(p.c_str(), mode);
    if (i < dir.size()) p += dir[i];
  }
}

Result<std::string> ReadOwnerOnlyFile(const std::string& path, const std::string& what,
                                      size_t max_size) {
  int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    if (e == ELOOP) return Status(e, what + " " + path + " is a symlink; name the file itself");
    return Status(e, "cannot read " + what + " " + path + ": " + strerror(e));
  }
  auto fail = [&](Status s) {
    close(fd);
    return s;
  };
  struct stat st;
  if (fstat(fd, &st) != 0) return fail(Status(errno, "cannot stat " + what + " " + path));
  if (!S_ISREG(st.st_mode)) return fail(Status(EINVAL, what + " " + path + " is not a regular file"));
  if (st.st_uid != geteuid())
    return fail(Status(EPERM, what + " " + path + " is owned by uid " + std::to_string(st.st_uid) +
                                  ", not by this user (uid " + std::to_string(geteuid()) +
                                  "); fix it with: chown " + std::to_string(geteuid()) + " " + path));
  if (st.st_mode & 077) {
    char b[8];
    snprintf(b, sizeof b, "%04o", unsigned(st.st_mode & 07777));
    return fail(Status(EPERM, what + " " + path + " is open to group or others (mode " + b +
                                  "); fix it with: chmod 600 " + path));
  }
  if (uint64_t(st.st_size) > max_size)
    return fail(Status(EFBIG, what + " " + path + " is too large"));
  std::string text;
  text.reserve(max_size + 1);  // never reallocated below: no stray copy
  text.resize(max_size + 1);
  size_t got = 0;
  while (got < text.size()) {
    ssize_t n = read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      explicit_bzero(text.data(), text.size());
      return fail(Status(e, "cannot read " + what + " " + path));
    }
    if (n == 0) break;
    got += size_t(n);
  }
  close(fd);
  if (got > max_size) {
    explicit_bzero(text.data(), text.size());
    return Status(EFBIG, what + " " + path + " is too large");
  }
  text.resize(got);  // shrinking keeps the buffer
  return text;
}

}  // namespace muscle
