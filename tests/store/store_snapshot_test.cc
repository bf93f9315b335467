// Snapshots (store.h "snapshots", tree_object.h): freezing the tree into
// shared tree objects, browsing them read-only, diff, history, restore,
// prune + gc, check, failures and crashes in the middle of a snapshot.
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <map>
#include <random>

#include "store/snapshot_view.h"
#include "store/store.h"
#include "store/tree_object.h"
#include "store/vfs.h"
#include "tests/store/store_test_util.h"

using namespace muscle;
using namespace muscle::store;
using namespace muscle::test;

namespace {

// Walks a slash-separated path from `dir` (live or view).
Result<Attr> Walk(Tree& s, uint64_t dir, const std::string& path) {
  auto cur = s.GetAttr(dir);
  size_t i = 0;
  while (cur.ok() && i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    std::string n = path.substr(i, j - i);
    i = j + 1;
    if (!n.empty()) cur = s.Lookup(cur->ino, n);
  }
  return cur;
}

uint64_t MakeFile(Store& s, uint64_t dir, const std::string& name, const std::string& data) {
  auto a = s.Create(dir, name, S_IFREG | 0644, 1000, 1000);
  REQUIRE(a.ok());
  if (!data.empty()) REQUIRE(s.Write(a->ino, 0, data).ok());
  return a->ino;
}

uint64_t MakeDir(Store& s, uint64_t dir, const std::string& name) {
  auto a = s.Create(dir, name, S_IFDIR | 0755, 1000, 1000);
  REQUIRE(a.ok());
  return a->ino;
}

// A file's content in a snapshot, read through @snapshots.
Result<std::string> SnapRead(Store& s, const std::string& snap, const std::string& path) {
  SnapshotView v(s);
  auto root = v.SnapshotsRoot("");
  if (!root.ok()) return root.status();
  auto a = Walk(v, root->ino, snap + "/" + path);
  if (!a.ok()) return a.status();
  return ReadAll(v, a->ino);
}

}  // namespace

TEST_CASE("tree objects encode, decode and refuse damaged bytes") {
  TreeObject d;
  d.kind = ObjectKind::kDir;
  for (const char* n : {"a", "b", "zz"}) {
    TreeEntry e;
    e.name = n;
    e.mode = S_IFREG | 0644;
    e.size = 5;
    e.has_object = true;
    e.object[0] = uint8_t(n[0]);
    d.entries.push_back(e);
  }
  std::string bytes = EncodeObject(d);
  auto back = DecodeObject(bytes);
  REQUIRE(back.ok());
  REQUIRE(back->entries.size() == 3);
  CHECK(back->entries[2].name == "zz");
  CHECK(back->entries[1].object[0] == 'b');
  CHECK(ChildrenOf(*back).size() == 3);
  for (size_t cut = 0; cut < bytes.size(); cut++)
    CHECK_FALSE(DecodeObject(std::string_view(bytes).substr(0, cut)).ok());
  std::swap(d.entries[0], d.entries[1]);  // out of order
  CHECK_FALSE(DecodeObject(EncodeObject(d)).ok());
  TreeObject f;
  f.kind = ObjectKind::kFile;
  f.size = 100;
  f.extents.push_back({0, 60, {}});
  f.extents.push_back({50, 10, {}});  // overlaps
  CHECK_FALSE(DecodeObject(EncodeObject(f)).ok());
  f.extents[1].offset = 90;
  f.extents[1].length = 20;  // past the end
  CHECK_FALSE(DecodeObject(EncodeObject(f)).ok());
  f.extents[1].length = 10;
  CHECK(DecodeObject(EncodeObject(f)).ok());
}

TEST_CASE("a snapshot keeps overwritten and deleted files readable, read-only") {
  TempDir base;
  std::string db = base.path + "/store.db";
  auto s = OpenStore(db);
  uint64_t docs = MakeDir(*s, kRootIno, "docs");
  std::string big = RandomBytes(3 << 20, 1);
  uint64_t f = MakeFile(*s, docs, "big", big);
  MakeFile(*s, docs, "small", "hello");
  REQUIRE(s->Create(docs, "link", S_IFLNK | 0777, 0, 0, 0, "big").ok());
  auto snap = s->TakeSnapshot("first");
  REQUIRE(snap.ok());
  CHECK(snap->name == "first");
  // Overwrite and delete in the live tree.
  REQUIRE(s->Write(f, 1000, "CHANGED").ok());
  REQUIRE(s->Unlink(docs, "small", false).ok());
  REQUIRE(s->Sync(true).ok());
  auto old_big = SnapRead(*s, "first", "docs/big");
  REQUIRE(old_big.ok());
  CHECK(*old_big == big);
  auto old_small = SnapRead(*s, "first", "docs/small");
  REQUIRE(old_small.ok());
  CHECK(*old_small == "hello");
  CHECK(ReadAll(*s, f).substr(1000, 7) == "CHANGED");
  // By hash and by a unique prefix.
  std::string hex = HexOfHash(snap->root);
  SnapshotView v(*s);
  auto root = v.SnapshotsRoot("");
  REQUIRE(root.ok());
  CHECK(Walk(v, root->ino, hex + "/docs/small").ok());
  CHECK(Walk(v, root->ino, hex.substr(0, 8) + "/docs/small").ok());
  CHECK(Walk(v, root->ino, "nonesuch").err() == ENOENT);
  // Metadata, symlinks, listing.
  auto small = Walk(v, root->ino, "first/docs/small");
  REQUIRE(small.ok());
  CHECK(small->size == 5);
  CHECK(small->uid == 1000);
  CHECK(SnapshotView::Owns(small->ino));
  auto link = Walk(v, root->ino, "first/docs/link");
  REQUIRE(link.ok());
  CHECK(S_ISLNK(link->mode));
  CHECK(*v.ReadLink(link->ino) == "big");
  std::vector<std::string> names;
  auto d = Walk(v, root->ino, "first/docs");
  REQUIRE(d.ok());
  REQUIRE(v.ReadDir(d->ino, 0, [&](const DirEntry& e) {
               names.push_back(e.name);
               return true;
             }).ok());
  CHECK(names == std::vector<std::string>{".", "..", "big", "link", "small"});
  // Continuing a listing after a cookie.
  std::vector<DirEntry> first2 = *v.ReadDir(d->ino, 0, 3);
  auto rest = v.ReadDir(d->ino, first2.back().cookie, 10);
  REQUIRE(rest.ok());
  REQUIRE(rest->size() == 2);
  CHECK((*rest)[0].name == "link");
  // Every change is refused.
  CHECK(v.Write(small->ino, 0, "x").err() == EROFS);
  CHECK(v.Create(d->ino, "new", S_IFREG | 0644, 0, 0).err() == EROFS);
  CHECK(v.Unlink(d->ino, "small", false).err() == EROFS);
  CHECK(v.Rename(d->ino, "small", kRootIno, "stolen").err() == EROFS);
  CHECK(v.Link(kRootIno, "hard", small->ino).err() == EROFS);
  SetAttrRequest chmod;
  chmod.set_mode = true;
  chmod.mode = 0777;
  CHECK(v.SetAttr(small->ino, chmod).err() == EROFS);
  CHECK(v.SetXattr(small->ino, "user.a", "b", 0).err() == EROFS);
  RequireClean(*s);
  // After a restart the snapshot is still there.
  s.reset();
  s = OpenStore(db);
  auto again = SnapRead(*s, "first", "docs/big");
  REQUIRE(again.ok());
  CHECK(*again == big);
  RequireClean(*s);
}

// A confined identity (root=/deep/a) browses @snapshots through
// SnapshotsRoot("deep/a"). `muscle snapshots` shows it the hash of its
// subtree in each snapshot; that hash (or a prefix) must name the snapshot
// in its view too, as a root hash does in the whole tree's view. (Found by
// the kernel test: mount -o aname=@snapshots/<that prefix> said ENOENT.)
TEST_CASE("a confined view shows its subtree of each snapshot, named by name or by the hash it is shown") {
  TempDir base;
  auto s = OpenStore(base.path + "/store.db");
  uint64_t deep = MakeDir(*s, kRootIno, "deep");
  uint64_t a = MakeDir(*s, deep, "a");
  uint64_t f = MakeFile(*s, a, "mine", "old");
  MakeFile(*s, kRootIno, "outside", "secret");
  auto one = s->TakeSnapshot("one");
  REQUIRE(one.ok());
  REQUIRE(s->Write(f, 0, "new").ok());
  auto two = s->TakeSnapshot("two");
  REQUIRE(two.ok());
  MakeFile(*s, kRootIno, "outside2", "x");  // the whole tree changes, deep/a does not
  auto three = s->TakeSnapshot("three");
  REQUIRE(three.ok());
  REQUIRE(three->root != two->root);
  SnapshotView v(*s);
  auto root = v.SnapshotsRoot("deep/a");
  REQUIRE(root.ok());
  std::vector<std::string> names;
  REQUIRE(v.ReadDir(root->ino, 0, [&](const DirEntry& e) {
               names.push_back(e.name);
               return true;
             }).ok());
  CHECK(names == std::vector<std::string>{".", "..", "one", "two", "three"});
  // By name: its subtree, nothing above it.
  auto old = Walk(v, root->ino, "one/mine");
  REQUIRE(old.ok());
  CHECK(ReadAll(v, old->ino) == "old");
  CHECK(Walk(v, root->ino, "one/outside").err() == ENOENT);
  CHECK(Walk(v, root->ino, "one/deep").err() == ENOENT);
  // By the hash of its subtree (what `snapshots` shows it), whole or a prefix.
  auto sub1 = s->ResolveIn(one->root, one->root_attr, "deep/a");
  auto sub2 = s->ResolveIn(two->root, two->root_attr, "deep/a");
  auto sub3 = s->ResolveIn(three->root, three->root_attr, "deep/a");
  REQUIRE((sub1.ok() && sub2.ok() && sub3.ok()));
  std::string h1 = HexOfHash(sub1->object);
  for (std::string ref : {h1, h1.substr(0, 8)}) {
    INFO(ref);
    auto m = Walk(v, root->ino, ref + "/mine");
    REQUIRE(m.ok());
    CHECK(ReadAll(v, m->ino) == "old");
  }
  // two and three share deep/a: one hash, no ambiguity.
  CHECK(sub2->object == sub3->object);
  auto m = Walk(v, root->ino, HexOfHash(sub3->object).substr(0, 8) + "/mine");
  REQUIRE(m.ok());
  CHECK(ReadAll(v, m->ino) == "new");
  // The whole tree's root hash is not the confined identity's to see or
  // probe (it would tell when anything outside its subtree changed).
  CHECK(Walk(v, root->ino, HexOfHash(one->root).substr(0, 8)).err() == ENOENT);
  CHECK(Walk(v, root->ino, "ffffffffffffffff").err() == ENOENT);
  // The whole tree's view is unchanged: deep/a's hash names no snapshot there.
  auto all = v.SnapshotsRoot("");
  REQUIRE(all.ok());
  CHECK(Walk(v, all->ino, HexOfHash(one->root).substr(0, 8) + "/outside").ok());
  CHECK(Walk(v, all->ino, h1).err() == ENOENT);
  RequireClean(*s);
}

// A file with two names in two directories is frozen once: its second
// name, listed before the first was frozen, takes the object the first
// made, not a second inode-cache reference to it. (Found by the kernel
// test: check said "refs 4 but 3 references" after snapshots of a tree
// with hl and d2/h, one inode.)
TEST_CASE("a hard link in another directory is frozen once; refs stay exact through prune") {
  TempDir base;
  auto s = OpenStore(base.path + "/store.db");
  uint64_t a = MakeDir(*s, kRootIno, "a");
  uint64_t f = MakeFile(*s, a, "f", "linked");
  REQUIRE(s->Link(kRootIno, "z", f).ok());  // "a" freezes (and f with it) before "z"
  uint64_t g = MakeFile(*s, kRootIno, "g", "other");
  REQUIRE(s->Link(a, "h", g).ok());  // the other order: g first, then a/h
  REQUIRE(s->TakeSnapshot("one").ok());
  RequireClean(*s);
  REQUIRE(s->Write(f, 0, "LINKED").ok());
  REQUIRE(s->TakeSnapshot("two").ok());
  RequireClean(*s);
  CHECK(*SnapRead(*s, "one", "z") == "linked");
  CHECK(*SnapRead(*s, "two", "a/f") == "LINKED");
  CHECK(*SnapRead(*s, "two", "a/h") == "other");
  Store::PrunePolicy keep1;
  keep1.keep_last = 1;
  REQUIRE(s->Prune(keep1).ok());
  RequireClean(*s);
}

TEST_CASE("snapshots share unchanged subtrees; an unchanged tree adds nothing") {
  TempDir base;
  std::string db = base.path + "/store.db";
  auto s = OpenStore(db);
  // 20 directories x 50 files.
  std::vector<uint64_t> dirs;
  for (int d = 0; d < 20; d++) {
    dirs.push_back(MakeDir(*s, kRootIno, "d" + std::to_string(d)));
    for (int i = 0; i < 50; i++)
      MakeFile(*s, dirs.back(), "f" + std::to_string(i), "content " + std::to_string(d * 100 + i));
  }
  auto a = s->TakeSnapshot();
  REQUIRE(a.ok());
  int64_t objects = Count(db, "SELECT count(*) FROM chunks WHERE kind=1");
  CHECK(objects == 1 + 20 + 1000 - 0);  // root, dirs, files (contents all differ)
  auto b = s->TakeSnapshot();
  REQUIRE(b.ok());
  CHECK(b->name != a->name);  // named by time, made unique
  CHECK(b->root == a->root);
  CHECK(Count(db, "SELECT count(*) FROM chunks WHERE kind=1") == objects);
  // One changed file: its object, its directory's and the root's.
  auto f = s->Lookup(dirs[7], "f3");
  REQUIRE(f.ok());
  REQUIRE(s->Write(f->ino, 0, "new").ok());
  auto c = s->TakeSnapshot("c");
  REQUIRE(c.ok());
  CHECK(c->root != b->root);
  CHECK(Count(db, "SELECT count(*) FROM chunks WHERE kind=1") == objects + 3);
  // A metadata change alone (chmod) also makes a new snapshot differ.
  SetAttrRequest chmod;
  chmod.set_mode = true;
  chmod.mode = 0600;
  REQUIRE(s->SetAttr(f->ino, chmod).ok());
  auto d = s->TakeSnapshot("d");
  REQUIRE(d.ok());
  CHECK(d->root != c->root);
  auto list = s->ListSnapshots();
  REQUIRE(list.ok());
  REQUIRE(list->size() == 4);
  CHECK((*list)[2].name == "c");
  CHECK(s->TakeSnapshot("c").err() == EEXIST);
  CHECK(s->TakeSnapshot("a/b").err() == EINVAL);
  RequireClean(*s);
}

TEST_CASE("diff and history") {
  TempDir base;
  auto s = OpenStore(base.path + "/store.db");
  uint64_t src = MakeDir(*s, kRootIno, "src");
  uint64_t main_c = MakeFile(*s, src, "main.c", "int main;");
  MakeFile(*s, src, "old.c", "old");
  MakeFile(*s, kRootIno, "README", "v1");
  REQUIRE(s->TakeSnapshot("one").ok());
  REQUIRE(s->Write(main_c, 0, "int main(void);").ok());
  REQUIRE(s->Unlink(src, "old.c", false).ok());
  uint64_t lib = MakeDir(*s, src, "lib");
  MakeFile(*s, lib, "util.c", "u");
  REQUIRE(s->TakeSnapshot("two").ok());
  auto d = s->Diff("one", "two", "");
  REQUIRE(d.ok());
  std::vector<std::string> got;
  for (auto& c : *d) got.push_back(std::string(1, c.what) + " " + c.path);
  CHECK(got == std::vector<std::string>{"+ src/lib/", "M src/main.c", "- src/old.c"});
  // Against the live tree, below a path.
  auto readme = s->Lookup(kRootIno, "README");
  REQUIRE(s->Write(readme->ino, 0, "v2").ok());
  auto live = s->Diff("two", "", "");
  REQUIRE(live.ok());
  REQUIRE(live->size() == 1);
  CHECK((*live)[0].path == "README");
  auto below = s->Diff("one", "two", "src/lib");
  REQUIRE(below.ok());
  REQUIRE(below->size() == 1);
  CHECK((*below)[0].what == '+');
  REQUIRE(s->TakeSnapshot("three").ok());
  REQUIRE(s->Unlink(kRootIno, "README", false).ok());
  REQUIRE(s->TakeSnapshot("four").ok());
  MakeFile(*s, kRootIno, "README", "v3");
  REQUIRE(s->TakeSnapshot("five").ok());
  auto h = s->History("README");
  REQUIRE(h.ok());
  std::vector<std::string> when;
  for (auto& v : *h) when.push_back(v.snapshot.name + (v.present ? "" : " (removed)"));
  CHECK(when == std::vector<std::string>{"five", "four (removed)", "three", "one"});
  CHECK((*h)[0].entry.size == 2);
  auto none = s->History("no/such");
  REQUIRE(none.ok());
  CHECK(none->empty());
  CHECK(s->Diff("nope", "", "").err() == ENOENT);
}

TEST_CASE("restore brings files and trees back without copying data") {
  TempDir base;
  std::string db = base.path + "/store.db";
  auto s = OpenStore(db);
  uint64_t proj = MakeDir(*s, kRootIno, "proj");
  std::string data = RandomBytes(2 << 20, 2);
  uint64_t f = MakeFile(*s, proj, "data.bin", data);
  uint64_t sub = MakeDir(*s, proj, "sub");
  MakeFile(*s, sub, "note", "keep me");
  REQUIRE(s->Create(sub, "ln", S_IFLNK | 0777, 0, 0, 0, "../data.bin").ok());
  REQUIRE(s->TakeSnapshot("before").ok());
  int64_t data_chunks = Count(db, "SELECT count(*) FROM chunks WHERE kind=0");
  // Damage: overwrite one file, delete a tree.
  REQUIRE(s->Write(f, 0, std::string(100, 'x')).ok());
  REQUIRE(s->Unlink(sub, "note", false).ok());
  REQUIRE(s->Unlink(sub, "ln", false).ok());
  REQUIRE(s->Unlink(proj, "sub", true).ok());
  REQUIRE(s->Sync(true).ok());
  // The file in place (replacing the live one), the tree elsewhere.
  auto r = s->Restore("before", "proj/data.bin", "");
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  auto back = Walk(*s, kRootIno, "proj/data.bin");
  REQUIRE(back.ok());
  CHECK(ReadAll(*s, back->ino) == data);
  auto t = s->Restore("before", "proj/sub", "proj/sub-restored");
  REQUIRE(t.ok());
  auto note = Walk(*s, kRootIno, "proj/sub-restored/note");
  REQUIRE(note.ok());
  CHECK(ReadAll(*s, note->ino) == "keep me");
  CHECK(note->uid == 1000);
  auto ln = Walk(*s, kRootIno, "proj/sub-restored/ln");
  REQUIRE(ln.ok());
  CHECK(*s->ReadLink(ln->ino) == "../data.bin");
  REQUIRE(s->Sync(true).ok());
  // No data chunk was added: only the 100 'x' bytes' chunk(s) since.
  CHECK(Count(db, "SELECT count(*) FROM chunks WHERE kind=0") <= data_chunks + 2);
  // A directory is never replaced; missing paths and parents are errors.
  CHECK(s->Restore("before", "proj/sub", "proj/sub-restored").err() == EEXIST);
  CHECK(s->Restore("before", "proj/nope", "").err() == ENOENT);
  CHECK(s->Restore("before", "proj/sub", "no/such/dir").err() == ENOENT);
  CHECK(s->Restore("nope", "proj", "x").err() == ENOENT);
  RequireClean(*s);
}

TEST_CASE("prune keeps what its rules say; gc then frees what nothing references") {
  TempDir base;
  std::string db = base.path + "/store.db";
  auto s = OpenStore(db);
  uint64_t f = MakeFile(*s, kRootIno, "f", RandomBytes(1 << 20, 3));
  REQUIRE(s->Sync(true).ok());
  for (int i = 0; i < 6; i++) {
    REQUIRE(s->Write(f, 0, RandomBytes(1 << 20, 10 + i)).ok());
    REQUIRE(s->TakeSnapshot("s" + std::to_string(i)).ok());
  }
  CHECK(s->Prune({}).err() == EINVAL);
  Store::PrunePolicy dry;
  dry.keep_last = 2;
  dry.dry_run = true;
  auto would = s->Prune(dry);
  REQUIRE(would.ok());
  CHECK(would->size() == 4);
  CHECK(s->ListSnapshots()->size() == 6);
  Store::PrunePolicy p;
  p.keep_last = 2;
  auto gone = s->Prune(p);
  REQUIRE(gone.ok());
  CHECK(gone->size() == 4);
  auto left = s->ListSnapshots();
  REQUIRE(left->size() == 2);
  CHECK((*left)[0].name == "s4");
  CHECK(SnapRead(*s, "s4", "f").ok());
  CHECK(SnapRead(*s, "s1", "f").err() == ENOENT);
  RequireClean(*s);
  // keep-daily: all six were taken within the same day: one is kept.
  Store::PrunePolicy daily;
  daily.keep_daily = 1;
  gone = s->Prune(daily);
  REQUIRE(gone.ok());
  CHECK(gone->size() == 1);
  // Everything goes: the live file, then the last snapshot; gc frees the packs.
  REQUIRE(s->Unlink(kRootIno, "f", false).ok());
  Store::PrunePolicy all;
  all.keep_last = 1;
  REQUIRE(s->Prune(all).ok());
  auto before = Count(db, "SELECT count(*) FROM chunks");
  CHECK(before > 0);  // s5 still holds its data
  // A snapshot of the now empty tree, kept alone: s5 goes with its data.
  REQUIRE(s->TakeSnapshot("empty").ok());
  REQUIRE(s->Prune(all).ok());
  REQUIRE(s->Sync(true).ok());
  // Left: the empty root directory's object (cached, and the snapshot's).
  CHECK(Count(db, "SELECT count(*) FROM chunks WHERE kind=0") == 0);
  CHECK(Count(db, "SELECT count(*) FROM chunks") == 1);
  REQUIRE(s->CollectGarbage(true).ok());
  RequireClean(*s);
}

TEST_CASE("check finds a damaged tree object") {
  TempDir base;
  std::string db = base.path + "/store.db";
  int64_t pack = 0, offset = 0;
  {
    auto s = OpenStore(db);
    uint64_t d = MakeDir(*s, kRootIno, "d");
    MakeFile(*s, d, "f", "x");
    REQUIRE(s->TakeSnapshot("s").ok());
    RequireClean(*s);
  }
  pack = Count(db, "SELECT pack FROM chunks WHERE kind=1 ORDER BY id DESC LIMIT 1");
  offset = Count(db, "SELECT offset FROM chunks WHERE kind=1 ORDER BY id DESC LIMIT 1");
  FILE* fp = fopen(PackPath(base.path, uint64_t(pack)).c_str(), "r+b");
  REQUIRE(fp);
  fseek(fp, long(offset + 6), SEEK_SET);
  fputc(0x5a, fp);
  fclose(fp);
  auto s = OpenStore(db);
  auto r = s->Check();
  CHECK_FALSE(r.ok());
  bool hash_problem = false;
  for (auto& p : r.problems) hash_problem |= p.find("does not match its hash") != std::string::npos;
  CHECK(hash_problem);
}

TEST_CASE("a failure in the middle of a snapshot leaves the store as it was") {
  // Sweep an injected I/O error over every write/sync of a snapshot that
  // builds many objects: it either completes or leaves no trace, and the
  // store serves (and snapshots) again by itself.
  struct Guard {
    ~Guard() { vfs::ClearFault(); }
  } guard;
  for (uint64_t nth = 1;; nth += 3) {
    TempDir base;
    std::string db = base.path + "/store.db";
    auto s = OpenStore(db);
    for (int d = 0; d < 5; d++) {
      uint64_t dir = MakeDir(*s, kRootIno, "d" + std::to_string(d));
      for (int i = 0; i < 20; i++) MakeFile(*s, dir, "f" + std::to_string(i), RandomBytes(3000, d * 50 + i));
    }
    REQUIRE(s->TakeSnapshot("ok").ok());
    auto f = Walk(*s, kRootIno, "d2/f7");
    REQUIRE(s->Write(f->ino, 0, "changed").ok());
    REQUIRE(s->Sync(true).ok());
    uint64_t before = vfs::OpsSeen(vfs::kWrite | vfs::kSync);
    vfs::InjectFault(vfs::kWrite | vfs::kSync, nth, SQLITE_IOERR_WRITE, false);
    auto r = s->TakeSnapshot("second");
    bool fired = vfs::FaultFired();
    vfs::ClearFault();
    INFO("fault at op " << nth << ": " << r.status().ToString());
    if (!fired) {
      REQUIRE(r.ok());
      CHECK(vfs::OpsSeen(vfs::kWrite | vfs::kSync) > before);
      break;  // past the last operation of the snapshot
    }
    REQUIRE(s->Tick().ok());
    auto list = s->ListSnapshots();
    REQUIRE(list.ok());
    CHECK(list->size() == (r.ok() ? 2u : 1u));
    CHECK(*SnapRead(*s, "ok", "d2/f7") == RandomBytes(3000, 107));
    if (r.ok()) CHECK(SnapRead(*s, "second", "d2/f7")->substr(0, 7) == "changed");
    RequireClean(*s);
    auto again = s->TakeSnapshot("third");
    REQUIRE(again.ok());
    CHECK(SnapRead(*s, "third", "d2/f7")->substr(0, 7) == "changed");
    RequireClean(*s);
    s.reset();
    s = OpenStore(db);
    RequireClean(*s);
    REQUIRE(nth < 400);
  }
}

TEST_CASE("kill -9 during snapshots, prune and gc: every completed snapshot is intact") {
  for (int round = 0; round < 4; round++) {
    TempDir base;
    std::string db = base.path + "/store.db";
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      close(fds[0]);
      auto so = Store::Open(db);
      if (!so.ok()) _exit(3);
      Store& s = **so;
      auto dir = s.Create(kRootIno, "d", S_IFDIR | 0755, 0, 0);
      if (!dir.ok()) _exit(4);
      for (uint32_t i = 0;; i++) {
        std::string name = "f" + std::to_string(i % 40);
        auto f = s.Lookup(dir->ino, name);
        if (!f.ok()) f = s.Create(dir->ino, name, S_IFREG | 0644, 0, 0);
        if (!f.ok()) _exit(5);
        std::string data = RandomBytes(20000 + i % 7 * 10000, i);
        if (!s.Write(f->ino, 0, data).ok()) _exit(6);
        if (i % 5 == 4) {
          auto snap = s.TakeSnapshot("s" + std::to_string(i));
          if (!snap.ok()) _exit(7);
          // Acknowledged: the snapshot's name and what f(i%40) held.
          if (write(fds[1], &i, 4) != 4) _exit(8);
        }
        if (i % 15 == 14) {
          Store::PrunePolicy p;
          p.keep_last = 3;
          if (!s.Prune(p).ok()) _exit(9);
          if (!s.CollectGarbage(true).ok()) _exit(10);
        }
      }
    }
    close(fds[1]);
    // The kill comes after two acknowledged snapshots at least (a slow
    // machine or ThreadSanitizer may take longer than the sleep for them).
    std::vector<uint32_t> acked;
    uint32_t v;
    while (acked.size() < 2 && read(fds[0], &v, 4) == 4) acked.push_back(v);
    usleep(300000 + round * 150000);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    while (read(fds[0], &v, 4) == 4) acked.push_back(v);
    close(fds[0]);
    INFO("round " << round << ": " << acked.size() << " snapshots acknowledged");
    REQUIRE(acked.size() >= 2);
    auto s = OpenStore(db);
    RequireClean(*s);
    auto list = s->ListSnapshots();
    REQUIRE(list.ok());
    std::map<std::string, bool> present;
    for (auto& x : *list) present[x.name] = true;
    // The newest acknowledged snapshots survive pruning (keep-last 3) and
    // hold what was written just before them.
    uint32_t last = acked.back();
    REQUIRE(present.count("s" + std::to_string(last)));
    auto got = SnapRead(*s, "s" + std::to_string(last), "d/f" + std::to_string(last % 40));
    REQUIRE(got.ok());
    size_t len = 20000 + last % 7 * 10000;  // (written over older, maybe longer data)
    CHECK(got->substr(0, len) == RandomBytes(len, last));
    for (auto& x : *list) {
      uint32_t i = uint32_t(std::stoul(x.name.substr(1)));
      auto c = SnapRead(*s, x.name, "d/f" + std::to_string(i % 40));
      REQUIRE(c.ok());
      size_t n = 20000 + i % 7 * 10000;
      CHECK(c->substr(0, n) == RandomBytes(n, i));
    }
    // And the store takes snapshots again.
    REQUIRE(s->TakeSnapshot("after").ok());
    RequireClean(*s);
  }
}

TEST_CASE("a format 2 store made by the previous release is upgraded and snapshots") {
  // tests/store/fixtures/v2-store: made by musclefs 2eeaefa (packs, no
  // snapshots): docs/a.bin (300,000 bytes), docs/a-copy.bin (the same),
  // docs/link -> a.bin, hello.txt; deleted.txt was written and removed.
  TempDir base;
  std::string src = MUSCLE_SOURCE_DIR "/tests/store/fixtures/v2-store";
  REQUIRE(system(("cp -r " + src + "/store.db " + src + "/packs " + base.path + "/").c_str()) == 0);
  REQUIRE(system(("chmod 700 " + base.path + "/packs").c_str()) == 0);
  std::string db = base.path + "/store.db";
  CHECK(Count(db, "SELECT value FROM meta WHERE key='schema'") == 2);
  std::string a_hash;
  for (int round = 0; round < 2; round++) {
    auto s = OpenStore(db);
    RequireClean(*s);
    auto a = Walk(*s, kRootIno, "docs/a.bin");
    REQUIRE(a.ok());
    CHECK(a->size == 300000);
    CHECK(ReadAll(*s, a->ino) == ReadAll(*s, Walk(*s, kRootIno, "docs/a-copy.bin")->ino));
    CHECK(ReadAll(*s, Walk(*s, kRootIno, "hello.txt")->ino) == "hello v2\n");
    CHECK(Walk(*s, kRootIno, "deleted.txt").err() == ENOENT);
    auto snap = s->TakeSnapshot("after-upgrade-" + std::to_string(round));
    REQUIRE(snap.ok());
    auto back = SnapRead(*s, snap->name, "docs/a.bin");
    REQUIRE(back.ok());
    CHECK(*back == ReadAll(*s, a->ino));
    RequireClean(*s);
  }
  CHECK(Count(db, "SELECT value FROM meta WHERE key='schema'") == store::kStoreFormat);
}

TEST_CASE("scheduled snapshots: Tick takes one when the last is old enough") {
  TempDir base;
  auto s = OpenStore(base.path + "/store.db");
  MakeFile(*s, kRootIno, "f", "x");
  REQUIRE(s->Tick().ok());
  CHECK(s->ListSnapshots()->empty());  // off by default
  s->snapshot_every = std::chrono::seconds(1);
  REQUIRE(s->Tick().ok());
  REQUIRE(s->ListSnapshots()->size() == 1);
  REQUIRE(s->Tick().ok());
  CHECK(s->ListSnapshots()->size() == 1);  // the last one is too recent
  usleep(1100000);
  REQUIRE(s->Tick().ok());
  auto list = s->ListSnapshots();
  REQUIRE(list->size() == 2);
  CHECK((*list)[1].root == (*list)[0].root);  // nothing changed: the same tree
  CHECK((*list)[1].name != (*list)[0].name);
}

TEST_CASE("a device, fifo or socket's metadata changes reach the next snapshot") {
  TempDir base;
  auto s = OpenStore(base.path + "/store.db");
  uint64_t dev = MakeDir(*s, kRootIno, "dev");
  auto fifo = s->Create(dev, "fifo", S_IFIFO | 0644, 0, 0);
  REQUIRE(fifo.ok());
  auto n1 = s->TakeSnapshot("n1");
  REQUIRE(n1.ok());
  SetAttrRequest chmod;
  chmod.set_mode = true;
  chmod.mode = 0777;
  REQUIRE(s->SetAttr(fifo->ino, chmod).ok());
  auto n2 = s->TakeSnapshot("n2");
  REQUIRE(n2.ok());
  CHECK(n2->root != n1->root);
  auto d = s->Diff("n1", "n2", "");
  REQUIRE(d.ok());
  REQUIRE(d->size() == 1);
  CHECK((*d)[0].path == "dev/fifo");
  SnapshotView v(*s);
  auto root = v.SnapshotsRoot("");
  auto f = Walk(v, root->ino, "n2/dev/fifo");
  REQUIRE(f.ok());
  CHECK((f->mode & 07777) == 0777);
  RequireClean(*s);
}

TEST_CASE("a damaged tree object nothing needs does not stop commits") {
  TempDir base;
  std::string db = base.path + "/store.db";
  {
    auto s = OpenStore(db);
    uint64_t d = MakeDir(*s, kRootIno, "d");
    MakeFile(*s, d, "a", "a");
    REQUIRE(s->TakeSnapshot("s0").ok());
    MakeFile(*s, d, "b", "b");
    // The live tree's objects, held only by the inode caches.
    REQUIRE(s->Diff("s0", "", "").ok());
  }
  // Damage d's object (the newest directory object but the root's).
  int64_t pack = Count(db, "SELECT c.pack FROM inodes i JOIN chunks c ON c.id=i.obj WHERE i.ino=2");
  int64_t offset = Count(db, "SELECT c.offset FROM inodes i JOIN chunks c ON c.id=i.obj WHERE i.ino=2");
  FILE* fp = fopen(PackPath(base.path, uint64_t(pack)).c_str(), "r+b");
  REQUIRE(fp);
  fseek(fp, long(offset + 1), SEEK_SET);
  fputc('X', fp);  // "MFS" -> "MXS": not an object any more
  fclose(fp);
  auto s = OpenStore(db);
  auto d = s->Lookup(kRootIno, "d");
  REQUIRE(d.ok());
  MakeFile(*s, kRootIno, "elsewhere", "e");
  MakeFile(*s, d->ino, "later", "l");  // drops d's (damaged) cached object
  REQUIRE(s->Sync(true).ok());
  s.reset();
  s = OpenStore(db);
  CHECK(s->Lookup(kRootIno, "elsewhere").ok());
  CHECK(s->Lookup(d->ino, "later").ok());
  auto r = s->Check();
  CHECK_FALSE(r.ok());  // the damage is reported
}

TEST_CASE("listing @snapshots continues where it was when snapshots come and go") {
  TempDir base;
  auto s = OpenStore(base.path + "/store.db");
  uint64_t f = MakeFile(*s, kRootIno, "f", "0");
  for (const char* n : {"a", "b", "c", "d"}) {
    REQUIRE(s->Write(f, 0, n).ok());
    REQUIRE(s->TakeSnapshot(n).ok());
  }
  SnapshotView v(*s);
  auto root = v.SnapshotsRoot("");
  REQUIRE(root.ok());
  auto first = v.ReadDir(root->ino, 0, 4);  // ".", "..", "a", "b"
  REQUIRE(first.ok());
  REQUIRE(first->size() == 4);
  CHECK((*first)[3].name == "b");
  Store::PrunePolicy p;
  p.keep_last = 2;  // a and b go
  REQUIRE(s->Prune(p).ok());
  REQUIRE(s->TakeSnapshot("e").ok());
  auto rest = v.ReadDir(root->ino, (*first)[3].cookie, 10);
  REQUIRE(rest.ok());
  std::vector<std::string> names;
  for (auto& e : *rest) names.push_back(e.name);
  CHECK(names == std::vector<std::string>{"c", "d", "e"});
  CHECK(v.GetAttr(root->ino)->version != root->version);
}
