// The store on real SQLite files: namespace operations, buffered writes,
// chunk-level rewrites, deduplication, unlinked-but-open lifetime,
// persistence, integrity checking and the Merkle root.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <random>

#include "store/sqlite.h"
#include "store/store.h"
#include "tests/store/store_test_util.h"

using namespace muscle;
using namespace muscle::store;
using namespace muscle::test;

TEST_CASE("namespace: create, lookup, readdir, link, rename, unlink") {
  auto s = OpenStore(":memory:");
  auto d = s->Create(kRootIno, "dir", S_IFDIR | 0755, 1, 2);
  REQUIRE(d.ok());
  CHECK(s->GetAttr(kRootIno)->nlink == 3);
  auto f = s->Create(d->ino, "file", S_IFREG | 0644, 1, 2);
  REQUIRE(f.ok());
  CHECK(s->Lookup(d->ino, "file")->ino == f->ino);
  CHECK(s->Lookup(d->ino, "..")->ino == kRootIno);
  CHECK(s->Create(d->ino, "file", S_IFREG, 0, 0).err() == EEXIST);
  CHECK(s->Create(f->ino, "x", S_IFREG, 0, 0).err() == ENOTDIR);
  CHECK(s->Link(kRootIno, "hard", f->ino)->nlink == 2);
  CHECK(s->Link(kRootIno, "dirlink", d->ino).err() == EPERM);
  auto l = s->Create(kRootIno, "sym", S_IFLNK | 0777, 0, 0, 0, "dir/file");
  REQUIRE(l.ok());
  CHECK(*s->ReadLink(l->ino) == "dir/file");
  CHECK(s->ReadLink(f->ino).err() == EINVAL);

  auto entries = s->ReadDir(kRootIno, 0, 100);
  REQUIRE(entries.ok());
  std::vector<std::string> names;
  for (auto& e : *entries) names.push_back(e.name);
  CHECK(names == std::vector<std::string>{".", "..", "dir", "hard", "sym"});
  // Resume after each cookie.
  for (size_t i = 0; i < entries->size(); i++) {
    auto rest = s->ReadDir(kRootIno, (*entries)[i].cookie, 100);
    CHECK(rest->size() == entries->size() - i - 1);
  }

  CHECK(s->Rename(kRootIno, "hard", d->ino, "file").ok());  // same inode: no-op
  CHECK(s->Rename(kRootIno, "dir", d->ino, "inside").err() == EINVAL);
  REQUIRE(s->Rename(kRootIno, "sym", d->ino, "sym2").ok());
  CHECK(s->Lookup(kRootIno, "sym").err() == ENOENT);
  auto sub = s->Create(kRootIno, "sub", S_IFDIR | 0755, 0, 0);
  REQUIRE(s->Rename(kRootIno, "sub", d->ino, "sub").ok());
  CHECK(s->GetAttr(kRootIno)->nlink == 3);
  CHECK(s->GetAttr(d->ino)->nlink == 3);
  CHECK(*s->Parent(sub->ino) == d->ino);
  CHECK(s->Unlink(kRootIno, "dir", true).err() == ENOTEMPTY);
  REQUIRE(s->Unlink(kRootIno, "hard", false).ok());
  CHECK(s->GetAttr(f->ino)->nlink == 1);
  RequireClean(*s);
}

TEST_CASE("buffered writes read back before and after flushing") {
  auto s = OpenStore(":memory:");
  auto f = s->Create(kRootIno, "f", S_IFREG | 0644, 0, 0);
  std::string data = RandomBytes(3 << 20, 1);
  for (size_t off = 0; off < data.size(); off += 100000)
    REQUIRE(s->Write(f->ino, off, std::string_view(data).substr(off, 100000)).ok());
  CHECK(ReadAll(*s, f->ino) == data);
  REQUIRE(s->Sync(true).ok());
  CHECK(ReadAll(*s, f->ino) == data);
  // Overlapping buffered writes on top of stored data.
  REQUIRE(s->Write(f->ino, 10, "abc").ok());
  REQUIRE(s->Write(f->ino, 11, "XYZW").ok());
  REQUIRE(s->Write(f->ino, 5, "12").ok());
  data.replace(10, 3, "abc");
  data.replace(11, 4, "XYZW");
  data.replace(5, 2, "12");
  CHECK(ReadAll(*s, f->ino) == data);
  // A write past the end leaves a hole of zeros.
  REQUIRE(s->Write(f->ino, data.size() + 1000, "end").ok());
  data += std::string(1000, '\0') + "end";
  CHECK(ReadAll(*s, f->ino) == data);
  REQUIRE(s->Sync(true).ok());
  CHECK(ReadAll(*s, f->ino) == data);
  RequireClean(*s);
}

TEST_CASE("a small write in the middle of a large file rewrites only nearby chunks") {
  TempDir dir;
  std::string path = dir.path + "/s.db";
  auto s = OpenStore(path);
  auto f = s->Create(kRootIno, "big", S_IFREG | 0644, 0, 0);
  std::string data = RandomBytes(64 << 20, 2);
  for (size_t off = 0; off < data.size(); off += 1 << 20)
    REQUIRE(s->Write(f->ino, off, std::string_view(data).substr(off, 1 << 20)).ok());
  REQUIRE(s->Sync(true).ok());
  int64_t chunks_before = Count(path, "SELECT count(*) FROM chunks");
  int64_t max_before = Count(path, "SELECT max(id) FROM chunks");
  REQUIRE(s->Write(f->ino, 32 << 20, "a small change").ok());
  REQUIRE(s->Sync(true).ok());
  Db db;
  REQUIRE(db.Open(path, true).ok());
  Stmt q(db, "SELECT count(*) FROM chunks WHERE id > ?");
  q.Bind(1, max_before);
  REQUIRE(q.Step());
  INFO("chunks before " << chunks_before);
  CHECK(q.Int(0) >= 1);
  CHECK(q.Int(0) <= 3);
  CHECK(Count(path, "SELECT count(*) FROM chunks") == chunks_before);
  data.replace(32 << 20, 14, "a small change");
  CHECK(ReadAll(*s, f->ino) == data);
  RequireClean(*s);
}

TEST_CASE("identical content is stored once; appends chunk like one pass") {
  TempDir dir;
  std::string path = dir.path + "/s.db";
  auto s = OpenStore(path);
  s->file_buffer_limit = 1 << 20;  // force many flushes during the writes
  std::string data = RandomBytes(20 << 20, 3);
  auto a = s->Create(kRootIno, "a", S_IFREG | 0644, 0, 0);
  auto b = s->Create(kRootIno, "b", S_IFREG | 0644, 0, 0);
  // a in one go, b in odd-sized appends with flushes in between.
  REQUIRE(s->Write(a->ino, 0, data).ok());
  REQUIRE(s->Sync(true).ok());
  int64_t chunks = Count(path, "SELECT count(*) FROM chunks");
  for (size_t off = 0; off < data.size(); off += 777777)
    REQUIRE(s->Write(b->ino, off, std::string_view(data).substr(off, 777777)).ok());
  REQUIRE(s->Sync(true).ok());
  CHECK(Count(path, "SELECT count(*) FROM chunks") == chunks);
  CHECK(Count(path, "SELECT min(refs) FROM chunks") == 2);
  CHECK(*s->TreeHash(a->ino) != *s->TreeHash(kRootIno));
  RequireClean(*s);
  // Removing one copy keeps the other readable; removing both frees chunks.
  REQUIRE(s->Unlink(kRootIno, "a", false).ok());
  CHECK(ReadAll(*s, b->ino) == data);
  REQUIRE(s->Unlink(kRootIno, "b", false).ok());
  REQUIRE(s->Sync(true).ok());
  CHECK(Count(path, "SELECT count(*) FROM chunks") == 0);
  RequireClean(*s);
}

TEST_CASE("truncate down and up") {
  auto s = OpenStore(":memory:");
  auto f = s->Create(kRootIno, "t", S_IFREG | 0644, 0, 0);
  std::string data = RandomBytes(1 << 20, 4);
  REQUIRE(s->Write(f->ino, 0, data).ok());
  SetAttrRequest r;
  r.set_size = true;
  r.size = 300001;
  REQUIRE(s->SetAttr(f->ino, r).ok());
  CHECK(ReadAll(*s, f->ino) == data.substr(0, 300001));
  r.size = 2 << 20;
  REQUIRE(s->SetAttr(f->ino, r).ok());
  CHECK(ReadAll(*s, f->ino) == data.substr(0, 300001) + std::string((2 << 20) - 300001, '\0'));
  r.size = 0;
  REQUIRE(s->SetAttr(f->ino, r).ok());
  CHECK(s->GetAttr(f->ino)->size == 0);
  RequireClean(*s);
}

TEST_CASE("an unlinked file lives until its last reference goes") {
  TempDir dir;
  std::string path = dir.path + "/s.db";
  uint64_t ino;
  {
    auto s = OpenStore(path);
    auto f = s->Create(kRootIno, "open", S_IFREG | 0644, 0, 0);
    ino = f->ino;
    REQUIRE(s->Write(ino, 0, "contents").ok());
    s->Ref(ino);
    s->Ref(ino);
    REQUIRE(s->Unlink(kRootIno, "open", false).ok());
    CHECK(ReadAll(*s, ino) == "contents");
    REQUIRE(s->Unref(ino).ok());
    CHECK(ReadAll(*s, ino) == "contents");
    REQUIRE(s->Sync(true).ok());
    // Crash with the file still open: the next open keeps the orphan for
    // orphan_hold (a client may come back for it), then Tick reclaims it.
  }
  auto s = OpenStore(path);
  CHECK(ReadAll(*s, ino) == "contents");
  REQUIRE(s->Tick().ok());
  REQUIRE(s->Sync(true).ok());
  CHECK(s->GetAttr(ino).err() == ESTALE);
  CHECK(Count(path, "SELECT count(*) FROM chunks") == 0);
  auto g = s->Create(kRootIno, "g", S_IFREG | 0644, 0, 0);
  s->Ref(g->ino);
  REQUIRE(s->Unlink(kRootIno, "g", false).ok());
  REQUIRE(s->Unref(g->ino).ok());
  CHECK(s->GetAttr(g->ino).err() == ESTALE);
}

TEST_CASE("the integrity check finds corrupted chunks and bad counts") {
  TempDir dir;
  std::string path = dir.path + "/s.db";
  {
    auto s = OpenStore(path);
    auto f = s->Create(kRootIno, "f", S_IFREG | 0644, 0, 0);
    REQUIRE(s->Write(f->ino, 0, RandomBytes(500000, 5)).ok());
    REQUIRE(s->Sync(true).ok());
    CHECK(s->Check().ok());
  }
  {
    // Flip bytes of the first chunk in its pack file.
    int64_t pack = Count(path, "SELECT pack FROM chunks WHERE id=(SELECT min(id) FROM chunks)");
    int64_t offset = Count(path, "SELECT offset FROM chunks WHERE id=(SELECT min(id) FROM chunks)");
    FILE* f = fopen(PackPath(dir.path, uint64_t(pack)).c_str(), "r+b");
    REQUIRE(f);
    fseek(f, long(offset + 100), SEEK_SET);
    fputs("corruption", f);
    fclose(f);
    Db db;
    REQUIRE(db.Open(path).ok());
    REQUIRE(db.Exec("UPDATE inodes SET nlink = 5 WHERE ino <> 1").ok());
  }
  auto s = OpenStore(path);
  auto r = s->Check();
  CHECK(!r.ok());
  bool hash = false, links = false;
  for (auto& p : r.problems) {
    hash |= p.find("does not match its hash") != std::string::npos;
    links |= p.find("link count") != std::string::npos;
  }
  CHECK(hash);
  CHECK(links);
}

TEST_CASE("the Merkle root depends on content and names, not on history") {
  auto a = OpenStore(":memory:");
  auto b = OpenStore(":memory:");
  for (Store* s : {a.get(), b.get()}) {
    auto d = s->Create(kRootIno, "d", S_IFDIR | 0755, 0, 0);
    auto f = s->Create(d->ino, "f", S_IFREG | 0644, 0, 0);
    REQUIRE(s->Write(f->ino, 0, "same").ok());
  }
  // b reaches the same tree by another route.
  auto tmp = b->Create(kRootIno, "tmp", S_IFREG | 0644, 0, 0);
  REQUIRE(b->Unlink(kRootIno, "tmp", false).ok());
  CHECK(*a->TreeHash() == *b->TreeHash());
  auto f = b->Lookup(b->Lookup(kRootIno, "d")->ino, "f");
  REQUIRE(b->Write(f->ino, 0, "diff").ok());
  CHECK(*a->TreeHash() != *b->TreeHash());
}

TEST_CASE("xattrs: create/replace flags, list, remove") {
  auto s = OpenStore(":memory:");
  auto f = s->Create(kRootIno, "f", S_IFREG | 0644, 0, 0);
  REQUIRE(s->SetXattr(f->ino, "user.a", "1", 0).ok());
  CHECK(s->SetXattr(f->ino, "user.a", "2", 1).err() == EEXIST);
  CHECK(s->SetXattr(f->ino, "user.b", "2", 2).err() == ENODATA);
  REQUIRE(s->SetXattr(f->ino, "user.b", "2", 1).ok());
  CHECK(*s->GetXattr(f->ino, "user.a") == "1");
  CHECK(*s->ListXattr(f->ino) == std::string("user.a\0user.b\0", 14));
  REQUIRE(s->RemoveXattr(f->ino, "user.a").ok());
  CHECK(s->GetXattr(f->ino, "user.a").err() == ENODATA);
  CHECK(s->SetXattr(f->ino, "user.big", std::string(70000, 'x'), 0).err() == E2BIG);
}

TEST_CASE("a file unlinked while open outlives a restart for orphan_hold, then is freed") {
  TempDir base;
  std::string path = base.path + "/store.db";
  auto s = OpenStore(path);
  auto dir = s->Create(kRootIno, "d", S_IFDIR | 0755, 0, 0);
  REQUIRE(dir.ok());
  uint64_t kept = WriteFile(*s, "scratch", "scratch data", dir->ino);
  uint64_t gone = WriteFile(*s, "other", "other data", dir->ino);
  s->Ref(kept);  // open in a client
  s->Ref(gone);
  REQUIRE(s->Unlink(dir->ino, "scratch", false).ok());
  REQUIRE(s->Unlink(dir->ino, "other", false).ok());
  REQUIRE(s->Sync(true).ok());
  CHECK(s->OrphanDir(kept).err() == ENOENT);  // not while the server runs
  s.reset();  // the server stops with both still open
  s = OpenStore(path);
  s->orphan_hold = std::chrono::hours(1);
  auto a = s->GetAttr(kept);
  REQUIRE(a.ok());
  CHECK(a->nlink == 0);
  CHECK(ReadAll(*s, kept) == "scratch data");
  auto from = s->OrphanDir(kept);
  REQUIRE(from.ok());
  CHECK(*from == dir->ino);
  CHECK(s->OrphanDir(dir->ino).err() == ENOENT);
  RequireClean(*s);
  REQUIRE(s->Tick().ok());  // within the hold: both kept
  CHECK(s->GetAttr(gone).ok());
  s->Ref(kept);  // a client came back, rebound it and closed it
  REQUIRE(s->Unref(kept).ok());
  CHECK(s->GetAttr(kept).ok());  // still held for the others
  s->Ref(kept);  // and another one came back
  s->orphan_hold = std::chrono::milliseconds(0);
  REQUIRE(s->Tick().ok());
  CHECK_FALSE(s->GetAttr(gone).ok());
  CHECK(ReadAll(*s, kept) == "scratch data");
  CHECK(s->OrphanDir(kept).err() == ENOENT);  // no longer held
  REQUIRE(s->Unref(kept).ok());  // its last close
  CHECK_FALSE(s->GetAttr(kept).ok());
  REQUIRE(s->Sync(true).ok());
  RequireClean(*s);
}

TEST_CASE("a directory removed while a client was in it is freed at the next open") {
  TempDir base;
  std::string path = base.path + "/store.db";
  auto s = OpenStore(path);
  auto dir = s->Create(kRootIno, "cwd", S_IFDIR | 0755, 0, 0);
  REQUIRE(dir.ok());
  s->Ref(dir->ino);
  REQUIRE(s->Unlink(kRootIno, "cwd", true).ok());
  REQUIRE(s->Sync(true).ok());
  s.reset();
  s = OpenStore(path);
  CHECK_FALSE(s->GetAttr(dir->ino).ok());
  RequireClean(*s);
}
