// The bucket backend (store/bucket_pack_store.h) beyond the ChunkStore
// contract (chunk_store_test.cc runs that on it too): uploads after Sync,
// eviction and reads from the bucket, a bucket that is down, crashes
// between upload and commit, roll-backs of uploaded packs, and a whole
// store on it. The bucket is a directory here (s3/dir_object_store.h), with
// injected failures; tests/s3 runs the same store against a real Ceph RGW.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <mutex>
#include <thread>
#include <fstream>

#include "s3/dir_object_store.h"
#include "store/bucket_pack_store.h"
#include "store/sha256.h"
#include "store/store.h"
#include "tests/test_util.h"

using namespace muscle;
using namespace muscle::store;

namespace {

struct Hashed {
  std::string data;
  unsigned char hash[32];
  explicit Hashed(std::string d) : data(std::move(d)) { Sha256(data.data(), data.size(), hash); }
};

struct Fixture {
  test::TempDir base;
  std::string cache = base.path + "/cache";
  std::shared_ptr<s3::DirObjectStore> bucket = std::make_shared<s3::DirObjectStore>(base.path + "/bucket");
  BucketPackStore::Options options;
  Fixture() {
    options.pack_target = 64u << 10;
    options.retry_first_s = 0.01;
    options.retry_max_s = 0.05;
    options.seal_after_s = 3600;  // by size only, unless a test says otherwise
    options.quiet_seal_s = 0;
  }
  std::unique_ptr<BucketPackStore> Make() { return std::make_unique<BucketPackStore>(bucket, cache, options); }
  size_t Objects() {
    auto l = bucket->List("packs/");
    REQUIRE(l.ok());
    return l->size();
  }
  bool Cached(uint64_t id) {
    char name[32];
    snprintf(name, sizeof name, "/%016llx.pack", (unsigned long long)id);
    return access((cache + name).c_str(), F_OK) == 0;
  }
};

PutResult Put(ChunkStore& cs, const Hashed& h) {
  auto p = cs.Put(h.data, h.hash);
  INFO(p.status().ToString());
  REQUIRE(p.ok());
  return *p;
}

std::string ReadBack(ChunkStore& cs, const PutResult& p, size_t size) {
  std::string out(size, '\0');
  Status s = cs.Read(p.at, size, 0, size, out.data());
  INFO(s.ToString());
  REQUIRE(s.ok());
  return out;
}

// Puts `n` chunks of 20,000 bytes (three to a 64 KiB pack) and syncs.
std::vector<std::pair<Hashed, PutResult>> Fill(BucketPackStore& cs, int n, uint32_t seed) {
  std::vector<std::pair<Hashed, PutResult>> out;
  for (int i = 0; i < n; i++) {
    Hashed h(test::RandomBytes(20000, seed + uint32_t(i)));
    PutResult p = Put(cs, h);
    out.emplace_back(std::move(h), p);
  }
  REQUIRE(cs.Sync().ok());
  return out;
}

}  // namespace

TEST_CASE("bucket packs: sealed packs upload after Sync, are evicted, and are read from the bucket",
          "[bucket]") {
  Fixture f;
  f.options.cache_limit = 200u << 10;  // three packs
  f.options.read_ahead = 64u << 10;
  auto cs = f.Make();
  REQUIRE(cs->Open("owner-1", {}).ok());
  auto chunks = Fill(*cs, 30, 100);  // 10 packs, 9 sealed
  REQUIRE(cs->Drain(10).ok());
  REQUIRE(cs->Sync().ok());  // (evicts, as every commit does)
  CHECK(f.Objects() == 9);
  BucketStats st = cs->stats();
  CHECK(st.uploaded_packs == 9);
  CHECK(st.pending_packs == 0);
  CHECK(st.evictions >= 6);
  CHECK(st.cached_bytes <= f.options.cache_limit);
  // The open pack is never evicted; the first ones are gone from the cache.
  CHECK(f.Cached(cs->mark().container));
  CHECK_FALSE(f.Cached(1));
  // Every chunk reads back, whether from the cache or the bucket; a pack
  // read from the bucket costs one ranged GET for all its chunks (read-ahead).
  uint64_t before = f.bucket->calls("range");
  for (auto& [h, p] : chunks) CHECK(ReadBack(*cs, p, h.data.size()) == h.data);
  uint64_t gets = f.bucket->calls("range") - before;
  CHECK(gets >= 6);
  CHECK(gets <= 9);
  // A reader on another thread's instance reads the evicted packs too.
  auto reader = cs->NewReader();
  REQUIRE(reader.ok());
  CHECK(ReadBack(**reader, chunks[0].second, 20000) == chunks[0].first.data);
  // check's walk of an evicted pack fetches it.
  std::vector<ChunkRecord> records;
  REQUIRE(cs->Records(1, chunks[2].second.at.offset + 20000, records).ok());
  CHECK(records.size() == 3);
}

TEST_CASE("bucket packs: an open pack with old data is sealed early and uploaded, once, and stays "
          "sealed after a restart", "[bucket]") {
  Fixture f;
  f.options.seal_after_s = 0.2;
  Hashed a(test::RandomBytes(20000, 1)), b(test::RandomBytes(20000, 2)), c(test::RandomBytes(20000, 3));
  uint64_t sealed_size = 0;
  PutResult pa;
  {
    auto cs = f.Make();
    REQUIRE(cs->Open("owner-1", {}).ok());
    pa = Put(*cs, a);
    REQUIRE(cs->Sync().ok());
    cs->Idle();  // too young yet
    REQUIRE(cs->Drain(5).ok());
    CHECK(f.Objects() == 0);
    CHECK(cs->stats().open_bytes > 0);
    usleep(300000);
    cs->Idle();  // the store is idle: seal it and upload it
    REQUIRE(cs->Drain(5).ok());
    CHECK(f.Objects() == 1);
    BucketStats st = cs->stats();
    CHECK(st.open_bytes == 0);
    CHECK(st.pending_packs == 0);
    CHECK(st.uploaded_packs == 1);
    sealed_size = cs->mark().size;
    CHECK(cs->mark().container == 1);  // (the mark stays until the next Put)
    // The next Put starts pack 2 and reports pack 1 sealed, which is not
    // uploaded a second time.
    PutResult pb = Put(*cs, b);
    CHECK(pb.started);
    CHECK(pb.at.container == 2);
    CHECK(pb.sealed == ContainerMark{1, sealed_size});
    REQUIRE(cs->Sync().ok());
    REQUIRE(cs->Drain(5).ok());
    CHECK(cs->stats().uploads == 1);
    CHECK(f.Objects() == 1);
    // A trickle: data in the open pack since long enough is sealed at Sync.
    usleep(300000);
    REQUIRE(cs->Sync().ok());
    REQUIRE(cs->Drain(5).ok());
    CHECK(f.Objects() == 2);
    CHECK(cs->stats().uploads == 2);
  }
  // After a restart whose last pack (1) was sealed early and uploaded,
  // appends go to a new pack, never into the uploaded one.
  f.options.cache_limit = 1;  // and evict what is uploaded
  auto cs = f.Make();
  REQUIRE(cs->Open("owner-1", {{1, sealed_size}}).ok());
  PutResult pc = Put(*cs, c);
  CHECK(pc.at.container == 2);
  CHECK(pc.sealed == ContainerMark{1, sealed_size});
  REQUIRE(cs->Sync().ok());
  CHECK(f.Cached(1));  // what a failed commit would roll back to
  REQUIRE(cs->Sync().ok());
  CHECK_FALSE(f.Cached(1));
  CHECK(ReadBack(*cs, pa, a.data.size()) == a.data);
  CHECK(ReadBack(*cs, pc, c.data.size()) == c.data);
  CHECK(cs->stats().uploads == 0);  // nothing uploaded again
}

TEST_CASE("bucket packs: a failed commit after an early seal rolls back to a pack that is still "
          "there, though the cache is full", "[bucket]") {
  Fixture f;
  f.options.seal_after_s = 0.1;
  f.options.cache_limit = 1;  // evict every uploaded pack it may
  Hashed a(test::RandomBytes(20000, 1)), b(test::RandomBytes(20000, 2)), c(test::RandomBytes(20000, 3));
  auto cs = f.Make();
  REQUIRE(cs->Open("owner-1", {}).ok());
  PutResult pa = Put(*cs, a);
  REQUIRE(cs->Sync().ok());
  usleep(150000);
  REQUIRE(cs->Sync().ok());  // sealed early, and committed as the open pack
  ContainerMark committed = cs->mark();
  REQUIRE(committed.container == 1);
  REQUIRE(cs->Drain(5).ok());
  REQUIRE(cs->stats().uploaded_packs == 1);
  PutResult pb = Put(*cs, b);  // starts pack 2
  REQUIRE(pb.at.container == 2);
  REQUIRE(cs->Sync().ok());    // evicts what it may; then the commit fails:
  REQUIRE(cs->RollBackTo(committed).ok());
  CHECK(f.Cached(1));
  CHECK(ReadBack(*cs, pa, a.data.size()) == a.data);
  PutResult pc = Put(*cs, c);  // appends to pack 1 again
  CHECK(pc.at.container == 1);
  REQUIRE(cs->Sync().ok());
  ContainerMark now = cs->mark();
  cs.reset();
  auto again = f.Make();
  Status open = again->Open("owner-1", {{now.container, now.size}});
  INFO(open.ToString());
  REQUIRE(open.ok());
  CHECK(ReadBack(*again, pa, a.data.size()) == a.data);
  CHECK(ReadBack(*again, pc, c.data.size()) == c.data);
}

TEST_CASE("bucket packs: a bucket that is down fills the cache up to its limit, then ENOSPC; all "
          "uploads when it is back",
          "[bucket]") {
  Fixture f;
  f.options.cache_limit = 300u << 10;
  auto cs = f.Make();
  REQUIRE(cs->Open("owner-1", {}).ok());
  f.bucket->SetDown(ECONNREFUSED);
  std::vector<std::pair<Hashed, PutResult>> acked;
  Status refused;
  for (int i = 0; i < 40 && refused.ok(); i++) {
    Hashed h(test::RandomBytes(20000, 200 + uint32_t(i)));
    auto p = cs->Put(h.data, h.hash);
    if (!p.ok()) {
      refused = p.status();
      break;
    }
    REQUIRE(cs->Sync().ok());
    acked.emplace_back(std::move(h), *p);
  }
  INFO(refused.ToString());
  CHECK(refused.err() == ENOSPC);
  CHECK(refused.message().find("not yet uploaded") != std::string::npos);
  CHECK(refused.message().find("refused") != std::string::npos);  // the last upload error
  CHECK(acked.size() >= 10);
  BucketStats st = cs->stats();
  CHECK(st.upload_failures >= 1);
  CHECK(st.uploaded_packs == 0);
  // Everything acknowledged is still readable from the cache.
  for (auto& [h, p] : acked) CHECK(ReadBack(*cs, p, h.data.size()) == h.data);
  f.bucket->SetDown(0);
  REQUIRE(cs->Drain(10).ok());
  CHECK(cs->stats().pending_packs == 0);
  CHECK(f.Objects() == (acked.size() - 1) / 3);  // the open pack waits to be sealed
  CHECK(cs->stats().last_error.empty());
  Hashed more(test::RandomBytes(20000, 999));
  Put(*cs, more);
  REQUIRE(cs->Sync().ok());
}

TEST_CASE("bucket packs: a crash between upload and index commit leaves no dangling object or row",
          "[bucket]") {
  Fixture f;
  auto cs = f.Make();
  REQUIRE(cs->Open("owner-1", {}).ok());
  auto first = Fill(*cs, 4, 300);  // pack 1 sealed, pack 2 open
  REQUIRE(cs->Drain(10).ok());
  ContainerMark committed = cs->mark();
  std::map<uint64_t, uint64_t> index = {{1, first[2].second.at.offset + 20000}, {committed.container, committed.size}};
  // More packs sealed, synced and uploaded, but the index commit that would
  // name them never happens (the crash).
  Fill(*cs, 9, 400);
  REQUIRE(cs->Drain(10).ok());
  CHECK(f.Objects() == 4);
  // And an upload cut short before its manifest line: an object nobody names.
  REQUIRE(f.bucket->Put("packs/0123456789abcdef0123456789abcdef", "torn").ok());
  cs.reset();
  cs = f.Make();
  REQUIRE(cs->Open("owner-1", index).ok());
  REQUIRE(cs->Drain(10).ok());
  // Only pack 1 (committed, sealed) is left in the bucket; what the index
  // names is readable; the next appends continue the committed open pack.
  CHECK(f.Objects() == 1);
  CHECK(cs->mark() == committed);
  for (auto& [h, p] : first) CHECK(ReadBack(*cs, p, h.data.size()) == h.data);
  CHECK(cs->stats().uploaded_packs == 1);
}

TEST_CASE("bucket packs: an uploaded pack rolled back is deleted from the bucket, even mid-upload",
          "[bucket]") {
  Fixture f;
  auto cs = f.Make();
  REQUIRE(cs->Open("owner-1", {}).ok());
  Fill(*cs, 1, 500);
  ContainerMark committed = cs->mark();
  // A transaction that seals packs (uploaded at its Sync) and then fails.
  Fill(*cs, 6, 510);
  REQUIRE(cs->Drain(10).ok());
  CHECK(f.Objects() == 2);
  REQUIRE(cs->RollBackTo(committed).ok());
  REQUIRE(cs->Drain(10).ok());
  CHECK(f.Objects() == 0);
  CHECK(cs->stats().uploaded_packs == 0);
  // Now with the upload in flight when the roll-back comes.
  std::atomic<bool> release{false};
  f.bucket->SetFault([&](std::string_view op, const std::string&) {
    if (op == "put")
      while (!release) usleep(1000);
    return 0;
  });
  Fill(*cs, 6, 520);
  usleep(20000);
  REQUIRE(cs->RollBackTo(committed).ok());
  release = true;
  REQUIRE(cs->Drain(10).ok());
  f.bucket->SetFault(nullptr);
  CHECK(f.Objects() == 0);
  // The pack ids are used again for new data, uploaded under new names.
  auto again = Fill(*cs, 6, 530);
  REQUIRE(cs->Drain(10).ok());
  CHECK(f.Objects() == 2);
  for (auto& [h, p] : again) CHECK(ReadBack(*cs, p, h.data.size()) == h.data);
  cs.reset();
  cs = f.Make();
  std::map<uint64_t, uint64_t> index;
  for (uint64_t id = 1; id <= again.back().second.at.container; id++) index[id] = 0;
  // (lengths: as the packs are; the last one is the open pack)
  for (auto& [h, p] : again) index[p.at.container] = std::max(index[p.at.container], p.at.offset + 20000);
  index[1] = std::max(index[1], committed.size);
  REQUIRE(cs->Open("owner-1", index).ok());
  for (auto& [h, p] : again) CHECK(ReadBack(*cs, p, h.data.size()) == h.data);
}

TEST_CASE("bucket packs: what cannot be trusted is refused at open", "[bucket]") {
  Fixture f;
  auto cs = f.Make();
  REQUIRE(cs->Open("owner-1", {}).ok());
  auto chunks = Fill(*cs, 4, 600);
  REQUIRE(cs->Drain(10).ok());
  CHECK(f.Cached(1));
  REQUIRE(unlink((f.cache + "/0000000000000001.pack").c_str()) == 0);  // as an eviction does
  ContainerMark m = cs->mark();
  uint64_t sealed_size = chunks[2].second.at.offset + 20000;
  cs.reset();
  // Another store's bucket prefix.
  cs = f.Make();
  CHECK(cs->Open("owner-2", {{1, sealed_size}, {m.container, m.size}}).err() == EEXIST);
  // A committed pack neither cached nor uploaded.
  cs = f.Make();
  Status s = cs->Open("owner-1", {{1, sealed_size}, {m.container, m.size}, {m.container + 1, 16}});
  CHECK(s.err() == EIO);
  CHECK(s.message().find("neither in the cache") != std::string::npos);
  // An uploaded pack whose committed length differs is not used: evicted
  // and not in the bucket under that length, it is missing.
  cs = f.Make();
  CHECK(cs->Open("owner-1", {{1, sealed_size - 1}, {m.container, m.size}}).err() == EIO);
  // The bucket unreachable at start: a clear error, nothing touched.
  f.bucket->SetDown(ETIMEDOUT);
  cs = f.Make();
  s = cs->Open("owner-1", {{1, sealed_size}, {m.container, m.size}});
  CHECK(s.err() == ETIMEDOUT);
  CHECK(s.message().find("cannot reach the bucket") != std::string::npos);
}

TEST_CASE("bucket packs: a whole store, its readers, gc and check, reopened on an empty cache", "[bucket]") {
  Fixture f;
  // gc's deletes wait for the upload of the pack its moved records went to:
  // seal that one at the next commit.
  f.options.seal_after_s = 0;
  f.options.pack_target = 256u << 10;
  f.options.cache_limit = 1u << 20;
  std::string path = f.base.path + "/store.db";
  std::string a = test::RandomBytes(3u << 20, 700), b = test::RandomBytes(1u << 20, 701);
  BucketPackStore* chunks = nullptr;
  {
    auto owned = f.Make();
    chunks = owned.get();
    auto opened = Store::Open(path, std::move(owned));
    INFO(opened.status().ToString());
    REQUIRE(opened.ok());
    Store& s = **opened;
    auto fa = s.Create(kRootIno, "a", S_IFREG | 0644, 0, 0);
    auto fb = s.Create(kRootIno, "b", S_IFREG | 0644, 0, 0);
    REQUIRE(fa.ok());
    REQUIRE(fb.ok());
    REQUIRE(s.Write(fa->ino, 0, a).ok());
    REQUIRE(s.Write(fb->ino, 0, b).ok());
    REQUIRE(s.Sync(true).ok());
    REQUIRE(chunks->Drain(10).ok());
    CHECK(chunks->stats().uploaded_packs >= 12);
    auto rc = s.NewChunkReader();
    REQUIRE(rc.ok());
    auto reader = Store::OpenReader(path, s.gate(), std::move(*rc));
    REQUIRE(reader.ok());
    std::string out;
    REQUIRE((*reader)->Read(fa->ino, 0, uint32_t(a.size()), out).ok());
    CHECK(out == a);
    REQUIRE(s.Unlink(kRootIno, "a", false).ok());
    REQUIRE(s.Sync(true).ok());
    auto gc = s.CollectGarbage(true);
    INFO(gc.status().ToString());
    REQUIRE(gc.ok());
    CHECK(gc->packs_removed >= 8);
    REQUIRE(chunks->Drain(10).ok());
    CheckReport r = s.Check();
    INFO((r.problems.empty() ? "" : r.problems[0]));
    CHECK(r.ok());
  }
  // gc deleted the dead packs from the bucket too.
  CHECK(f.Objects() <= 8);
  // Every uploaded pack evicted at open: the sealed packs come from the
  // bucket. (The open pack lives only in the cache until it is sealed.)
  f.options.cache_limit = 1;
  {
    auto opened = Store::Open(path, f.Make());
    INFO(opened.status().ToString());
    REQUIRE(opened.ok());
    Store& s = **opened;
    auto fb = s.Lookup(kRootIno, "b");
    REQUIRE(fb.ok());
    std::string out;
    REQUIRE(s.Read(fb->ino, 0, uint32_t(b.size()), out).ok());
    CHECK(out == b);
    CheckReport r = s.Check();
    INFO((r.problems.empty() ? "" : r.problems[0]));
    CHECK(r.ok());
    CHECK(f.bucket->calls("range") > 0);
  }
}

namespace {

// Waits up to 5 s for `done`.
bool WaitFor(const std::function<bool()>& done) {
  for (int i = 0; i < 500; i++) {
    if (done()) return true;
    usleep(10000);
  }
  return done();
}

// 30 chunks of 20,000 bytes in 10 packs, the 9 sealed ones uploaded and
// evicted (every later read of them goes to the bucket).
std::vector<std::pair<Hashed, PutResult>> FillEvicted(Fixture& f, BucketPackStore& cs) {
  auto chunks = Fill(cs, 30, 100);
  REQUIRE(cs.Drain(10).ok());
  REQUIRE(cs.Sync().ok());  // evicts
  for (uint64_t id = 1; id <= 9; id++) REQUIRE_FALSE(f.Cached(id));
  return chunks;
}

}  // namespace

TEST_CASE("bucket packs: the open pack is sealed when the store goes quiet, at most once per "
          "seal_after unless it is big, and not while uploads are pending", "[bucket]") {
  Fixture f;
  f.options.quiet_seal_s = 0.2;
  f.options.pack_target = 256u << 10;  // "big" from 64 KiB on
  auto cs = f.Make();
  REQUIRE(cs->Open("owner-1", {}).ok());
  Hashed a(test::RandomBytes(1000, 1));
  Put(*cs, a);
  REQUIRE(cs->Sync().ok());
  cs->Idle();  // a Put just now: not quiet yet
  REQUIRE(cs->Drain(5).ok());
  CHECK(f.Objects() == 0);
  usleep(300000);
  cs->Idle();  // quiet: sealed and uploaded, long before seal_after (an hour)
  REQUIRE(cs->Drain(5).ok());
  CHECK(f.Objects() == 1);
  CHECK(cs->stats().open_bytes == 0);
  // A trickle: the next small pack waits (seal_after since the last early
  // seal has not passed) ...
  for (int i = 0; i < 3; i++) {
    Hashed h(test::RandomBytes(1000, 10 + uint32_t(i)));
    Put(*cs, h);
    REQUIRE(cs->Sync().ok());
    usleep(300000);
    cs->Idle();
  }
  REQUIRE(cs->Drain(5).ok());
  CHECK(f.Objects() == 1);
  CHECK(cs->stats().open_bytes > 0);
  // ... unless it is big; and not while an upload is pending (the bucket
  // down: the sealed pack before it stays queued).
  f.bucket->SetDown(ECONNREFUSED);
  std::vector<std::pair<Hashed, PutResult>> more;
  for (int i = 0; i < 16; i++) {  // 320,000 bytes: a full pack sealed, ~68 KiB open
    Hashed h(test::RandomBytes(20000, 20 + uint32_t(i)));
    PutResult p = Put(*cs, h);
    more.emplace_back(std::move(h), p);
  }
  REQUIRE(cs->Sync().ok());
  REQUIRE(cs->stats().pending_packs == 1);
  REQUIRE(cs->stats().open_bytes >= (64u << 10));
  usleep(300000);
  cs->Idle();
  CHECK(cs->stats().pending_packs == 1);  // the open pack not sealed
  f.bucket->SetDown(0);
  REQUIRE(cs->Drain(5).ok());
  cs->Idle();
  REQUIRE(cs->Drain(5).ok());
  CHECK(f.Objects() == 3);
  CHECK(cs->stats().open_bytes == 0);
  CHECK(cs->stats().pending_packs == 0);
  for (auto& [h, p] : more) CHECK(ReadBack(*cs, p, h.data.size()) == h.data);
}

TEST_CASE("bucket packs: sequential reads from the bucket fetch ahead, into the next packs, each "
          "range once", "[bucket]") {
  Fixture f;
  f.options.cache_limit = 1;  // evict every uploaded pack
  f.options.read_ahead = 16u << 10;  // 4 ranges to a pack
  f.options.read_ahead_slots = 8;
  f.options.read_ahead_depth = 3;
  auto cs = f.Make();
  REQUIRE(cs->Open("owner-1", {}).ok());
  auto chunks = FillEvicted(f, *cs);
  uint64_t before = f.bucket->calls("range");
  // The first chunk: its ranges on demand; the second range read follows
  // the first, so the next three are fetched in the background.
  CHECK(ReadBack(*cs, chunks[0].second, 20000) == chunks[0].first.data);
  CHECK(ReadBack(*cs, chunks[1].second, 20000) == chunks[1].first.data);
  CHECK(WaitFor([&] { return cs->stats().reads_ahead >= 3; }));
  // Every chunk of the 9 uploaded packs reads back, every range fetched
  // once (9 packs of 4 ranges at most: no range twice), most of them ahead.
  for (int i = 0; i < 27; i++) CHECK(ReadBack(*cs, chunks[i].second, 20000) == chunks[i].first.data);
  uint64_t gets = f.bucket->calls("range") - before;
  CHECK(gets <= 36);
  BucketStats st = cs->stats();
  CHECK(st.bucket_reads == gets);
  CHECK(st.reads_ahead >= gets - 4);
}

TEST_CASE("bucket packs: readers share the fetched ranges: one GET for a range however many read it",
          "[bucket]") {
  Fixture f;
  f.options.cache_limit = 1;
  f.options.read_ahead = 64u << 10;  // a pack in one range
  auto cs = f.Make();
  REQUIRE(cs->Open("owner-1", {}).ok());
  auto chunks = FillEvicted(f, *cs);
  // Slow GETs, so that the readers' reads overlap.
  f.bucket->SetFault([](std::string_view op, const std::string&) {
    if (op == "range") usleep(20000);
    return 0;
  });
  uint64_t before = f.bucket->calls("range");
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; t++) {
    auto reader = cs->NewReader();
    REQUIRE(reader.ok());
    threads.emplace_back([&, r = std::shared_ptr<ChunkStore>(std::move(*reader))] {
      for (int i = 0; i < 27; i++) {
        std::string out(20000, '\0');
        Status s = r->Read(chunks[i].second.at, 20000, 0, 20000, out.data());
        if (!s.ok() || out != chunks[i].first.data) wrong++;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(wrong == 0);
  CHECK(f.bucket->calls("range") - before <= 9);
}

TEST_CASE("bucket packs: a failed bucket read answers EIO to its readers and the next read fetches "
          "again; closing with fetches queued ends them", "[bucket]") {
  Fixture f;
  f.options.cache_limit = 1;
  f.options.read_ahead = 16u << 10;
  auto cs = f.Make();
  REQUIRE(cs->Open("owner-1", {}).ok());
  auto chunks = FillEvicted(f, *cs);
  std::atomic<int> fail{EIO};
  std::mutex mu;
  std::string first_key;  // the first pack's object
  std::atomic<bool> fail_others{false};
  f.bucket->SetFault([&](std::string_view op, const std::string& key) {
    if (op != "range") return 0;
    {
      std::lock_guard<std::mutex> l(mu);
      if (first_key.empty()) first_key = key;
      if (fail_others && key != first_key) return EIO;
    }
    return fail.load();
  });
  std::string out(20000, '\0');
  Status s = cs->Read(chunks[0].second.at, 20000, 0, 20000, out.data());
  CHECK(s.err() == EIO);
  s = cs->Read(chunks[0].second.at, 20000, 0, 20000, out.data());
  CHECK(s.err() == EIO);
  CHECK(cs->stats().reads_ahead == 0);
  // Fetched again by the next read; the ranges it fetches ahead of the
  // next pack fail, and are fetched again when read.
  fail = 0;
  fail_others = true;
  uint64_t before = f.bucket->calls("range");
  CHECK(ReadBack(*cs, chunks[0].second, 20000) == chunks[0].first.data);
  CHECK(WaitFor([&] { return f.bucket->calls("range") - before >= 5; }));
  usleep(50000);
  fail_others = false;
  for (int i = 0; i < 9; i++) CHECK(ReadBack(*cs, chunks[i].second, 20000) == chunks[i].first.data);
  // Slow GETs, many queued ahead: closing the store waits for the one in
  // flight only, and a reader left over reads with GETs of its own.
  f.bucket->SetFault([](std::string_view op, const std::string&) {
    if (op == "range") usleep(50000);
    return 0;
  });
  auto reader = cs->NewReader();
  REQUIRE(reader.ok());
  CHECK(ReadBack(*cs, chunks[12].second, 20000) == chunks[12].first.data);
  CHECK(ReadBack(*cs, chunks[13].second, 20000) == chunks[13].first.data);
  auto started = std::chrono::steady_clock::now();
  cs.reset();
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::milliseconds(500));
  CHECK(ReadBack(**reader, chunks[20].second, 20000) == chunks[20].first.data);
}
