// Reads and lookups on reader connections (store/read_gate.h,
// server/reader_pool.h): what a reader may answer, compaction and rewrites
// under concurrent reads, and the server answering reads while the writer
// is busy, with every acknowledged write visible to the next read.
#include <dirent.h>
#include <unistd.h>
#include <uv.h>

#include <catch2/catch.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <random>
#include <thread>

#include "server/reader_pool.h"
#include "server/store_filesystem.h"
#include "server/store_worker.h"
#include "store/store.h"
#include "tests/server/store_fs_rig.h"
#include "tests/store/store_test_util.h"

using namespace muscle;
using namespace muscle::store;
using namespace std::chrono_literals;
using namespace muscle::test;
using RefChange = ReadGate::RefChange;

namespace {

std::unique_ptr<Store> OpenReader(const std::string& path, std::shared_ptr<ReadGate> gate) {
  auto s = Store::OpenReader(path, std::move(gate));
  INFO(s.status().ToString());
  REQUIRE(s.ok());
  return std::move(*s);
}

// The whole file through `s`, or the first error.
Status ReadAll(Store& s, uint64_t ino, std::string& out) {
  out.clear();
  auto a = s.GetAttr(ino);
  if (!a.ok()) return a.status();
  std::string part;
  for (uint64_t off = 0; off < a->size; off += part.size()) {
    Status st = s.Read(ino, off, 1 << 20, part);
    if (!st.ok()) return st;
    if (part.empty()) return Status(EIO, "short read");
    out += part;
  }
  return Status::Ok();
}

// Descriptors of this process that name removed pack files.
int DeletedPacksOpen() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  while (dirent* e = readdir(d)) {
    char link[4096];
    ssize_t len = readlinkat(dirfd(d), e->d_name, link, sizeof link - 1);
    if (len <= 0) continue;
    link[len] = 0;
    if (strstr(link, ".pack (deleted)")) n++;
  }
  closedir(d);
  return n;
}

}  // namespace

TEST_CASE("readers: a reader sees commits; the gate refuses what the writer changed since") {
  TempDir base;
  std::string path = base.path + "/store.db";
  auto w = OpenStore(path);
  auto gate = w->gate();
  REQUIRE(gate);
  auto r = OpenReader(path, gate);

  uint64_t g0 = gate->generation();
  auto f = w->Create(kRootIno, "f", S_IFREG | 0644, 0, 0);
  REQUIRE(f.ok());
  // Created, acknowledged, not committed: the reader cannot see it and the
  // gate says so for the file and the directory it is in.
  CHECK(gate->IsDirty(f->ino));
  CHECK(gate->IsDirty(kRootIno));
  CHECK(r->GetAttr(f->ino).err() == ESTALE);
  CHECK(r->Lookup(kRootIno, "f").err() == ENOENT);
  CHECK_FALSE(gate->Validate(g0, {kRootIno}, false));
  CHECK_FALSE(gate->AllClean());
  REQUIRE(w->Write(f->ino, 0, "hello").ok());

  REQUIRE(w->Sync(false).ok());
  // A read begun before the commit is refused even for untouched inodes.
  CHECK_FALSE(gate->Validate(g0, {12345}, false));
  uint64_t g1 = gate->generation();
  CHECK(g1 != g0);
  CHECK(gate->AllClean());
  auto seen = r->Lookup(kRootIno, "f");
  REQUIRE(seen.ok());
  std::string data;
  REQUIRE(r->Read(f->ino, 0, 100, data).ok());
  CHECK(data == "hello");
  CHECK(gate->Validate(g1, {kRootIno, f->ino}, false));

  // A write buffered in the writer (not even in SQLite yet) makes the file
  // dirty: its reads are not the reader's to answer.
  REQUIRE(w->Write(f->ino, 5, " world").ok());
  CHECK(gate->IsDirty(f->ino));
  REQUIRE(r->Read(f->ino, 0, 100, data).ok());
  CHECK(data == "hello");  // stale, and refused:
  CHECK_FALSE(gate->Validate(g1, {f->ino}, false));
  CHECK(gate->Validate(g1, {kRootIno}, false));  // the directory did not change

  // Committed: clean again, and the reader reads the new data.
  REQUIRE(w->Sync(false).ok());
  uint64_t g2 = gate->generation();
  REQUIRE(r->Read(f->ino, 0, 100, data).ok());
  CHECK(data == "hello world");
  CHECK(gate->Validate(g2, {f->ino}, false));
}

TEST_CASE("readers: references taken and dropped through the gate keep files alive") {
  TempDir base;
  std::string path = base.path + "/store.db";
  auto w = OpenStore(path);
  auto gate = w->gate();
  auto f = w->Create(kRootIno, "f", S_IFREG | 0644, 0, 0);
  REQUIRE(f.ok());
  REQUIRE(w->Write(f->ino, 0, "kept").ok());
  REQUIRE(w->Sync(false).ok());
  auto r = OpenReader(path, gate);

  // A reader's walk to f takes the new fid's reference with its result.
  uint64_t g = gate->generation();
  REQUIRE(r->Lookup(kRootIno, "f").ok());
  REQUIRE(gate->Validate(g, {kRootIno, f->ino}, false, RefChange::kRef, f->ino));
  CHECK(gate->Referenced(f->ino));
  // Unlinked while referenced: it lives on (the writer saw the reference).
  REQUIRE(w->Unlink(kRootIno, "f", false).ok());
  REQUIRE(w->Sync(false).ok());
  std::string data;
  REQUIRE(w->Read(f->ino, 0, 10, data).ok());
  CHECK(data == "kept");
  // A reader may not drop the last reference of an unlinked file...
  g = gate->generation();
  auto a = r->GetAttr(f->ino);
  REQUIRE(a.ok());
  CHECK(a->nlink == 0);
  CHECK_FALSE(gate->Validate(g, {f->ino}, false, RefChange::kUnref, f->ino));
  CHECK(gate->Referenced(f->ino));
  // ...the writer does, and purges it.
  REQUIRE(w->Unref(f->ino).ok());
  REQUIRE(w->Sync(false).ok());
  CHECK(r->GetAttr(f->ino).err() == ESTALE);

  // The writer's claim on an unreferenced file wins over a later reader.
  auto h = w->Create(kRootIno, "h", S_IFREG | 0644, 0, 0);
  REQUIRE(h.ok());
  REQUIRE(w->Sync(false).ok());
  g = gate->generation();
  REQUIRE(r->GetAttr(h->ino).ok());
  REQUIRE(w->Unlink(kRootIno, "h", false).ok());  // no references: purged
  CHECK_FALSE(gate->Validate(g, {h->ino}, false, RefChange::kRef, h->ino));
  CHECK_FALSE(gate->Referenced(h->ino));
}

TEST_CASE("readers: compaction and rewrites under concurrent reads never show wrong data") {
  TempDir base;
  std::string path = base.path + "/store.db";
  auto w = OpenStore(path);
  auto gate = w->gate();
  constexpr int kFiles = 6;
  constexpr size_t kSize = 6u << 20;
  // Two versions of every file; odd files are rewritten in turn, even files
  // deleted, and the packs compacted while readers read the odd ones.
  std::vector<std::array<std::string, 2>> versions(kFiles);
  std::vector<uint64_t> inos(kFiles);
  for (int i = 0; i < kFiles; i++) {
    versions[i] = {RandomBytes(kSize, 100 + i), RandomBytes(kSize, 200 + i)};
    auto f = w->Create(kRootIno, "f" + std::to_string(i), S_IFREG | 0644, 0, 0);
    REQUIRE(f.ok());
    inos[i] = f->ino;
    REQUIRE(w->Write(f->ino, 0, versions[i][0]).ok());
  }
  REQUIRE(w->Sync(true).ok());

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> accepted{0}, refused{0}, wrong{0};
  std::mutex mu;
  std::string first_wrong;
  // Each reader thread gets a connection opened here: Catch's assertions
  // are the main thread's alone (ThreadSanitizer saw the threads' REQUIRE
  // race with the main thread's).
  auto reader = [&](Store* r, int seed) {
    std::mt19937 rng(seed);
    std::string data;
    while (!stop) {
      int i = 1 + 2 * int(rng() % (kFiles / 2));
      uint64_t g = gate->generation();
      Status st = ReadAll(*r, inos[i], data);
      if (!gate->Validate(g, {inos[i]}, false)) {
        refused++;
        continue;
      }
      accepted++;
      if (!st.ok() || (data != versions[i][0] && data != versions[i][1])) {
        wrong++;
        std::lock_guard<std::mutex> l(mu);
        if (first_wrong.empty())
          first_wrong = st.ok() ? "file " + std::to_string(i) + ": contents of neither version"
                                : st.ToString();
      }
    }
  };
  // A reader that read before the compaction and then sat idle.
  auto idle = OpenReader(path, gate);
  std::string before;
  REQUIRE(ReadAll(*idle, inos[1], before).ok());
  auto reader1 = OpenReader(path, gate), reader2 = OpenReader(path, gate);
  std::thread r1(reader, reader1.get(), 1), r2(reader, reader2.get(), 2);
  for (int i = 0; i < kFiles; i += 2) REQUIRE(w->Unlink(kRootIno, "f" + std::to_string(i), false).ok());
  REQUIRE(w->Sync(true).ok());
  for (int round = 1; round <= 6; round++) {
    for (int i = 1; i < kFiles; i += 2) {
      REQUIRE(w->Write(inos[i], 0, versions[i][round % 2]).ok());
      REQUIRE(w->Sync(true).ok());  // the old chunks' space is punched
    }
    auto gc = w->CollectGarbage(true);  // live chunks move, old packs go
    INFO(gc.status().ToString());
    REQUIRE(gc.ok());
    std::this_thread::sleep_for(20ms);
  }
  std::this_thread::sleep_for(100ms);
  stop = true;
  r1.join();
  r2.join();
  reader1.reset();  // (their cached packs go with them)
  reader2.reset();
  INFO("accepted " << accepted << ", refused " << refused << ", first wrong: " << first_wrong);
  CHECK(wrong == 0);
  CHECK(accepted > 0);
  auto report = w->Check();
  for (auto& p : report.problems) FAIL_CHECK(p);
  // The idle reader lets go of the removed packs, so their space is freed.
  CHECK(DeletedPacksOpen() > 0);
  idle->ReaderTick();
  CHECK(DeletedPacksOpen() == 0);
}


TEST_CASE("readers: lookups and reads are answered while the writer is busy") {
  Rig rig;
  auto made = rig.Call(p9::Tlcreate{1, "f", 2, 0644, 0}, kRootIno);
  REQUIRE(made);
  REQUIRE(std::get_if<p9::Rlcreate>(&made->msg));
  uint64_t f = rig.WalkTo("f");  // found at once (read-your-writes)
  auto wr = rig.Call(p9::Twrite{2, 0, p9::Data{"acknowledged"}}, f);
  REQUIRE(wr);
  REQUIRE(std::get_if<p9::Rwrite>(&wr->msg));
  // Acknowledged, buffered in the writer, not committed: still read back.
  auto rd = rig.Call(p9::Tread{2, 0, 100}, f);
  REQUIRE(rd);
  auto* data = std::get_if<p9::Rread>(&rd->msg);
  REQUIRE(data);
  CHECK(data->data.bytes == "acknowledged");
  // Commit (as Tfsync), then hold the writer up.
  auto fs = rig.Call(p9::Tfsync{2, 0}, f);
  REQUIRE(fs);
  rig.HoldWriter();
  uint64_t before = rig.fs->served_by_readers();
  // Walk, getattr, read, readdir, clunk: all answered with the writer stuck.
  CHECK(rig.WalkTo("f") == f);
  auto ga = rig.Call(p9::Tgetattr{2, 0x7ff}, f, 2s);
  REQUIRE(ga);
  auto* attr = std::get_if<p9::Rgetattr>(&ga->msg);
  REQUIRE(attr);
  CHECK(attr->size == 12);
  rd = rig.Call(p9::Tread{2, 0, 100}, f, 2s);
  REQUIRE(rd);
  data = std::get_if<p9::Rread>(&rd->msg);
  REQUIRE(data);
  CHECK(data->data.bytes == "acknowledged");
  auto ls = rig.Call(p9::Treaddir{1, 0, 4096}, kRootIno, 2s);
  REQUIRE(ls);
  CHECK(std::get_if<p9::Rreaddir>(&ls->msg));
  auto cl = rig.Call(p9::Tclunk{2}, f, 2s);
  REQUIRE(cl);
  CHECK(std::get_if<p9::Rclunk>(&cl->msg));
  CHECK(rig.fs->served_by_readers() - before == 5);
  rig.ReleaseWriter();
  // The writer goes on; a read after an acknowledged write of the same
  // file returns it (the file is dirty, so the writer answers).
  wr = rig.Call(p9::Twrite{2, 12, p9::Data{" and more"}}, f);
  REQUIRE(wr);
  rd = rig.Call(p9::Tread{2, 0, 100}, f);
  REQUIRE(rd);
  data = std::get_if<p9::Rread>(&rd->msg);
  REQUIRE(data);
  CHECK(data->data.bytes == "acknowledged and more");
}

TEST_CASE("readers: a read of a file with acknowledged, uncommitted writes waits for the writer") {
  Rig rig;
  auto made = rig.Call(p9::Tlcreate{1, "f", 2, 0644, 0}, kRootIno);
  REQUIRE(made);
  auto* created = std::get_if<p9::Rlcreate>(&made->msg);
  REQUIRE(created);
  uint64_t f = created->qid.path;
  REQUIRE(rig.Call(p9::Twrite{2, 0, p9::Data{"old"}}, f));
  REQUIRE(rig.Call(p9::Tfsync{2, 0}, f));  // "old" committed
  auto wr = rig.Call(p9::Twrite{2, 0, p9::Data{"new"}}, f);
  REQUIRE(wr);
  REQUIRE(std::get_if<p9::Rwrite>(&wr->msg));  // acknowledged, not committed
  rig.HoldWriter();
  // The writer is busy, so reads are offered to readers; this one names a
  // dirty file, and a reader would answer "old".
  std::optional<p9::FsReply> got;
  rig.Send(p9::Tread{2, 0, 100}, f, [&](p9::FsReply r) { got = std::move(r); });
  rig.RunUntil([&] { return got.has_value(); }, 300ms);
  CHECK_FALSE(got);  // waiting for the writer
  rig.ReleaseWriter();
  rig.RunUntil([&] { return got.has_value(); }, 5s);
  REQUIRE(got);
  auto* data = std::get_if<p9::Rread>(&got->msg);
  REQUIRE(data);
  CHECK(data->data.bytes == "new");
}

TEST_CASE("readers: a read sent after a write of the same file, both in flight, sees the write") {
  Rig rig;
  auto made = rig.Call(p9::Tlcreate{1, "f", 2, 0644, 0}, kRootIno);
  REQUIRE(made);
  uint64_t f = std::get<p9::Rlcreate>(made->msg).qid.path;
  REQUIRE(rig.Call(p9::Twrite{2, 0, p9::Data{"old"}}, f));
  REQUIRE(rig.Call(p9::Tfsync{2, 0}, f));  // committed: the file is clean
  rig.HoldWriter();
  // Pipelined, as one session sends them: the write waits behind the busy
  // writer; the read must not overtake it on a reader.
  std::vector<p9::FsReply> replies;
  for (p9::Message m : {p9::Message(p9::Twrite{2, 0, p9::Data{"new"}}), p9::Message(p9::Tread{2, 0, 100})})
    rig.Send(std::move(m), f, [&](p9::FsReply r) { replies.push_back(std::move(r)); });
  rig.ReleaseWriter();
  rig.RunUntil([&] { return replies.size() >= 2; }, 5s);
  REQUIRE(replies.size() == 2);
  REQUIRE(std::get_if<p9::Rwrite>(&replies[0].msg));
  auto* data = std::get_if<p9::Rread>(&replies[1].msg);
  REQUIRE(data);
  CHECK(data->data.bytes == "new");
}

TEST_CASE("readers: reads in flight are answered by the readers while the writer answers one") {
  Rig rig;
  auto made = rig.Call(p9::Tlcreate{1, "f", 2, 0644, 0}, kRootIno);
  REQUIRE(made);
  uint64_t f = std::get<p9::Rlcreate>(made->msg).qid.path;
  REQUIRE(rig.Call(p9::Twrite{2, 0, p9::Data{"committed"}}, f));
  REQUIRE(rig.Call(p9::Tfsync{2, 0}, f));  // the file is clean
  auto submit = [&](std::vector<p9::FsReply>& into) {
    rig.Send(p9::Tread{2, 0, 100}, f, [&into](p9::FsReply r) { into.push_back(std::move(r)); });
  };
  // The first read finds the writer idle and is queued there; the writer
  // is then held up behind it (its reply not yet delivered: the loop has
  // not run).
  std::vector<p9::FsReply> first, later;
  submit(first);
  rig.HoldWriter();
  // A read changes nothing: the next reads of the same file need not wait
  // for it, and the readers answer them with the writer stuck.
  uint64_t before = rig.fs->served_by_readers();
  for (int i = 0; i < 3; i++) submit(later);
  rig.RunUntil([&] { return later.size() >= 3; }, 2s);
  CHECK(later.size() == 3);
  CHECK(rig.fs->served_by_readers() - before == 3);
  rig.ReleaseWriter();
  rig.RunUntil([&] { return !first.empty(); }, 5s);
  REQUIRE(first.size() == 1);
  for (auto* rs : {&first, &later})
    for (auto& r : *rs) {
      auto* data = std::get_if<p9::Rread>(&r.msg);
      REQUIRE(data);
      CHECK(data->data.bytes == "committed");
    }
}

TEST_CASE("readers: a walk sent after a rename, both in flight, never overtakes it") {
  // /a/f renamed to /b/g by Trename (it names the file and the new
  // directory, not /a); walks of both paths from the root sent behind it.
  Rig rig;
  auto a = rig.Call(p9::Tmkdir{1, "a", 0755, 0}, kRootIno);
  auto b = rig.Call(p9::Tmkdir{1, "b", 0755, 0}, kRootIno);
  REQUIRE(a);
  REQUIRE(b);
  uint64_t ia = std::get<p9::Rmkdir>(a->msg).qid.path, ib = std::get<p9::Rmkdir>(b->msg).qid.path;
  auto made = rig.Call(p9::Tlcreate{1, "f", 2, 0644, 0}, ia);
  REQUIRE(made);
  uint64_t f = std::get<p9::Rlcreate>(made->msg).qid.path;
  REQUIRE(rig.Call(p9::Tfsync{2, 0}, f));  // committed: nothing dirty
  rig.HoldWriter();
  std::vector<std::pair<int, p9::FsReply>> replies;
  auto submit = [&](int which, p9::Message m, uint64_t ino, uint64_t ino2) {
    rig.Send(std::move(m), ino, [&, which](p9::FsReply r) { replies.emplace_back(which, std::move(r)); }, ino2);
  };
  submit(0, p9::Trename{2, 3, "g"}, f, ib);
  submit(1, p9::Twalk{1, 4, {"a", "f"}}, kRootIno, 0);
  submit(2, p9::Twalk{1, 5, {"b", "g"}}, kRootIno, 0);
  // Give the readers time to answer (wrongly) before the writer runs.
  rig.RunUntil([] { return false; }, 100ms);
  rig.ReleaseWriter();
  rig.RunUntil([&] { return replies.size() >= 3; }, 5s);
  REQUIRE(replies.size() == 3);
  for (auto& [which, r] : replies) {
    INFO("request " << which);
    if (which == 0) {
      CHECK(std::get_if<p9::Rrename>(&r.msg));
    } else if (which == 1) {  // the old path: gone (only "a" walked)
      auto* w = std::get_if<p9::Rwalk>(&r.msg);
      REQUIRE(w);
      CHECK(w->wqids.size() == 1);
    } else {  // the new path: there
      auto* w = std::get_if<p9::Rwalk>(&r.msg);
      REQUIRE(w);
      CHECK(w->wqids.size() == 2);
    }
  }
}
