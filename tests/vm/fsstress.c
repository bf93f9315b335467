/* fsstress: NPROC processes doing random namespace and data operations in
 * one tree at once. Failures that races explain (ENOENT, EEXIST, ENOTEMPTY,
 * EISDIR, ENOTDIR, EINVAL for a directory moved below itself, EBUSY, EPERM
 * for a hard link to a directory, ELOOP) are
 * fine; any other (EIO, ESTALE, EPROTO...) fails the run. Then every entry
 * left is stat'ed and every file read through.
 *   fsstress DIR NPROC OPS SEED */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned long long rng;
static unsigned long rnd(void) {
  rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
  return (unsigned long)(rng >> 11);
}
static int benign(int e) {
  return e == ENOENT || e == EEXIST || e == ENOTEMPTY || e == EISDIR || e == ENOTDIR ||
         e == EINVAL || e == EBUSY || e == EPERM || e == ELOOP;
}
static const char* dir;
static void name(char* out, size_t n) {
  /* d0..d3 / (d0..d3 /) f0..f7: few names, many collisions. */
  int depth = rnd() % 3;
  int len = snprintf(out, n, "%s", dir);
  for (int i = 0; i < depth; i++) len += snprintf(out + len, n - len, "/d%lu", rnd() % 4);
  if (rnd() % 3) snprintf(out + len, n - len, "/f%lu", rnd() % 8);
  else snprintf(out + len, n - len, "/d%lu", rnd() % 4);
}
#define TRY(call, what)                                                                    \
  do {                                                                                     \
    if ((call) < 0 && !benign(errno)) {                                                    \
      printf("fsstress: %s %s: errno %d (%s)\n", what, a, errno, strerror(errno));          \
      exit(1);                                                                             \
    }                                                                                      \
  } while (0)

static void child(int id, long ops) {
  static char data[65536];
  char a[512], b[512];
  for (long op = 0; op < ops; op++) {
    name(a, sizeof a);
    name(b, sizeof b);
    switch (rnd() % 12) {
      case 0: case 1: {
        int fd = open(a, O_WRONLY | O_CREAT | O_APPEND, 0644);
        TRY(fd, "create");
        if (fd >= 0) {
          size_t n = 1 + rnd() % sizeof data;
          memset(data, 'a' + id, n);
          TRY(write(fd, data, n), "write");
          if (rnd() % 8 == 0) TRY(fsync(fd), "fsync");
          close(fd);
        }
        break;
      }
      case 2: TRY(mkdir(a, 0755), "mkdir"); break;
      case 3: TRY(rmdir(a), "rmdir"); break;
      case 4: TRY(unlink(a), "unlink"); break;
      case 5: case 6: TRY(rename(a, b), "rename"); break;
      case 7: TRY(link(a, b), "link"); break;
      case 8: TRY(symlink("target", a), "symlink"); break;
      case 9: TRY(truncate(a, rnd() % 100000), "truncate"); break;
      case 10: {
        int fd = open(a, O_RDONLY);
        TRY(fd, "open");
        if (fd >= 0) {
          while (read(fd, data, sizeof data) > 0) {}
          close(fd);
        }
        break;
      }
      default: {
        DIR* d = opendir(a);
        if (!d) TRY(-1, "opendir");
        else {
          while (readdir(d)) {}
          closedir(d);
        }
        struct stat st;
        TRY(lstat(a, &st), "stat");
      }
    }
  }
  exit(0);
}

static int visit(const char* p, const struct stat* st, int type, struct FTW* f) {
  (void)f;
  if (type == FTW_NS) { printf("fsstress: cannot stat %s: %s\n", p, strerror(errno)); exit(1); }
  if (S_ISREG(st->st_mode)) {
    int fd = open(p, O_RDONLY);
    if (fd < 0) { printf("fsstress: cannot open %s: %s\n", p, strerror(errno)); exit(1); }
    char buf[65536];
    long total = 0, n;
    while ((n = read(fd, buf, sizeof buf)) > 0) total += n;
    if (n < 0 || total != st->st_size) { printf("fsstress: read %s: %ld of %ld\n", p, total, (long)st->st_size); exit(1); }
    close(fd);
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 5) { fprintf(stderr, "usage: fsstress DIR NPROC OPS SEED\n"); return 2; }
  dir = argv[1];
  int nproc = atoi(argv[2]);
  long ops = atol(argv[3]);
  mkdir(dir, 0755);
  for (int i = 0; i < nproc; i++) {
    pid_t p = fork();
    if (p == 0) {
      rng = (strtoull(argv[4], 0, 10) + i) * 2654435761ULL + 1;
      child(i, ops);
    }
  }
  int failed = 0, st;
  while (wait(&st) > 0) failed |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
  if (failed) { printf("fsstress: a worker failed\n"); return 1; }
  if (nftw(dir, visit, 16, FTW_PHYS) != 0) return 1;
  printf("fsstress: %d processes x %ld operations ok\n", nproc, ops);
  return 0;
}
