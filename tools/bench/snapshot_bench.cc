// snapshot_bench: the store-level snapshot figures of issue 12, on a store
// on disk in a temporary directory (or --dir DIR).
//   1. a tree of --files files (in directories of 1,000): the first
//      snapshot, a snapshot of the unchanged tree, and one after 10 files
//      in different directories changed: time and tree objects added;
//   2. --growth: a --tree-bytes tree of 16 MiB files; --rounds snapshots,
//      each after rewriting 1% of the bytes (1 MiB ranges at random
//      places): the store's size on disk against the data written.
// Wall-clock figures for the results file, never a test.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "store/store.h"

using namespace muscle;
using namespace muscle::store;
using Clock = std::chrono::steady_clock;

namespace {

double Ms(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

uint64_t DiskBytes(const std::string& dir) {
  uint64_t total = 0;
  std::vector<std::string> todo{dir};
  while (!todo.empty()) {
    std::string d = todo.back();
    todo.pop_back();
    DIR* h = opendir(d.c_str());
    if (!h) continue;
    while (dirent* e = readdir(h)) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      std::string p = d + "/" + e->d_name;
      struct stat st;
      if (lstat(p.c_str(), &st) != 0) continue;
      if (S_ISDIR(st.st_mode)) todo.push_back(p);
      else if (std::string(e->d_name).find("reserve") == std::string::npos)
        total += uint64_t(st.st_blocks) * 512;
    }
    closedir(h);
  }
  return total;
}

std::string Random(size_t n, std::mt19937_64& rng) {
  std::string s(n, '\0');
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    memcpy(s.data() + i, &v, 8);
  }
  return s;
}

void Die(const std::string& what, const Status& s) {
  fprintf(stderr, "snapshot_bench: %s: %s\n", what.c_str(), s.ToString().c_str());
  exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  int files = 100000, rounds = 100;
  uint64_t tree_bytes = 1ull << 30;
  bool growth = false;
  std::string dir;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&]() { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--files") files = atoi(next().c_str());
    else if (a == "--rounds") rounds = atoi(next().c_str());
    else if (a == "--tree-bytes") tree_bytes = strtoull(next().c_str(), nullptr, 10);
    else if (a == "--growth") growth = true;
    else if (a == "--dir") dir = next();
    else {
      fprintf(stderr, "usage: snapshot_bench [--files N] [--growth [--tree-bytes B] [--rounds N]] [--dir DIR]\n");
      return 2;
    }
  }
  if (dir.empty()) {
    char tmpl[] = "/tmp/snapshot-bench-XXXXXX";
    dir = mkdtemp(tmpl);
  }
  std::mt19937_64 rng(42);
  if (!growth) {
    auto so = Store::Open(dir + "/store.db");
    if (!so.ok()) Die("open", so.status());
    Store& s = **so;
    auto t0 = Clock::now();
    std::vector<uint64_t> dirs;
    std::vector<uint64_t> inos;
    for (int i = 0; i < files; i++) {
      if (i % 1000 == 0) {
        auto d = s.Create(kRootIno, "d" + std::to_string(i / 1000), S_IFDIR | 0755, 0, 0);
        if (!d.ok()) Die("mkdir", d.status());
        dirs.push_back(d->ino);
      }
      auto f = s.Create(dirs.back(), "f" + std::to_string(i), S_IFREG | 0644, 0, 0);
      if (!f.ok()) Die("create", f.status());
      Status w = s.Write(f->ino, 0, "file " + std::to_string(i) + "\n").status();
      if (!w.ok()) Die("write", w);
      inos.push_back(f->ino);
    }
    if (Status st = s.Sync(true); !st.ok()) Die("sync", st);
    printf("tree: %d files in %zu directories, made in %.1f s\n", files, dirs.size(), Ms(t0) / 1000);
    auto count = [&]() {
      auto r = s.Check();  // (not timed)
      return r.objects;
    };
    t0 = Clock::now();
    auto a = s.TakeSnapshot("first");
    double first = Ms(t0);
    if (!a.ok()) Die("snapshot", a.status());
    uint64_t objects = count();
    printf("first snapshot: %.1f ms, %llu tree objects\n", first, (unsigned long long)objects);
    for (int r = 0; r < 3; r++) {
      t0 = Clock::now();
      auto b = s.TakeSnapshot();
      double same = Ms(t0);
      if (!b.ok()) Die("snapshot", b.status());
      uint64_t now = count();
      printf("unchanged tree: %.2f ms, %lld objects added, same root: %s\n", same,
             (long long)(now - objects), b->root == a->root ? "yes" : "no");
      objects = now;
    }
    for (int r = 0; r < 3; r++) {
      for (int k = 0; k < 10; k++) {
        uint64_t ino = inos[size_t(k) * (inos.size() / 10) + size_t(r) * 7];
        if (!s.Write(ino, 0, "changed " + std::to_string(r) + " " + std::to_string(k) + "\n").ok()) Die("write", Status(EIO));
      }
      if (Status st = s.Sync(true); !st.ok()) Die("sync", st);
      t0 = Clock::now();
      auto c = s.TakeSnapshot();
      double changed = Ms(t0);
      if (!c.ok()) Die("snapshot", c.status());
      uint64_t now = count();
      printf("10 files changed (in 10 directories): %.1f ms, %lld objects added\n", changed,
             (long long)(now - objects));
      objects = now;
    }
    return 0;
  }
  // Growth.
  auto so = Store::Open(dir + "/store.db");
  if (!so.ok()) Die("open", so.status());
  Store& s = **so;
  const uint64_t file_size = 16u << 20;
  int nfiles = int(tree_bytes / file_size);
  std::vector<uint64_t> inos;
  auto t0 = Clock::now();
  for (int i = 0; i < nfiles; i++) {
    auto f = s.Create(kRootIno, "f" + std::to_string(i), S_IFREG | 0644, 0, 0);
    if (!f.ok()) Die("create", f.status());
    for (uint64_t off = 0; off < file_size; off += 1 << 20)
      if (!s.Write(f->ino, off, Random(1 << 20, rng)).ok()) Die("write", Status(EIO));
    inos.push_back(f->ino);
  }
  if (Status st = s.Sync(true); !st.ok()) Die("sync", st);
  uint64_t base_disk = DiskBytes(dir);
  printf("tree: %d files x 16 MiB = %llu MiB, written in %.1f s; store on disk %llu MiB\n", nfiles,
         (unsigned long long)(tree_bytes >> 20), Ms(t0) / 1000, (unsigned long long)(base_disk >> 20));
  uint64_t changed_total = 0;
  double snap_ms_total = 0, snap_ms_max = 0;
  uint64_t per_round = tree_bytes / 100;  // 1%
  for (int r = 0; r < rounds; r++) {
    for (uint64_t done = 0; done < per_round; done += 1 << 20) {
      uint64_t ino = inos[rng() % inos.size()];
      uint64_t off = (rng() % (file_size >> 20)) << 20;
      if (!s.Write(ino, off, Random(1 << 20, rng)).ok()) Die("write", Status(EIO));
      changed_total += 1 << 20;
    }
    t0 = Clock::now();
    auto snap = s.TakeSnapshot();
    double ms = Ms(t0);
    if (!snap.ok()) Die("snapshot", snap.status());
    snap_ms_total += ms;
    snap_ms_max = std::max(snap_ms_max, ms);
  }
  uint64_t disk = DiskBytes(dir);
  auto check = s.Check();
  printf("%d snapshots, each after rewriting 1%% (%llu MiB) of the tree: %llu MiB rewritten in all\n",
         rounds, (unsigned long long)(per_round >> 20), (unsigned long long)(changed_total >> 20));
  printf("store on disk: %llu MiB (tree alone: %llu MiB); growth %llu MiB = %.2fx the rewritten bytes\n",
         (unsigned long long)(disk >> 20), (unsigned long long)(base_disk >> 20),
         (unsigned long long)((disk - base_disk) >> 20), double(disk - base_disk) / double(changed_total));
  printf("chunks %llu (%llu MiB), tree objects %llu; snapshot time mean %.1f ms, max %.1f ms; check %s\n",
         (unsigned long long)check.chunks, (unsigned long long)(check.chunk_bytes >> 20),
         (unsigned long long)check.objects, snap_ms_total / rounds, snap_ms_max,
         check.ok() ? "ok" : "FAILED");
  printf("without sharing, %d copies of the tree would take %llu GiB\n", rounds + 1,
         (unsigned long long)((tree_bytes >> 30) * uint64_t(rounds + 1)));
  return check.ok() ? 0 : 1;
}
