// The server end to end over real sockets, driven by the project's own 9P
// client: file operations, persistence, flush ordering, locks, crash
// recovery and deduplication.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <set>

#include "9p/client.h"
#include "store/store.h"
#include "tests/server/server_harness.h"
#include "tests/store/store_test_util.h"

using namespace muscle;
using namespace muscle::p9;
using namespace muscle::test;

namespace {

void PutFile(Client& c, const std::string& name, const std::string& data, bool fsync = false) {
  REQUIRE(c.Walk(0, 20, {}).ok());
  REQUIRE(c.Create(20, name, O_RDWR | O_CREAT, 0644).ok());
  REQUIRE(c.WriteAll(20, data).ok());
  if (fsync) REQUIRE(c.Fsync(20).ok());
  REQUIRE(c.Clunk(20).ok());
}

std::string GetFile(Client& c, const std::string& path) {
  REQUIRE(c.WalkPath(0, 21, path).ok());
  REQUIRE(c.Open(21, O_RDONLY).ok());
  auto data = c.ReadAll(21);
  REQUIRE(data.ok());
  REQUIRE(c.Clunk(21).ok());
  return *data;
}

uint64_t FileSize(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 ? uint64_t(st.st_size) : 0;
}

}  // namespace

TEST_CASE("files and directories over unix and tcp") {
  TempDir dir;
  InProcessServer srv(dir.path + "/store.db", dir.path);
  for (const std::string& ep : {srv.unix_endpoint(), srv.tcp_endpoint()}) {
    INFO(ep);
    Client c;
    Connect(c, ep);
    std::string name = ep.substr(0, 3) + "-file";
    std::string data = RandomBytes(3 << 20, 7);
    PutFile(c, name, data);
    CHECK(GetFile(c, name) == data);

    // Overwrite in the middle, append, then truncate down and up.
    REQUIRE(c.WalkPath(0, 3, name).ok());
    REQUIRE(c.Open(3, O_RDWR).ok());
    REQUIRE(c.Write(3, 1000000, "MIDDLE").ok());
    data.replace(1000000, 6, "MIDDLE");
    REQUIRE(c.Write(3, data.size(), "TAIL").ok());
    data += "TAIL";
    CHECK(*c.ReadAll(3) == data);
    Tsetattr t;
    t.fid = 3;
    t.valid = kSetSize;
    t.size = 123457;
    REQUIRE(c.Rpc(t).ok());
    data.resize(123457);
    CHECK(*c.ReadAll(3) == data);
    t.size = 200000;
    REQUIRE(c.Rpc(t).ok());
    data.resize(200000, '\0');
    CHECK(*c.ReadAll(3) == data);
    CHECK(c.GetAttr(3)->size == 200000);
    REQUIRE(c.Clunk(3).ok());
  }
}

TEST_CASE("namespace operations") {
  TempDir dir;
  InProcessServer srv(":memory:", dir.path);
  Client c;
  Connect(c, srv.unix_endpoint());
  REQUIRE(c.Walk(0, 1, {}).ok());
  REQUIRE(c.Mkdir(1, "a", 0755).ok());
  REQUIRE(c.Walk(0, 1, {"a"}).ok() == false);  // fid 1 in use
  REQUIRE(c.Clunk(1).ok());
  REQUIRE(c.Walk(0, 1, {"a"}).ok());
  REQUIRE(c.Mkdir(1, "b", 0700).ok());
  CHECK(c.Mkdir(1, "b", 0700).err() == EEXIST);
  PutFile(c, "top", "top data");

  SECTION("rename within and across directories, over an existing file") {
    REQUIRE(c.Rpc(Trenameat{0, "top", 1, "moved"}).ok());
    CHECK(GetFile(c, "a/moved") == "top data");
    PutFile(c, "other", "other data");
    REQUIRE(c.Rpc(Trenameat{0, "other", 1, "moved"}).ok());
    CHECK(GetFile(c, "a/moved") == "other data");
    CHECK(c.WalkPath(0, 5, "other").err() == ENOENT);
    // A directory cannot move under itself.
    REQUIRE(c.WalkPath(0, 6, "a/b").ok());
    CHECK(c.Rpc(Trenameat{0, "a", 6, "loop"}).err() == EINVAL);
    // Fids below a renamed directory stay valid.
    REQUIRE(c.Rpc(Trenameat{0, "a", 0, "renamed"}).ok());
    REQUIRE(c.Create(6, "inside", O_WRONLY, 0600).ok());
    REQUIRE(c.Clunk(6).ok());
    CHECK(GetFile(c, "renamed/b/inside") == "");
  }
  SECTION("hard links share an inode, symlinks resolve") {
    REQUIRE(c.WalkPath(0, 4, "top").ok());
    REQUIRE(c.Rpc(Tlink{1, 4, "hard"}).ok());
    auto q1 = c.GetAttr(4);
    REQUIRE(c.WalkPath(0, 5, "a/hard").ok());
    auto q2 = c.GetAttr(5);
    CHECK(q1->qid.path == q2->qid.path);
    CHECK(q2->nlink == 2);
    REQUIRE(c.Rpc(Tsymlink{1, "sym", "../top", 0}).ok());
    REQUIRE(c.WalkPath(0, 7, "a/sym").ok());
    auto t = c.Rpc(Treadlink{7});
    REQUIRE(t.ok());
    CHECK(std::get<Rreadlink>(*t).target == "../top");
    REQUIRE(c.Unlink(0, "top").ok());
    CHECK(GetFile(c, "a/hard") == "top data");
    CHECK(c.GetAttr(5)->nlink == 1);
  }
  SECTION("remove rules") {
    CHECK(c.Unlink(0, "a", 0).err() == EISDIR);
    CHECK(c.Unlink(0, "a", 0x200).err() == ENOTEMPTY);
    CHECK(c.Unlink(0, "top", 0x200).err() == ENOTDIR);
    CHECK(c.Unlink(1, "b", 0x200).ok());
    CHECK(c.Unlink(0, "missing").err() == ENOENT);
    CHECK(c.Mkdir(0, "with/slash", 0755).err() == EINVAL);
    CHECK(c.Mkdir(0, std::string(256, 'n'), 0755).err() == ENAMETOOLONG);
  }
  SECTION("readdir of many entries, resumable at any cookie") {
    REQUIRE(c.Walk(0, 8, {"a"}).ok());
    for (int i = 0; i < 600; i++) {
      REQUIRE(c.Walk(8, 9, {}).ok());
      REQUIRE(c.Create(9, "entry-" + std::to_string(i), O_WRONLY, 0644).ok());
      REQUIRE(c.Clunk(9).ok());
    }
    REQUIRE(c.Open(8, O_RDONLY).ok());
    auto names = c.ReadDirNames(8);
    REQUIRE(names.ok());
    CHECK(names->size() == 601);  // 600 files and b
    std::set<std::string> unique(names->begin(), names->end());
    CHECK(unique.size() == 601);
    // Small counts: each reply holds what fits, the cookie resumes exactly
    // after the last entry returned, nothing is skipped or repeated.
    for (uint32_t count : {40u, 100u, 333u}) {
      std::multiset<std::string> seen;
      uint64_t offset = 0;
      for (int calls = 0; calls < 2000; calls++) {
        auto page = c.ReadDirPage(8, offset, count);
        REQUIRE(page.ok());
        CHECK(page->bytes <= count);
        if (page->names.empty()) break;
        seen.insert(page->names.begin(), page->names.end());
        offset = page->next_offset;
      }
      CHECK(seen.size() == 603);  // ".", ".." and 601 names
      CHECK(std::set<std::string>(seen.begin(), seen.end()).size() == 603);
    }
  }
  SECTION("unlinked but open files keep working until clunk") {
    REQUIRE(c.WalkPath(0, 4, "top").ok());
    REQUIRE(c.Open(4, O_RDWR).ok());
    REQUIRE(c.Unlink(0, "top").ok());
    CHECK(*c.ReadAll(4) == "top data");
    REQUIRE(c.Write(4, 8, "+more").ok());
    CHECK(*c.ReadAll(4) == "top data+more");
    CHECK(c.GetAttr(4)->nlink == 0);
    REQUIRE(c.Clunk(4).ok());
    CHECK(c.WalkPath(0, 4, "top").err() == ENOENT);
  }
  SECTION("xattrs") {
    REQUIRE(c.WalkPath(0, 4, "top").ok());
    REQUIRE(c.Rpc(Txattrcreate{4, "user.color", 4, 0}).ok());
    REQUIRE(c.Write(4, 0, "blue").ok());
    REQUIRE(c.Clunk(4).ok());
    REQUIRE(c.WalkPath(0, 4, "top").ok());
    auto w = c.Rpc(Txattrwalk{4, 5, "user.color"});
    REQUIRE(w.ok());
    CHECK(std::get<Rxattrwalk>(*w).size == 4);
    CHECK(*c.Read(5, 0, 100) == "blue");
    REQUIRE(c.Clunk(5).ok());
    CHECK(c.Rpc(Txattrwalk{4, 5, "user.none"}).err() == ENODATA);
    auto list = c.Rpc(Txattrwalk{4, 5, ""});
    REQUIRE(list.ok());
    CHECK(*c.Read(5, 0, 100) == std::string("user.color\0", 11));
  }
  SECTION("open-state rules") {
    REQUIRE(c.WalkPath(0, 4, "top").ok());
    CHECK(c.Read(4, 0, 10).err() == EBADF);  // not open
    REQUIRE(c.Open(4, O_RDONLY).ok());
    CHECK(c.Write(4, 0, "x").err() == EBADF);  // opened read-only
    CHECK(c.Open(4, O_RDONLY).err() == EBUSY);
    CHECK(c.Walk(4, 4, {}).err() == EBUSY);    // walk in place from open fid
    CHECK(c.Walk(4, 10, {}).ok());             // clone from open fid is fine
    CHECK(c.Read(99, 0, 10).err() == EBADF);   // unknown fid
    CHECK(c.Open(1, O_WRONLY).err() == EISDIR);
  }
}

TEST_CASE("flush: the original reply always precedes Rflush") {
  TempDir dir;
  InProcessServer srv(":memory:", dir.path);
  Client c;
  Connect(c, srv.tcp_endpoint());
  PutFile(c, "f", RandomBytes(1 << 20, 3));
  REQUIRE(c.WalkPath(0, 2, "f").ok());
  REQUIRE(c.Open(2, O_RDONLY).ok());
  for (int round = 0; round < 50; round++) {
    REQUIRE(c.Send(100, Tread{2, 0, 1 << 19}).ok());
    REQUIRE(c.Send(101, Tflush{100}).ok());
    // This server answers every request, flushed or not: exactly the read's
    // reply, then Rflush.
    std::vector<uint16_t> order;
    for (int i = 0; i < 2; i++) {
      uint16_t tag;
      auto m = c.Receive(&tag);
      REQUIRE(m.ok());
      order.push_back(tag);
      if (tag == 100) CHECK(std::holds_alternative<Rread>(*m));
      if (tag == 101) CHECK(std::holds_alternative<Rflush>(*m));
    }
    CHECK(order == std::vector<uint16_t>{100, 101});
  }
  // Flush of an unknown tag is answered at once.
  CHECK(c.Rpc(Tflush{5000}).ok());
}

TEST_CASE("a reused tag closes the connection; other clients are unaffected") {
  TempDir dir;
  InProcessServer srv(":memory:", dir.path);
  Client bad, good;
  Connect(bad, srv.unix_endpoint());
  Connect(good, srv.unix_endpoint());
  PutFile(good, "f", RandomBytes(1 << 20, 1));
  REQUIRE(bad.WalkPath(0, 2, "f").ok());
  REQUIRE(bad.Open(2, O_RDONLY).ok());
  // Many large reads with one tag: the second arrives while the first is
  // in flight (or after; either way the server must stay consistent).
  for (int i = 0; i < 20; i++) bad.Send(7, Tread{2, 0, 1 << 19});
  bool closed = false;
  for (int i = 0; i < 20; i++) {
    auto m = bad.Receive();
    if (!m.ok()) {
      closed = true;
      break;
    }
  }
  CHECK(closed);
  CHECK(GetFile(good, "f").size() == (1 << 20));
}

TEST_CASE("locks conflict across clients and go away with the client") {
  TempDir dir;
  InProcessServer srv(":memory:", dir.path);
  Client a, b;
  Connect(a, srv.unix_endpoint());
  Connect(b, srv.unix_endpoint());
  PutFile(a, "lockme", "x");
  REQUIRE(a.WalkPath(0, 3, "lockme").ok());
  REQUIRE(b.WalkPath(0, 3, "lockme").ok());
  auto lock = [](Client& c, uint8_t type, uint64_t start, uint64_t len, uint32_t pid) {
    auto r = c.Rpc(Tlock{3, type, 0, start, len, pid, "host"});
    REQUIRE(r.ok());
    return std::get<Rlock>(*r).status;
  };
  CHECK(lock(a, kLockWrite, 0, 0, 1) == kLockSuccess);
  CHECK(lock(b, kLockRead, 10, 10, 2) == kLockBlocked);
  auto g = b.Rpc(Tgetlock{3, kLockRead, 10, 10, 2, "host"});
  REQUIRE(g.ok());
  CHECK(std::get<Rgetlock>(*g).type == kLockWrite);
  CHECK(std::get<Rgetlock>(*g).proc_id == 1);
  CHECK(lock(a, kLockUnlock, 0, 100, 1) == kLockSuccess);
  CHECK(lock(b, kLockRead, 10, 10, 2) == kLockSuccess);
  CHECK(lock(b, kLockWrite, 150, 10, 2) == kLockBlocked);  // a still holds 100..
  a.Close();
  // The server notices the disconnect asynchronously.
  bool freed = false;
  for (int i = 0; i < 100 && !freed; i++) {
    freed = lock(b, kLockWrite, 150, 10, 2) == kLockSuccess;
    if (!freed) usleep(10000);
  }
  CHECK(freed);
}

TEST_CASE("data survives a graceful restart") {
  TempDir dir;
  std::string store = dir.path + "/store.db";
  std::string data = RandomBytes(5 << 20, 11);
  {
    InProcessServer srv(store, dir.path);
    Client c;
    Connect(c, srv.unix_endpoint());
    REQUIRE(c.Mkdir(0, "d", 0755).ok());
    PutFile(c, "big", data);
  }
  InProcessServer srv(store, dir.path);
  Client c;
  Connect(c, srv.unix_endpoint());
  CHECK(GetFile(c, "big") == data);
  CHECK(c.WalkPath(0, 5, "d").ok());
  srv.Stop();
  auto s = store::Store::Open(store);
  REQUIRE(s.ok());
  auto report = (*s)->Check();
  for (auto& p : report.problems) FAIL_CHECK(p);
  CHECK(report.chunks > 0);
}

TEST_CASE("kill -9 during writes: every answered write is there (fsynced or not), the store is consistent") {
  TempDir dir;
  std::string store = dir.path + "/store.db";
  std::string ep = "unix:" + dir.path + "/sock";
  std::map<std::string, std::string> synced;
  {
    ChildServer child({"--store", store, "--listen", ep, "--commit-interval-ms", "50"}, ep,
                      dir.path + "/server.log");
    Client c;
    Connect(c, ep);
    // Writer: a stream of files, every third one fsynced. A second client
    // keeps rewriting a large file so the kill lands mid-flush.
    pid_t churn = fork();
    if (churn == 0) {
      Client w;
      if (!w.Connect(ep).ok() || !w.Version().ok() || !w.Attach(0).ok()) _exit(0);
      w.Walk(0, 1, {});
      w.Create(1, "churn", O_RDWR, 0644);
      std::string block = RandomBytes(1 << 20, 99);
      for (uint64_t i = 0;; i++) {
        block[i % block.size()] ^= 1;
        if (!w.Write(1, (i % 16) << 20, block.substr(0, w.msize() - 24)).ok()) _exit(0);
      }
    }
    for (int i = 0; i < 60; i++) {
      std::string name = "f" + std::to_string(i);
      std::string data = RandomBytes(size_t(20000 + i * 9000), uint32_t(i));
      bool sync = i % 3 == 0;
      PutFile(c, name, data, sync);
      // Answered, so kept: the redo log replays what the last commit
      // (every 50 ms here) did not include.
      synced[name] = data;
    }
    child.Kill(SIGKILL);
    child.Wait();
    kill(churn, SIGKILL);
    waitpid(churn, nullptr, 0);
  }
  {
    auto s = store::Store::Open(store);
    REQUIRE(s.ok());
    auto report = (*s)->Check();
    for (auto& p : report.problems) FAIL_CHECK(p);
  }
  ChildServer again({"--store", store, "--listen", ep}, ep, dir.path + "/server.log");
  Client c;
  Connect(c, ep);
  for (auto& [name, data] : synced) {
    INFO(name);
    CHECK(GetFile(c, name) == data);
  }
  again.Kill(SIGTERM);
  CHECK(again.Wait() == 0);
}

TEST_CASE("SIGTERM: the server finishes, commits and exits 0") {
  TempDir dir;
  std::string store = dir.path + "/store.db";
  std::string ep = "unix:" + dir.path + "/sock";
  std::string data = RandomBytes(2 << 20, 5);
  {
    ChildServer child({"--store", store, "--listen", ep}, ep);
    Client c;
    Connect(c, ep);
    PutFile(c, "unsynced", data);  // no fsync: the shutdown must commit it
    child.Kill(SIGTERM);
    int st = child.Wait();
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 0);
  }
  ChildServer child({"--store", store, "--listen", ep}, ep);
  Client c;
  Connect(c, ep);
  CHECK(GetFile(c, "unsynced") == data);
}

TEST_CASE("the same 100 MiB under two names costs well under 1 MiB more") {
  TempDir dir;
  std::string store = dir.path + "/store.db";
  InProcessServer srv(store, dir.path);
  Client c;
  Connect(c, srv.unix_endpoint());
  std::string data = RandomBytes(100 << 20, 42);
  PutFile(c, "one", data, true);
  REQUIRE(c.Rpc(Tfsync{0, 0}).ok());
  srv.Stop();  // checkpoint the WAL into the main file
  // Disk space in use: pack files count their allocated blocks (the space
  // of replaced chunks is punched out of them).
  auto stored = [&] {
    uint64_t n = FileSize(store) + FileSize(store + "-wal");
    for (int id = 1; id < 100; id++) {
      struct stat st;
      if (stat(PackPath(dir.path, id).c_str(), &st) == 0) n += uint64_t(st.st_blocks) * 512;
    }
    return n;
  };
  uint64_t after_one = stored();
  InProcessServer srv2(store, dir.path);
  Client c2;
  Connect(c2, srv2.unix_endpoint());
  PutFile(c2, "two", data, true);
  srv2.Stop();
  uint64_t after_two = stored();
  INFO("first copy " << after_one << " bytes, both " << after_two << " bytes");
  CHECK(after_one > (100u << 20));
  CHECK(after_two - after_one < (1u << 20) / 2);
}
