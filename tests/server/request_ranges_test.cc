// Peer-provided numbers and names at the edges of their ranges: Tsetattr
// times that do not fit the store's nanoseconds, xattr names with NUL
// bytes, Treaddir offsets past any cookie, symlink targets with NUL bytes,
// and every field of every request at the edges of its type.
#include <fcntl.h>
#include <sys/stat.h>

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <type_traits>

#include "9p/client.h"
#include "server/store_filesystem.h"
#include "store/store.h"
#include "tests/server/server_harness.h"

using namespace muscle;
using namespace muscle::p9;
using namespace muscle::test;

namespace {

Tsetattr Times(uint32_t fid, uint64_t sec, uint64_t nsec) {
  Tsetattr t;
  t.fid = fid;
  t.valid = kSetAtime | kSetAtimeSet | kSetMtime | kSetMtimeSet;
  t.atime_sec = t.mtime_sec = sec;
  t.atime_nsec = t.mtime_nsec = nsec;
  return t;
}

}  // namespace

TEST_CASE("Tsetattr: times beyond the store's range are refused, not wrapped") {
  TempDir dir;
  InProcessServer srv(":memory:", dir.path);
  Client c;
  Connect(c, srv.unix_endpoint());
  MakeFile(c, "f");
  REQUIRE(c.WalkPath(0, 1, "f").ok());
  REQUIRE(c.Rpc(Times(1, 1700000000, 123456789)).ok());
  const uint64_t kBig = uint64_t(1) << 62;
  // 2^62 s (UBSan: signed overflow), the first second past int64 ns, a
  // negative second just below its range, and nanoseconds of 10^9 or more.
  for (auto [sec, nsec] : {std::pair<uint64_t, uint64_t>{kBig, 0},
                           {9223372037, 0},
                           {9223372036, 854775808},
                           {uint64_t(-9223372037), 0},
                           {uint64_t(INT64_MIN), 0},
                           {5, 1000000000},
                           {5, std::numeric_limits<uint64_t>::max()}}) {
    INFO(sec << " s " << nsec << " ns");
    CHECK(c.Rpc(Times(1, sec, nsec)).err() == EINVAL);
    Tsetattr only_m = Times(1, sec, nsec);
    only_m.valid = kSetMtime | kSetMtimeSet;
    CHECK(c.Rpc(only_m).err() == EINVAL);
  }
  // A refused request changes nothing.
  auto a = c.GetAttr(1);
  REQUIRE(a.ok());
  CHECK(a->mtime_sec == 1700000000);
  CHECK(a->mtime_nsec == 123456789);
  CHECK(a->atime_sec == 1700000000);
  // The extremes that fit, and times before 1970 (the Linux client sends
  // the signed tv_sec as u64), come back as given.
  for (auto [sec, nsec] : {std::pair<uint64_t, uint64_t>{9223372036, 854775807},
                           {uint64_t(-2), 500000000},
                           {uint64_t(-1), 999999999},
                           {uint64_t(-9223372036), 0},
                           {0, 0}}) {
    INFO(sec << " s " << nsec << " ns");
    REQUIRE(c.Rpc(Times(1, sec, nsec)).ok());
    auto b = c.GetAttr(1);
    REQUIRE(b.ok());
    CHECK(b->mtime_sec == sec);
    CHECK(b->mtime_nsec == nsec);
    CHECK(b->atime_sec == sec);
    CHECK(b->atime_nsec == nsec);
  }
}

TEST_CASE("xattr names with a NUL byte are refused") {
  TempDir dir;
  InProcessServer srv(":memory:", dir.path);
  Client c;
  Connect(c, srv.unix_endpoint());
  MakeFile(c, "f");
  const std::string bad("user.a\0b", 8);
  REQUIRE(c.WalkPath(0, 1, "f").ok());
  REQUIRE(c.Rpc(Txattrcreate{1, bad, 1, 0}).ok());
  REQUIRE(c.Write(1, 0, "x").ok());
  CHECK(c.Clunk(1).err() == EINVAL);
  REQUIRE(c.WalkPath(0, 1, "f").ok());
  CHECK(c.Rpc(Txattrwalk{1, 2, bad}).err() == EINVAL);
  // Nothing was stored: the name list is empty, and a good name still works.
  REQUIRE(c.Rpc(Txattrwalk{1, 2, ""}).ok());
  CHECK(*c.Read(2, 0, 100) == "");
  REQUIRE(c.Clunk(2).ok());
  REQUIRE(c.Rpc(Txattrcreate{1, "user.a", 1, 0}).ok());
  REQUIRE(c.Write(1, 0, "x").ok());
  REQUIRE(c.Clunk(1).ok());
  REQUIRE(c.WalkPath(0, 1, "f").ok());
  REQUIRE(c.Rpc(Txattrwalk{1, 2, ""}).ok());
  CHECK(*c.Read(2, 0, 100) == std::string("user.a\0", 7));
}

TEST_CASE("Treaddir: an offset past every cookie is the end of the directory") {
  TempDir dir;
  InProcessServer srv(":memory:", dir.path);
  Client c;
  Connect(c, srv.unix_endpoint());
  for (int i = 0; i < 5; i++) MakeFile(c, "f" + std::to_string(i));
  REQUIRE(c.Walk(0, 1, {}).ok());
  REQUIRE(c.Open(1, O_RDONLY).ok());
  auto all = c.ReadDirPage(1, 0, 8192);
  REQUIRE(all.ok());
  CHECK(all->names.size() == 7);
  auto end = c.ReadDirPage(1, all->next_offset, 8192);
  REQUIRE(end.ok());
  CHECK(end->names.empty());
  const uint64_t k63 = uint64_t(1) << 63;
  for (uint64_t off : {std::numeric_limits<uint64_t>::max(), k63 + 2, k63 + 1, k63,
                       k63 - 1, k63 + 3, std::numeric_limits<uint64_t>::max() - 2}) {
    INFO(off);
    auto p = c.ReadDirPage(1, off, 8192);
    REQUIRE(p.ok());
    CHECK(p->names.empty());
  }
  // A count too small for the next entry is an error, not the end.
  CHECK(c.ReadDirPage(1, 0, 20).err() == EINVAL);
  auto first = c.ReadDirPage(1, 0, 30);  // "." only
  REQUIRE(first.ok());
  REQUIRE(first->names == std::vector<std::string>{"."});
  MakeFile(c, std::string(200, 'n'));
  std::set<std::string> names;
  uint64_t off = 0;
  for (int i = 0; i < 20; i++) {
    auto p = c.ReadDirPage(1, off, 100);
    if (!p.ok()) {
      CHECK(p.err() == EINVAL);  // at the long name
      break;
    }
    REQUIRE(!p->names.empty());  // never a premature end
    names.insert(p->names.begin(), p->names.end());
    off = p->next_offset;
  }
  CHECK(names.size() == 7);
  auto rest = c.ReadDirPage(1, off, 300);
  REQUIRE(rest.ok());
  CHECK(rest->names == std::vector<std::string>{std::string(200, 'n')});
  // Still a directory check for files.
  REQUIRE(c.WalkPath(0, 2, "f0").ok());
  REQUIRE(c.Open(2, O_RDONLY).ok());
  CHECK(c.ReadDirPage(2, std::numeric_limits<uint64_t>::max(), 8192).err() == ENOTDIR);
}

TEST_CASE("symlink targets with a NUL byte are refused") {
  TempDir dir;
  InProcessServer srv(":memory:", dir.path);
  Client c;
  Connect(c, srv.unix_endpoint());
  CHECK(c.Rpc(Tsymlink{0, "s", std::string("a\0b", 3), 0}).err() == EINVAL);
  CHECK(c.WalkPath(0, 1, "s").err() == ENOENT);
  REQUIRE(c.Rpc(Tsymlink{0, "s", "a/b", 0}).ok());
}

// The class, not just the instances above: every integer and string field
// of every request the file system handles, at the edges of its type, run
// straight through StoreFileSystem::Execute on a real (in-memory) store,
// against a fresh directory and a fresh file each time. Under the
// sanitizer build (tools/test runs it with UBSAN halt_on_error) any
// overflow or out-of-range conversion aborts the test; in every build each
// request must get an R-message or Rlerror, and the store must pass its
// integrity check afterwards.
namespace {

struct FieldSetter {
  int target;          // which field of the kind being swept
  bool strings;        // sweep string fields instead of integers
  uint64_t number;     // value for an integer field
  std::string text;    // value for a string field
  std::string base;    // default for the other string fields
  int seen = 0;
  template <class T>
  void operator()(const char*, T& f) {
    if constexpr (std::is_integral_v<T>) {
      if (!strings && seen++ == target) f = T(number);
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (strings && seen++ == target) f = text;
      else f = base;
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      if (strings && seen++ == target) f = {text};
      else f = {base};
    }
  }
};

struct FieldCounter {
  int ints = 0, strings = 0;
  template <class T>
  void operator()(const char*, T&) {
    if constexpr (std::is_integral_v<T>) ints++;
    else if constexpr (std::is_same_v<T, std::string> ||
                       std::is_same_v<T, std::vector<std::string>>)
      strings++;
  }
};

}  // namespace

TEST_CASE("every request field at the edges of its range: no UB, a reply, a sound store") {
  auto opened = store::Store::Open(":memory:");
  REQUIRE(opened.ok());
  store::Store& s = **opened;
  const std::vector<uint64_t> numbers = {0,
                                         1,
                                         2,
                                         0x7f,
                                         0xff,
                                         0x7fff,
                                         0xffff,
                                         0x7fffffff,
                                         0x80000000,
                                         0xffffffff,
                                         uint64_t(1) << 50,
                                         (uint64_t(1) << 50) + 1,
                                         uint64_t(1) << 62,
                                         uint64_t(INT64_MAX),
                                         uint64_t(INT64_MAX) + 1,
                                         uint64_t(INT64_MAX) + 3,
                                         ~uint64_t(0) - 1,
                                         ~uint64_t(0)};
  const std::vector<std::string> texts = {"",
                                          std::string(1, '\0'),
                                          std::string("a\0b", 3),
                                          ".",
                                          "..",
                                          "a/b",
                                          "/",
                                          std::string(255, 'n'),
                                          std::string(256, 'n'),
                                          std::string(5000, 'n'),
                                          "user.x",
                                          "\xff\xfe"};
  int cases = 0, errors = 0, n = 0;
  auto run = [&](p9::Message msg, bool on_file, const std::string& label) {
    std::string d = "d" + std::to_string(n), f = "f" + std::to_string(n);
    n++;
    auto dir = s.Create(store::kRootIno, d, S_IFDIR | 0755, 0, 0);
    REQUIRE(dir.ok());
    auto file = s.Create(dir->ino, f, S_IFREG | 0644, 0, 0);
    REQUIRE(file.ok());
    REQUIRE(s.Write(file->ino, 0, "some data").ok());
    for (int i = 0; i < 4; i++) s.Ref(dir->ino), s.Ref(file->ino);
    FsRequest req;
    req.msg = std::move(msg);
    req.ino = on_file ? file->ino : dir->ino;
    req.ino2 = dir->ino;
    req.root_ino = store::kRootIno;
    INFO(label << (on_file ? " on a file" : " on a directory"));
    FsReply r = server::StoreFileSystem::Execute(s, req);
    cases++;
    if (auto* e = std::get_if<Rlerror>(&r.msg)) {
      errors++;
      CHECK(e->ecode != 0);
      CHECK(e->ecode != EIO);  // EIO would mean the store failed, not the input
    }
  };
  auto sweep = [&](auto proto, const char* type_name) {
    using M = decltype(proto);
    FieldCounter count;
    proto.fields(count);
    for (bool on_file : {false, true}) {
      for (int k = 0; k < count.ints; k++)
        for (uint64_t v : numbers) {
          M m = proto;
          FieldSetter set{k, false, v, "", "n" + std::to_string(n)};
          m.fields(set);
          if constexpr (std::is_same_v<M, Tsetattr>)
            if (k != 1) m.valid |= 0x1ff & ~kSetSize;  // every change but truncation
          if constexpr (std::is_same_v<M, Twrite>) m.data.bytes = "x";
          run(m, on_file, std::string(type_name) + " int field " + std::to_string(k) + " = " +
                              std::to_string(v));
        }
      for (int k = 0; k < count.strings; k++)
        for (const std::string& t : texts) {
          M m = proto;
          FieldSetter set{k, true, 0, t, "n" + std::to_string(n)};
          m.fields(set);
          run(m, on_file, std::string(type_name) + " string field " + std::to_string(k) +
                              " of " + std::to_string(t.size()) + " bytes");
        }
    }
  };
  sweep(Tattach{}, "Tattach");
  sweep(Twalk{}, "Twalk");
  sweep(Tgetattr{}, "Tgetattr");
  sweep(Tsetattr{}, "Tsetattr");
  sweep(Tlopen{}, "Tlopen");
  sweep(Tlcreate{}, "Tlcreate");
  sweep(Tmkdir{}, "Tmkdir");
  sweep(Tsymlink{}, "Tsymlink");
  sweep(Tmknod{}, "Tmknod");
  sweep(Tlink{}, "Tlink");
  sweep(Trenameat{}, "Trenameat");
  sweep(Trename{}, "Trename");
  sweep(Tunlinkat{}, "Tunlinkat");
  sweep(Tremove{}, "Tremove");
  sweep(Treadlink{}, "Treadlink");
  sweep(Tread{}, "Tread");
  sweep(Twrite{}, "Twrite");
  sweep(Treaddir{}, "Treaddir");
  sweep(Tstatfs{}, "Tstatfs");
  sweep(Tfsync{}, "Tfsync");
  sweep(Txattrwalk{}, "Txattrwalk");
  // A Txattrcreate fid's commit at Tclunk: name, value and flags.
  for (const std::string& t : texts)
    for (uint64_t flags : {uint64_t(0), uint64_t(1), uint64_t(2), uint64_t(3), ~uint64_t(0)})
      for (const std::string& value : {std::string(), std::string("v"),
                                       std::string(store::kMaxXattrValue + 1, 'v')}) {
        FsRequest::XattrCommit x{t, value, uint32_t(flags)};
        std::string d = "x" + std::to_string(n++);
        auto file = s.Create(store::kRootIno, d, S_IFREG | 0644, 0, 0);
        REQUIRE(file.ok());
        s.Ref(file->ino);
        FsRequest req;
        req.msg = Tclunk{1};
        req.ino = file->ino;
        req.xattr = x;
        INFO("xattr commit: name of " << t.size() << " bytes, flags " << flags << ", value of "
                                      << value.size() << " bytes");
        FsReply r = server::StoreFileSystem::Execute(s, req);
        cases++;
        if (auto* e = std::get_if<Rlerror>(&r.msg)) CHECK(e->ecode != EIO);
      }
  INFO(cases << " requests, " << errors << " refused");
  CHECK(cases > 2000);
  REQUIRE(s.Sync(true).ok());
  auto report = s.Check();
  for (const auto& p : report.problems) UNSCOPED_INFO(p);
  CHECK(report.ok());
}
