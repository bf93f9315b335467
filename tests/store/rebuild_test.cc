// A store rebuilt from its bucket alone (store/rebuild.cc, bucket_index.h):
// index objects and the catalog in the bucket give back the packs, the
// snapshots and the live tree (same Merkle root), plain or encrypted; a
// wrong or missing key, and an altered catalog, are refused.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "crypto/keys.h"
#include "s3/dir_object_store.h"
#include "store/bucket_index.h"
#include "store/bucket_pack_store.h"
#include "store/store.h"
#include "tests/store/store_test_util.h"
#include "tests/test_util.h"

using namespace muscle;
using namespace muscle::store;
using muscle::test::KeyOf;
using muscle::test::WriteFile;

namespace {


BucketPackStore::Options Opts() {
  BucketPackStore::Options o;
  o.pack_target = 1u << 20;
  o.cache_limit = 64u << 20;
  o.retry_first_s = 0.01;
  o.seal_after_s = 0;  // the open pack is sealed and uploaded at each commit
  return o;
}


struct Original {
  Hash tree{};
  std::string a, b, old_a;
};

// A store on `bucket` with files in two directories and a symlink, two
// snapshots (a changed between them), everything uploaded.
Original MakeOriginal(const std::string& dir, std::shared_ptr<s3::DirObjectStore> bucket,
                      std::shared_ptr<const crypto::MasterKey> key) {
  Original o;
  o.a = test::RandomBytes(3u << 20, 1);
  o.b = test::RandomBytes(100000, 2);
  o.old_a = test::RandomBytes(500000, 3);
  REQUIRE(mkdir(dir.c_str(), 0700) == 0);
  auto owned = std::make_unique<BucketPackStore>(bucket, dir + "/cache", Opts());
  BucketPackStore* chunks = owned.get();
  auto opened = Store::Open(dir + "/store.db", std::move(owned), key);
  INFO(opened.status().ToString());
  REQUIRE(opened.ok());
  Store& s = **opened;
  auto d = s.Create(kRootIno, "docs", S_IFDIR | 0750, 1000, 1000);
  REQUIRE(d.ok());
  uint64_t ia = WriteFile(s, "a", o.old_a, d->ino, 0640, 1000);
  REQUIRE(s.TakeSnapshot("first").ok());
  SetAttrRequest cut;
  cut.set_size = true;
  REQUIRE(s.SetAttr(ia, cut).ok());
  auto n = s.Write(ia, 0, o.a);
  REQUIRE(n.ok());
  WriteFile(s, "b", o.b, kRootIno, 0640, 1000);
  REQUIRE(s.Create(kRootIno, "link", S_IFLNK | 0777, 1000, 1000, 0, "docs/a").ok());
  REQUIRE(s.TakeSnapshot("second").ok());
  auto h = s.TreeHash();
  REQUIRE(h.ok());
  o.tree = *h;
  REQUIRE(s.Sync(true).ok());
  // Everything uploaded, the catalog too.
  for (int i = 0; i < 50 && !bucket->Get("catalog").ok(); i++) {
    s.Tick();
    REQUIRE(chunks->Drain(30).ok());
  }
  REQUIRE(chunks->Drain(30).ok());
  REQUIRE(bucket->Get("catalog").ok());
  return o;
}

}  // namespace

TEMPLATE_TEST_CASE_SIG("rebuild from the bucket: snapshots, live tree, same root, check clean", "[rebuild]",
                       ((bool Encrypted), Encrypted), false, true) {
  test::TempDir dir;
  auto bucket = std::make_shared<s3::DirObjectStore>(dir.path + "/bucket");
  auto key = Encrypted ? KeyOf('r') : nullptr;
  Original o = MakeOriginal(dir.path + "/one", bucket, key);
  // The first site is gone: a new base, the bucket and the key alone.
  test::RunCommand("rm -rf " + dir.path + "/one");
  Store::RebuildReport report;
  auto rebuilt = Store::RebuildFromBucket(dir.path + "/two/store.db", bucket, dir.path + "/two/cache", Opts(),
                                          key, &report);
  INFO(rebuilt.status().ToString());
  REQUIRE(rebuilt.ok());
  Store& s = **rebuilt;
  CHECK(s.encrypted() == Encrypted);
  CHECK(report.snapshots == 2);
  CHECK(report.packs >= 3);
  auto h = s.TreeHash();
  REQUIRE(h.ok());
  CHECK(*h == o.tree);
  auto docs = s.Lookup(kRootIno, "docs");
  REQUIRE(docs.ok());
  auto a = s.Lookup(docs->ino, "a");
  REQUIRE(a.ok());
  CHECK(a->uid == 1000);
  CHECK(test::ReadAll(s, a->ino) == o.a);
  auto b = s.Lookup(kRootIno, "b");
  REQUIRE(b.ok());
  CHECK(test::ReadAll(s, b->ino) == o.b);
  auto snaps = s.ListSnapshots();
  REQUIRE(snaps.ok());
  REQUIRE(snaps->size() == 2);
  CHECK((*snaps)[0].name == "first");
  // The old version, from the first snapshot.
  auto restored = s.Restore("first", "docs/a", "old-a");
  INFO(restored.status().ToString());
  REQUIRE(restored.ok());
  CHECK(test::ReadAll(s, restored->ino) == o.old_a);
  test::RequireClean(s);
  // It goes on as a store of its own on that bucket: a new write, reopened.
  WriteFile(s, "new", "after the rebuild", kRootIno, 0640, 1000);
  REQUIRE(s.Sync(true).ok());
}

TEST_CASE("rebuild from the bucket reports reading every index object (musclefs restore-from's progress)",
          "[rebuild]") {
  test::TempDir dir;
  auto bucket = std::make_shared<s3::DirObjectStore>(dir.path + "/bucket");
  MakeOriginal(dir.path + "/one", bucket, nullptr);
  auto indexes = bucket->List("index/");
  REQUIRE(indexes.ok());
  // Counts what is reported (common/progress.h).
  struct Counter : ProgressSink {
    std::string phase;
    uint64_t total = 0, done = 0;
    int begun = 0, ended = 0;
    void Begin(std::string_view p, ProgressUnit, uint64_t t) override {
      phase = p;
      total = t;
      begun++;
    }
    void Add(uint64_t n) override { done += n; }
    void End() override { ended++; }
  } counter;
  Store::RebuildReport report;
  auto rebuilt = Store::RebuildFromBucket(dir.path + "/two/store.db", bucket, dir.path + "/two/cache", Opts(),
                                          nullptr, &report, &counter);
  INFO(rebuilt.status().ToString());
  REQUIRE(rebuilt.ok());
  CHECK(counter.phase == "restore-from: reading pack indexes");
  CHECK(counter.begun == 1);
  CHECK(counter.ended == 1);
  CHECK(counter.total == indexes->size());
  CHECK(counter.total >= report.packs);
  CHECK(counter.total > 0);
  CHECK(counter.done == counter.total);
}

TEST_CASE("rebuild from the bucket: a wrong or missing key, an altered catalog, an existing store",
          "[rebuild]") {
  test::TempDir dir;
  auto bucket = std::make_shared<s3::DirObjectStore>(dir.path + "/bucket");
  MakeOriginal(dir.path + "/one", bucket, KeyOf('r'));
  auto none = Store::RebuildFromBucket(dir.path + "/x/store.db", bucket, dir.path + "/x/cache", Opts(), nullptr);
  REQUIRE_FALSE(none.ok());
  CHECK(none.status().err() == EACCES);
  auto wrong = Store::RebuildFromBucket(dir.path + "/y/store.db", bucket, dir.path + "/y/cache", Opts(), KeyOf('w'));
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.status().err() == EACCES);
  auto existing = Store::RebuildFromBucket(dir.path + "/one/store.db", bucket, dir.path + "/z/cache", Opts(), KeyOf('r'));
  REQUIRE_FALSE(existing.ok());
  CHECK(existing.status().err() == EEXIST);
  // One byte of the catalog changed: refused, nothing made.
  auto cat = bucket->Get("catalog");
  REQUIRE(cat.ok());
  std::string bad = *cat;
  bad[bad.size() - 20] ^= 1;
  REQUIRE(bucket->Put("catalog", bad).ok());
  auto altered = Store::RebuildFromBucket(dir.path + "/v/store.db", bucket, dir.path + "/v/cache", Opts(), KeyOf('r'));
  REQUIRE_FALSE(altered.ok());
  CHECK(altered.status().err() == EIO);
  // An index object put under another pack's name does not open either.
  REQUIRE(bucket->Put("catalog", *cat).ok());
  auto idx = bucket->List("index/");
  REQUIRE(idx.ok());
  REQUIRE(idx->size() >= 2);
  auto first = bucket->Get((*idx)[0].key);
  REQUIRE(first.ok());
  REQUIRE(bucket->Put((*idx)[1].key, *first).ok());
  auto moved = Store::RebuildFromBucket(dir.path + "/u/store.db", bucket, dir.path + "/u/cache", Opts(), KeyOf('r'));
  REQUIRE_FALSE(moved.ok());
  CHECK(moved.status().err() == EIO);
}

TEST_CASE("bucket objects: pack index and catalog round trip; malformed ones refused", "[rebuild]") {
  PackIndex p{7, kContainerHeaderSize + 2 * kRecordHeaderSize + 300, {}};
  ChunkRecord r1, r2;
  r1.offset = kContainerHeaderSize + kRecordHeaderSize;
  r1.length = 100;
  r1.hash[0] = 1;
  r2.offset = r1.offset + 100 + kRecordHeaderSize;
  r2.length = 200;
  r2.hash[31] = 2;
  p.records = {r1, r2};
  auto back = DecodePackIndex(EncodePackIndex(p));
  INFO(back.status().ToString());
  REQUIRE(back.ok());
  CHECK(back->container == 7);
  REQUIRE(back->records.size() == 2);
  CHECK(back->records[1].offset == r2.offset);
  CHECK(back->records[1].hash[31] == 2);
  std::string text = EncodePackIndex(p);
  CHECK_FALSE(DecodePackIndex(text.substr(0, text.size() - 5)).ok());
  p.size += 1;  // records that do not fill the pack
  CHECK_FALSE(DecodePackIndex(EncodePackIndex(p)).ok());
  CatalogEntry e;
  e.name = "with space\nand newline";
  e.created_ns = 123;
  e.mode = 040755;
  e.root[5] = 9;
  auto cat = DecodeCatalog(EncodeCatalog({e, e}));
  REQUIRE(cat.ok());
  REQUIRE(cat->size() == 2);
  CHECK((*cat)[1].name == e.name);
  CHECK((*cat)[1].root[5] == 9);
  CHECK_FALSE(DecodeCatalog("musclefs catalog 1\nsnapshot x\n").ok());
  auto key = KeyOf('e');
  auto sealed = SealBucketObject(key.get(), "store", "index/abc", "text");
  REQUIRE(sealed.ok());
  CHECK(OpenBucketObject(key.get(), "store", "index/abc", *sealed).ok());
  CHECK(OpenBucketObject(key.get(), "store", "index/abd", *sealed).err() == EIO);
  CHECK(OpenBucketObject(key.get(), "other", "index/abc", *sealed).err() == EIO);
  CHECK(OpenBucketObject(nullptr, "store", "index/abc", *sealed).err() == EACCES);
  auto plain = SealBucketObject(nullptr, "store", "index/abc", "text");
  REQUIRE(plain.ok());
  CHECK(OpenBucketObject(key.get(), "store", "index/abc", *plain).err() == EIO);
  CHECK(*OpenBucketObject(nullptr, "store", "index/abc", *plain) == "text");
}

TEST_CASE("rebuild from the bucket: packs without index objects are refused, untouched, and written "
          "by the next open of the old store", "[rebuild]") {
  test::TempDir dir;
  auto bucket = std::make_shared<s3::DirObjectStore>(dir.path + "/bucket");
  Original o = MakeOriginal(dir.path + "/one", bucket, nullptr);
  // As a bucket written before index objects existed.
  auto idx = bucket->List("index/");
  REQUIRE(idx.ok());
  REQUIRE_FALSE(idx->empty());
  for (auto& i : *idx) REQUIRE(bucket->Delete(i.key).ok());
  auto packs = bucket->List("packs/");
  REQUIRE(packs.ok());
  auto refused = Store::RebuildFromBucket(dir.path + "/two/store.db", bucket, dir.path + "/two/cache", Opts(), nullptr);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().message().find("no index object") != std::string::npos);
  auto still = bucket->List("packs/");
  REQUIRE(still.ok());
  CHECK(still->size() == packs->size());
  {
    // The old store opened once: it writes the missing index objects.
    auto owned = std::make_unique<BucketPackStore>(bucket, dir.path + "/one/cache", Opts());
    BucketPackStore* chunks = owned.get();
    auto s = Store::Open(dir.path + "/one/store.db", std::move(owned));
    INFO(s.status().ToString());
    REQUIRE(s.ok());
    REQUIRE(chunks->Drain(30).ok());
    CHECK(chunks->stats().pending_packs == 0);
  }
  auto rebuilt = Store::RebuildFromBucket(dir.path + "/three/store.db", bucket, dir.path + "/three/cache", Opts(),
                                          nullptr);
  INFO(rebuilt.status().ToString());
  REQUIRE(rebuilt.ok());
  auto h = (*rebuilt)->TreeHash();
  REQUIRE(h.ok());
  CHECK(*h == o.tree);
  test::RequireClean(**rebuilt);
}

TEMPLATE_TEST_CASE_SIG("rebuild from the bucket after a gc: the moved records' pack is uploaded before the "
                       "old packs go", "[rebuild]", ((bool Encrypted), Encrypted), false, true) {
  // (From the review: gc deleted the old packs' objects at once, before the
  // pack holding what it moved was uploaded; the bucket alone could not
  // rebuild the store.)
  test::TempDir dir;
  auto bucket = std::make_shared<s3::DirObjectStore>(dir.path + "/bucket");
  auto key = Encrypted ? KeyOf('g') : nullptr;
  std::string a = test::RandomBytes(100000, 1), c = test::RandomBytes(5000, 3);
  auto open = [&](double seal_after) {
    REQUIRE((mkdir((dir.path + "/one").c_str(), 0700) == 0 || errno == EEXIST));
    auto o = Opts();
    o.seal_after_s = seal_after;
    auto owned = std::make_unique<BucketPackStore>(bucket, dir.path + "/one/cache", o);
    BucketPackStore* chunks = owned.get();
    auto s = Store::Open(dir.path + "/one/store.db", std::move(owned), key);
    INFO(s.status().ToString());
    REQUIRE(s.ok());
    return std::make_pair(std::move(*s), chunks);
  };
  {
    auto [s, chunks] = open(0);
    WriteFile(*s, "b", test::RandomBytes(600000, 2), kRootIno, 0640, 1000);
    WriteFile(*s, "a", a, kRootIno, 0640, 1000);
    REQUIRE(s->Sync(true).ok());
    REQUIRE(s->Unlink(kRootIno, "b", false).ok());
    REQUIRE(s->TakeSnapshot("s1").ok());
    WriteFile(*s, "c", c, kRootIno, 0640, 1000);
    for (int i = 0; i < 5; i++) {
      REQUIRE(s->Sync(true).ok());
      REQUIRE(chunks->Drain(30).ok());
    }
  }
  {
    // The next start (packs sealed by size or after 10 s): a gc, then the
    // host is lost before the pack gc wrote to is uploaded.
    auto [s, chunks] = open(10);
    auto gc = s->CollectGarbage(true);
    INFO(gc.status().ToString());
    REQUIRE(gc.ok());
    CHECK(gc->packs_removed >= 1);
    REQUIRE(chunks->Drain(30).ok());
  }
  test::RunCommand("rm -rf " + dir.path + "/one");
  auto r = Store::RebuildFromBucket(dir.path + "/two/store.db", bucket, dir.path + "/two/cache", Opts(), key);
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  auto fa = (*r)->Lookup(kRootIno, "a");
  REQUIRE(fa.ok());
  CHECK(test::ReadAll(**r, fa->ino) == a);
  test::RequireClean(**r);
}

TEST_CASE("rebuild from the bucket takes it over: the old store no longer opens on it; a failed "
          "rebuild leaves nothing behind", "[rebuild]") {
  test::TempDir dir;
  auto bucket = std::make_shared<s3::DirObjectStore>(dir.path + "/bucket");
  MakeOriginal(dir.path + "/one", bucket, nullptr);
  // A failed attempt (one pack object gone): no store, no cache, and the
  // bucket's objects are all still there.
  auto packs = bucket->List("packs/");
  auto index = bucket->List("index/");
  REQUIRE(packs.ok());
  REQUIRE(index.ok());
  auto kept = bucket->Get((*packs)[0].key);
  REQUIRE(kept.ok());
  REQUIRE(bucket->Delete((*packs)[0].key).ok());
  auto failed = Store::RebuildFromBucket(dir.path + "/two/store.db", bucket, dir.path + "/two/cache", Opts(), nullptr);
  REQUIRE_FALSE(failed.ok());
  struct stat st;
  CHECK(stat((dir.path + "/two/store.db").c_str(), &st) != 0);
  CHECK(stat((dir.path + "/two/cache").c_str(), &st) != 0);
  CHECK(bucket->List("index/")->size() == index->size());
  REQUIRE(bucket->Put((*packs)[0].key, *kept).ok());
  // Now whole: the rebuild succeeds and takes the bucket over.
  auto rebuilt = Store::RebuildFromBucket(dir.path + "/two/store.db", bucket, dir.path + "/two/cache", Opts(), nullptr);
  INFO(rebuilt.status().ToString());
  REQUIRE(rebuilt.ok());
  rebuilt->reset();
  auto old = Store::Open(dir.path + "/one/store.db",
                         std::make_unique<BucketPackStore>(bucket, dir.path + "/one/cache", Opts()));
  REQUIRE_FALSE(old.ok());
  CHECK(old.status().err() == EEXIST);
  CHECK(old.status().message().find("taken over") != std::string::npos);
  // The new one opens again (as serve does), and deletes nothing it needs.
  auto again = Store::Open(dir.path + "/two/store.db",
                           std::make_unique<BucketPackStore>(bucket, dir.path + "/two/cache", Opts()));
  INFO(again.status().ToString());
  REQUIRE(again.ok());
  test::RequireClean(**again);
}
