// muscle9p: a tiny command-line 9P2000.L client for scripts and debugging.
//   muscle9p ENDPOINT ls PATH | cat PATH | put PATH (stdin) | mkdir PATH |
//            rm PATH | stat PATH
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <iterator>

#include "9p/client.h"

using namespace muscle;
using namespace muscle::p9;

static int Fail(const std::string& what, const Status& s) {
  fprintf(stderr, "muscle9p: %s: %s\n", what.c_str(), s.ToString().c_str());
  return 1;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: muscle9p ENDPOINT ls|cat|put|mkdir|rm|stat PATH\n");
    return 2;
  }
  std::string ep = argv[1], cmd = argv[2], path = argv[3];
  Client c;
  Status s = c.Connect(ep);
  if (!s.ok()) return Fail("connect " + ep, s);
  if (!(s = c.Version()).ok()) return Fail("version", s);
  if (auto a = c.Attach(0); !a.ok()) return Fail("attach", a.status());
  std::string dir = path.rfind('/') == std::string::npos ? "" : path.substr(0, path.rfind('/'));
  std::string base = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
  if (cmd == "ls" || cmd == "cat" || cmd == "stat") {
    if (!(s = c.WalkPath(0, 1, path)).ok()) return Fail(path, s);
    if (cmd == "stat") {
      auto a = c.GetAttr(1);
      if (!a.ok()) return Fail(path, a.status());
      printf("ino %llu mode %o size %llu nlink %llu uid %u gid %u\n",
             (unsigned long long)a->qid.path, a->mode, (unsigned long long)a->size,
             (unsigned long long)a->nlink, a->uid, a->gid);
      return 0;
    }
    if (auto o = c.Open(1, O_RDONLY); !o.ok()) return Fail(path, o.status());
    if (cmd == "ls") {
      auto names = c.ReadDirNames(1);
      if (!names.ok()) return Fail(path, names.status());
      for (auto& n : *names) printf("%s\n", n.c_str());
      return 0;
    }
    uint64_t off = 0;
    for (;;) {
      auto d = c.Read(1, off, c.msize() - 24);
      if (!d.ok()) return Fail(path, d.status());
      if (d->empty()) return 0;
      fwrite(d->data(), 1, d->size(), stdout);
      off += d->size();
    }
  }
  if (!(s = c.WalkPath(0, 1, dir)).ok()) return Fail(dir, s);
  if (cmd == "mkdir") {
    auto q = c.Mkdir(1, base, 0755);
    return q.ok() ? 0 : Fail(path, q.status());
  }
  if (cmd == "rm") {
    s = c.Unlink(1, base);
    if (s.err() == EISDIR) s = c.Unlink(1, base, 0x200);
    return s.ok() ? 0 : Fail(path, s);
  }
  if (cmd == "put") {
    std::string data((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    if (auto q = c.Create(1, base, O_RDWR | O_TRUNC, 0644); !q.ok()) {
      if (q.err() != EEXIST) return Fail(path, q.status());
      c.Clunk(1);
      if (!(s = c.WalkPath(0, 1, path)).ok()) return Fail(path, s);
      if (auto o = c.Open(1, O_RDWR | O_TRUNC); !o.ok()) return Fail(path, o.status());
    }
    if (!(s = c.WriteAll(1, data)).ok()) return Fail(path, s);
    if (!(s = c.Fsync(1)).ok()) return Fail(path, s);
    return 0;
  }
  fprintf(stderr, "muscle9p: unknown command %s\n", cmd.c_str());
  return 2;
}
