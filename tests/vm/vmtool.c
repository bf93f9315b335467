/* vmtool: small checks run inside the qemu guest against the 9p mount,
 * for what busybox cannot do: fsync, fcntl locks across processes (and one
 * held by a process until it is killed: holdlock, trylock), xattrs,
 * and reading a file after it was unlinked. Linked statically. Prints
 * "ok" or a reason and exits non-zero on failure. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

static int fail(const char* what) {
  printf("vmtool: %s: %s\n", what, strerror(errno));
  return 1;
}

static int lock(int fd, int cmd, short type, off_t start, off_t len) {
  struct flock fl = {0};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = start;
  fl.l_len = len;
  return fcntl(fd, cmd, &fl);
}

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  const char* cmd = argv[1];
  const char* path = argv[2];
  if (!strcmp(cmd, "fsync")) {
    int fd = open(path, O_RDWR);
    if (fd < 0) return fail("open");
    if (write(fd, "", 0) < 0 || fsync(fd) != 0) return fail("fsync");
    close(fd);
  } else if (!strcmp(cmd, "fcntl")) {
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0) return fail("open");
    if (lock(fd, F_SETLK, F_WRLCK, 0, 100) != 0) return fail("parent lock");
    pid_t pid = fork();
    if (pid == 0) {
      int cfd = open(path, O_RDWR);
      if (lock(cfd, F_SETLK, F_WRLCK, 50, 10) == 0) _exit(10);   /* must conflict */
      if (errno != EAGAIN && errno != EACCES) _exit(11);
      struct flock fl = {0};
      fl.l_type = F_WRLCK; fl.l_whence = SEEK_SET; fl.l_start = 50; fl.l_len = 10;
      if (fcntl(cfd, F_GETLK, &fl) != 0 || fl.l_type == F_UNLCK) _exit(12);
      if (lock(cfd, F_SETLK, F_WRLCK, 200, 10) != 0) _exit(13);  /* no overlap */
      _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      printf("vmtool: fcntl child check %d failed\n", WEXITSTATUS(st));
      return 1;
    }
    if (lock(fd, F_SETLK, F_UNLCK, 0, 0) != 0) return fail("unlock");
    pid = fork();
    if (pid == 0) {
      int cfd = open(path, O_RDWR);
      _exit(lock(cfd, F_SETLK, F_WRLCK, 50, 10) == 0 ? 0 : 14);
    }
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      printf("vmtool: lock after unlock failed\n");
      return 1;
    }
  } else if (!strcmp(cmd, "flock")) {
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0) return fail("open");
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) return fail("uncontended flock");
    pid_t pid = fork();
    if (pid == 0) {
      int cfd = open(path, O_RDWR);
      if (flock(cfd, LOCK_EX | LOCK_NB) == 0) _exit(20);  /* must conflict */
      if (errno != EWOULDBLOCK) _exit(21);
      _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      printf("vmtool: flock child check %d failed\n", WEXITSTATUS(st));
      return 1;
    }
    if (flock(fd, LOCK_UN) != 0) return fail("flock unlock");
    pid = fork();
    if (pid == 0) {
      int cfd = open(path, O_RDWR);
      _exit(flock(cfd, LOCK_EX | LOCK_NB) == 0 ? 0 : 22);
    }
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      printf("vmtool: flock after unlock failed\n");
      return 1;
    }
  } else if (!strcmp(cmd, "setxattr")) {
    if (argc < 5) return 2;
    if (setxattr(path, argv[3], argv[4], strlen(argv[4]), 0) != 0) return fail("setxattr");
  } else if (!strcmp(cmd, "getxattr")) {
    char buf[4096];
    ssize_t n = getxattr(path, argv[3], buf, sizeof buf - 1);
    if (n < 0) return fail("getxattr");
    buf[n] = 0;
    printf("%s\n", buf);
    return 0;
  } else if (!strcmp(cmd, "rmxattr")) {
    if (removexattr(path, argv[3]) != 0) return fail("removexattr");
    char buf[16];
    if (getxattr(path, argv[3], buf, sizeof buf) >= 0 || errno != ENODATA)
      return fail("attribute still there");
  } else if (!strcmp(cmd, "unlinked")) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return fail("create");
    const char msg[] = "still here after unlink";
    if (write(fd, msg, sizeof msg) != (ssize_t)sizeof msg) return fail("write");
    if (unlink(path) != 0) return fail("unlink");
    if (access(path, F_OK) == 0) { printf("vmtool: name still visible\n"); return 1; }
    char buf[64] = {0};
    if (pread(fd, buf, sizeof buf, 0) != (ssize_t)sizeof msg) return fail("read after unlink");
    if (memcmp(buf, msg, sizeof msg)) { printf("vmtool: wrong data after unlink\n"); return 1; }
    if (pwrite(fd, "X", 1, 0) != 1) return fail("write after unlink");
    if (ftruncate(fd, 5) != 0) return fail("ftruncate after unlink");
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size != 5) return fail("fstat after unlink");
    close(fd);
  } else if (!strcmp(cmd, "holdlock")) {
    /* Takes a write lock on the whole file (made and fsynced first), says
     * "held" and keeps it until killed. */
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0) return fail("open");
    if (fsync(fd) != 0) return fail("fsync");
    if (lock(fd, F_SETLK, F_WRLCK, 0, 0) != 0) return fail("lock");
    printf("held\n");
    fflush(stdout);
    for (;;) pause();
  } else if (!strcmp(cmd, "trylock")) {
    /* Exit 0: the write lock was free (taken and given back); 3: someone
     * holds it. */
    int fd = open(path, O_RDWR);
    if (fd < 0) return fail("open");
    if (lock(fd, F_SETLK, F_WRLCK, 0, 0) != 0) {
      if (errno == EAGAIN || errno == EACCES) { printf("held by another\n"); return 3; }
      return fail("lock");
    }
    if (lock(fd, F_SETLK, F_UNLCK, 0, 0) != 0) return fail("unlock");
    close(fd);
  } else {
    return 2;
  }
  printf("ok\n");
  return 0;
}
