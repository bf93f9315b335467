// What the store's long operations report to Store::progress
// (common/progress.h): phases in order, each begun with its total from the
// index and ended with exactly that much done: the totals are honest.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <string>
#include <vector>

#include "common/progress.h"
#include "store/store.h"
#include "tests/store/store_test_util.h"

using namespace muscle;
using namespace muscle::store;
using namespace muscle::test;

namespace {

// Records every phase, and that the calls come in order (Begin, Add...,
// End) and never go past the total.
struct Recorder : ProgressSink {
  struct Phase {
    std::string name;
    ProgressUnit unit;
    uint64_t total, done = 0;
    bool ended = false;
    bool overshot = false;  // done went past total at some point
  };
  std::vector<Phase> phases;
  void Begin(std::string_view phase, ProgressUnit unit, uint64_t total) override {
    CHECK((phases.empty() || phases.back().ended));
    phases.push_back({std::string(phase), unit, total});
  }
  void Add(uint64_t n) override {
    REQUIRE(!phases.empty());
    CHECK_FALSE(phases.back().ended);
    phases.back().done += n;
    if (phases.back().done > phases.back().total) phases.back().overshot = true;
  }
  void End() override {
    REQUIRE(!phases.empty());
    CHECK_FALSE(phases.back().overshot);
    phases.back().ended = true;
  }
  const Phase& Named(const std::string& name) {
    for (const Phase& p : phases)
      if (p.name == name) return p;
    FAIL("no phase " << name);
    return phases.front();
  }
};

// Files of 8 MiB each ("f0".."f5"), and a snapshot of them when asked.
void Fill(Store& s, bool snapshot = true) {
  for (int i = 0; i < 6; i++) WriteFile(s, "f" + std::to_string(i), RandomBytes(8 << 20, 40 + i));
  if (snapshot) REQUIRE(s.TakeSnapshot("one").ok());
  REQUIRE(s.Sync(true).ok());
}

}  // namespace

TEST_CASE("progress: check reports every chunk's bytes and every tree object, as counted up front") {
  TempDir dir;
  auto s = OpenStore(dir.path + "/store.db");
  Fill(*s);
  Recorder rec;
  s->progress = &rec;
  CheckReport r = s->Check();
  s->progress = nullptr;
  REQUIRE(r.ok());
  REQUIRE(rec.phases.size() == 2);
  const auto& chunks = rec.Named("check: re-hashing chunks");
  CHECK(chunks.unit == ProgressUnit::kBytes);
  CHECK(chunks.total == r.chunk_bytes);
  CHECK(chunks.done == chunks.total);
  CHECK(chunks.total >= (48u << 20));
  CHECK(chunks.ended);
  const auto& objects = rec.Named("check: decoding tree objects");
  CHECK(objects.unit == ProgressUnit::kItems);
  CHECK(objects.total == r.objects);
  CHECK(objects.done == objects.total);
  CHECK(objects.total > 0);
  CHECK(objects.ended);
}

TEST_CASE("progress: gc reports the live bytes it copies and the packs it sweeps; background gc reports nothing") {
  TempDir dir;
  auto s = OpenStore(dir.path + "/store.db");
  Fill(*s, false);  // no snapshot holds what is deleted
  for (int i = 0; i < 6; i += 2) REQUIRE(s->Unlink(kRootIno, "f" + std::to_string(i), false).ok());
  REQUIRE(s->Sync(true).ok());
  Recorder rec;
  s->progress = &rec;
  auto gc = s->CollectGarbage(true);
  REQUIRE(gc.ok());
  REQUIRE(rec.phases.size() == 2);
  const auto& copy = rec.Named("gc: copying live chunks");
  CHECK(copy.unit == ProgressUnit::kBytes);
  CHECK(copy.total == gc->bytes_copied);
  CHECK(copy.done == copy.total);
  CHECK(copy.total > 0);
  CHECK(copy.ended);
  const auto& punch = rec.Named("gc: punching dead records");
  CHECK(punch.total == uint64_t(Count(dir.path + "/store.db", "SELECT count(*) FROM packs")));
  CHECK(punch.done == punch.total);
  CHECK(punch.ended);
  // Tick's background gc (one pack at a time) reports nothing.
  rec.phases.clear();
  auto background = s->CollectGarbage(false);
  s->progress = nullptr;
  REQUIRE(background.ok());
  CHECK(rec.phases.empty());
  RequireClean(*s);
}

TEST_CASE("progress: upgrade --encrypt reports the bytes it seals and the tree objects it re-encodes") {
  TempDir dir;
  std::string path = dir.path + "/store.db";
  auto s = OpenStore(path);
  Fill(*s);
  uint64_t data = uint64_t(Count(path, "SELECT coalesce(sum(size), 0) FROM chunks WHERE kind=0"));
  uint64_t objects = uint64_t(Count(path, "SELECT count(*) FROM chunks WHERE kind=1"));
  Recorder rec;
  s->progress = &rec;
  Status c = s->ConvertToEncrypted(KeyOf('p'));
  s->progress = nullptr;
  INFO(c.ToString());
  REQUIRE(c.ok());
  REQUIRE(rec.phases.size() == 2);
  const auto& sealed = rec.Named("upgrade --encrypt: sealing chunks");
  CHECK(sealed.unit == ProgressUnit::kBytes);
  CHECK(sealed.total == data);
  CHECK(sealed.done == sealed.total);
  CHECK(sealed.ended);
  const auto& objs = rec.Named("upgrade --encrypt: re-encoding tree objects");
  CHECK(objs.total == objects);
  CHECK(objs.total > 0);
  CHECK(objs.done == objs.total);
  CHECK(objs.ended);
}

TEST_CASE("progress: opening a format 1 store reports the chunk bytes it moves into packs") {
  TempDir dir;
  std::string path = dir.path + "/store.db";
  {
    std::ifstream in(MUSCLE_SOURCE_DIR "/tests/store/fixtures/v1-store.db", std::ios::binary);
    REQUIRE(in);
    std::ofstream out(path, std::ios::binary);
    out << in.rdbuf();
  }
  uint64_t data = uint64_t(Count(path, "SELECT coalesce(sum(length(data)), 0) FROM chunks"));
  Recorder rec;
  auto s = Store::Open(path, nullptr, nullptr, &rec);
  INFO(s.status().ToString());
  REQUIRE(s.ok());
  CHECK((*s)->progress == nullptr);  // not kept past Open
  REQUIRE(rec.phases.size() == 1);
  const auto& moved = rec.phases[0];
  CHECK(moved.name == "upgrade: moving chunks into packs");
  CHECK(moved.unit == ProgressUnit::kBytes);
  CHECK(moved.total == data);
  CHECK(moved.total > 0);
  CHECK(moved.done == moved.total);
  CHECK(moved.ended);
  // Opening it again (format 3 now) reports nothing.
  s->reset();
  rec.phases.clear();
  auto again = Store::Open(path, nullptr, nullptr, &rec);
  REQUIRE(again.ok());
  CHECK(rec.phases.empty());
}
