/* fsx: random writes, reads, truncates and reopens of one file through the
 * mount, every result checked against a model of the file kept in memory.
 * The first mismatch prints the last operations and exits 1.
 *   fsx FILE OPS SEED */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAXLEN (1 << 20)
static unsigned char model[MAXLEN], buf[MAXLEN];
static long size;
static char history[32][96];
static int nhist;
static unsigned long long rng;

static unsigned long rnd(void) {
  rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
  return (unsigned long)(rng >> 11);
}
static void note(const char* s) { snprintf(history[nhist++ % 32], 96, "%s", s); }
static void die(const char* what, long op) {
  printf("fsx: FAILED at op %ld: %s (errno %d %s)\nlast operations:\n", op, what, errno, strerror(errno));
  for (int i = nhist > 32 ? nhist - 32 : 0; i < nhist; i++) printf("  %s\n", history[i % 32]);
  exit(1);
}

int main(int argc, char** argv) {
  if (argc != 4) { fprintf(stderr, "usage: fsx FILE OPS SEED\n"); return 2; }
  long ops = atol(argv[2]);
  rng = strtoull(argv[3], 0, 10) * 2654435761ULL + 1;
  int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) die("open", 0);
  char line[96];
  for (long op = 1; op <= ops; op++) {
    unsigned long r = rnd() % 100;
    if (r < 40) {  /* write */
      long off = rnd() % (MAXLEN - 1), len = 1 + rnd() % 65536;
      if (off + len > MAXLEN) len = MAXLEN - off;
      for (long i = 0; i < len; i++) buf[i] = (unsigned char)(op * 31 + i * 7);
      snprintf(line, sizeof line, "%ld write %ld+%ld", op, off, len); note(line);
      if (pwrite(fd, buf, len, off) != len) die("pwrite", op);
      if (off > size) memset(model + size, 0, off - size);
      memcpy(model + off, buf, len);
      if (off + len > size) size = off + len;
    } else if (r < 75) {  /* read */
      long off = rnd() % (size + 1), len = 1 + rnd() % 65536;
      snprintf(line, sizeof line, "%ld read %ld+%ld (size %ld)", op, off, len, size); note(line);
      long want = off >= size ? 0 : (off + len > size ? size - off : len);
      long got = pread(fd, buf, len, off);
      if (got != want) die("short or long read", op);
      if (memcmp(buf, model + off, want) != 0) {
        for (long i = 0; i < want; i++)
          if (buf[i] != model[off + i]) { printf("fsx: byte %ld: got %u want %u\n", off + i, buf[i], model[off + i]); break; }
        die("data differs from the model", op);
      }
    } else if (r < 88) {  /* truncate */
      long to = rnd() % MAXLEN;
      snprintf(line, sizeof line, "%ld truncate %ld (was %ld)", op, to, size); note(line);
      if (ftruncate(fd, to) != 0) die("ftruncate", op);
      if (to > size) memset(model + size, 0, to - size);
      size = to;
    } else if (r < 94) {  /* size */
      off_t end = lseek(fd, 0, SEEK_END);
      snprintf(line, sizeof line, "%ld size check %ld", op, size); note(line);
      if (end != size) die("file size differs from the model", op);
    } else if (r < 97) {  /* reopen */
      note("reopen");
      if (close(fd) != 0) die("close", op);
      fd = open(argv[1], O_RDWR);
      if (fd < 0) die("reopen", op);
    } else {
      note("fsync");
      if (fsync(fd) != 0) die("fsync", op);
    }
  }
  /* Finally the whole file, after a reopen. */
  if (close(fd) != 0) die("close", ops);
  fd = open(argv[1], O_RDONLY);
  if (fd < 0) die("open for the final check", ops);
  if (pread(fd, buf, MAXLEN, 0) != size || memcmp(buf, model, size) != 0) die("final contents differ", ops);
  close(fd);
  printf("fsx: %ld operations ok, final size %ld\n", ops, size);
  return 0;
}
