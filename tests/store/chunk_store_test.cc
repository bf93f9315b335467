// The ChunkStore contract (store/chunk_store.h), run against every
// implementation: the pack directory (LocalPackStore) and memory
// (MemoryChunkStore). Then a whole store on the memory implementation:
// write, read, delete, gc and check, and a reopen.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <random>

#include "s3/dir_object_store.h"
#include "store/bucket_pack_store.h"
#include "store/chunk_store.h"
#include "store/memory_chunk_store.h"
#include "store/pack.h"
#include "store/sha256.h"
#include "store/store.h"
#include "tests/store/store_test_util.h"
#include "tests/test_util.h"

using namespace muscle;
using namespace muscle::store;
using muscle::test::WriteFile;

namespace {

std::string Random(size_t n, uint32_t seed) { return test::RandomBytes(n, seed); }

struct Hashed {
  std::string data;
  unsigned char hash[32];
  explicit Hashed(std::string d) : data(std::move(d)) { Sha256(data.data(), data.size(), hash); }
};

// A backend: Make() a writer (not yet opened) sealing containers at
// `target` bytes; Crash() a new writer on the same containers as a crash
// would leave them (the old one is gone).
struct LocalBackend {
  test::TempDir base;
  std::unique_ptr<ChunkStore> Make(uint64_t target) {
    auto p = std::make_unique<LocalPackStore>(base.path + "/packs", LocalPackStore::Mode::kWrite);
    p->pack_target = target;
    return p;
  }
  std::unique_ptr<ChunkStore> Crash(std::unique_ptr<ChunkStore> old, uint64_t target) {
    old.reset();
    return Make(target);
  }
};

struct MemoryBackend {
  std::unique_ptr<ChunkStore> Make(uint64_t target) { return std::make_unique<MemoryChunkStore>(target); }
  std::unique_ptr<ChunkStore> Crash(std::unique_ptr<ChunkStore> old, uint64_t) {
    return static_cast<MemoryChunkStore&>(*old).Reopen();
  }
};

// Packs in a bucket (a directory standing in for S3) behind a cache
// directory; a crash keeps both.
struct BucketBackend {
  test::TempDir base;
  std::shared_ptr<s3::DirObjectStore> bucket = std::make_shared<s3::DirObjectStore>(base.path + "/bucket");
  std::unique_ptr<ChunkStore> Make(uint64_t target) {
    BucketPackStore::Options o;
    o.pack_target = target;
    o.retry_first_s = 0.01;
    o.seal_after_s = 3600;  // packs sealed by size only, however slow the run
    return std::make_unique<BucketPackStore>(bucket, base.path + "/cache", o);
  }
  std::unique_ptr<ChunkStore> Crash(std::unique_ptr<ChunkStore> old, uint64_t target) {
    old.reset();
    return Make(target);
  }
};

std::string ReadAll(ChunkStore& cs, const PutResult& p, size_t size) {
  std::string out(size, '\0');
  Status s = cs.Read(p.at, size, 0, size, out.data());
  INFO(s.ToString());
  REQUIRE(s.ok());
  return out;
}

PutResult Put(ChunkStore& cs, const Hashed& h) {
  auto p = cs.Put(h.data, h.hash);
  INFO(p.status().ToString());
  REQUIRE(p.ok());
  return *p;
}

}  // namespace

TEMPLATE_TEST_CASE("chunk store: put, read, ranges and batches", "[chunkstore]", LocalBackend,
                   MemoryBackend, BucketBackend) {
  TestType backend;
  auto cs = backend.Make(32u << 20);
  REQUIRE(cs->Open("owner-1", {}).ok());
  CHECK(cs->mark() == ContainerMark{});
  Hashed a(Random(1000, 1)), b(Random(5000, 2));
  PutResult pa = Put(*cs, a);
  // The first put starts container 1, sealing nothing.
  CHECK(pa.started);
  CHECK(pa.sealed == ContainerMark{});
  CHECK(pa.at.container == 1);
  CHECK(pa.at.offset == kContainerHeaderSize + kRecordHeaderSize);
  PutResult pb = Put(*cs, b);
  CHECK_FALSE(pb.started);
  CHECK(pb.at.container == 1);
  CHECK(pb.at.offset == pa.at.offset + a.data.size() + kRecordHeaderSize);
  CHECK(cs->mark() == ContainerMark{1, pb.at.offset + b.data.size()});

  CHECK(ReadAll(*cs, pa, a.data.size()) == a.data);
  CHECK(ReadAll(*cs, pb, b.data.size()) == b.data);
  // A range inside a chunk, and the last byte of one.
  std::string part(100, '\0');
  REQUIRE(cs->Read(pb.at, b.data.size(), 4000, 100, part.data()).ok());
  CHECK(part == b.data.substr(4000, 100));
  char last = 0;
  REQUIRE(cs->Read(pa.at, a.data.size(), 999, 1, &last).ok());
  CHECK(last == a.data[999]);
  // A batch across both chunks.
  std::string x(10, '\0'), y(20, '\0');
  ChunkRead reads[] = {{pb.at, b.data.size(), 17, 20, y.data()}, {pa.at, a.data.size(), 5, 10, x.data()}};
  REQUIRE(cs->ReadBatch(reads).ok());
  CHECK(x == a.data.substr(5, 10));
  CHECK(y == b.data.substr(17, 20));
  // The whole record, header and data.
  ChunkRecord head;
  std::string data;
  REQUIRE(cs->ReadRecord(pb.at, b.data.size(), &head, data).ok());
  CHECK(head.length == b.data.size());
  CHECK(memcmp(head.hash, b.hash, 32) == 0);
  CHECK(head.offset == pb.at.offset);
  CHECK(data == b.data);
}

TEMPLATE_TEST_CASE("chunk store: bad input is refused", "[chunkstore]", LocalBackend, MemoryBackend,
                   BucketBackend) {
  TestType backend;
  auto cs = backend.Make(32u << 20);
  REQUIRE(cs->Open("owner-1", {}).ok());
  Hashed a(Random(1000, 3));
  PutResult pa = Put(*cs, a);
  std::string buf(2000, '\0');
  // Past the end of the record (into the next one or the end of the
  // container): refused, not read.
  Status past = cs->Read(pa.at, a.data.size(), 999, 2, buf.data());
  CHECK(past.err() == EINVAL);
  CHECK(cs->Read(pa.at, a.data.size(), 1001, 0, buf.data()).err() == EINVAL);
  CHECK(cs->Read(pa.at, a.data.size(), 0, 1001, buf.data()).err() == EINVAL);
  // One bad range fails the whole batch.
  ChunkRead reads[] = {{pa.at, a.data.size(), 0, 10, buf.data()}, {pa.at, a.data.size(), 995, 10, buf.data()}};
  CHECK(cs->ReadBatch(reads).err() == EINVAL);
  // An empty chunk cannot be put.
  unsigned char h[32] = {};
  CHECK(cs->Put(std::string_view(), h).err() == EINVAL);
  // A container that does not exist, a record inside the container header.
  CHECK_FALSE(cs->Read({7, pa.at.offset}, a.data.size(), 0, 10, buf.data()).ok());
  ChunkRecord head;
  std::string data;
  CHECK(cs->ReadRecord({1, 10}, 10, &head, data).err() == EIO);
  // A walk that ends inside a record finds it torn.
  std::vector<ChunkRecord> records;
  CHECK(cs->Records(1, cs->mark().size - 1, records).err() == EIO);
}

TEMPLATE_TEST_CASE("chunk store: containers are sealed at their target size", "[chunkstore]",
                   LocalBackend, MemoryBackend,
                   BucketBackend) {
  TestType backend;
  auto cs = backend.Make(300);
  REQUIRE(cs->Open("owner-1", {}).ok());
  Hashed a(Random(100, 4)), b(Random(100, 5)), c(Random(100, 6));
  PutResult pa = Put(*cs, a), pb = Put(*cs, b), pc = Put(*cs, c);
  CHECK(pa.at.container == 1);
  CHECK_FALSE(pb.started);  // 16 + 2 * 136 = 288 fits
  CHECK(pc.started);        // a third record would not
  CHECK(pc.at.container == 2);
  CHECK(pc.sealed == ContainerMark{1, 288});
  CHECK(cs->Containers() == std::vector<uint64_t>{1, 2});
  std::vector<ChunkRecord> records;
  REQUIRE(cs->Records(1, 288, records).ok());
  REQUIRE(records.size() == 2);
  CHECK(records[0].offset == pa.at.offset);
  CHECK(records[1].offset == pb.at.offset);
  CHECK(records[1].length == 100);
  CHECK(memcmp(records[1].hash, b.hash, 32) == 0);
  REQUIRE(cs->Records(2, cs->mark().size, records).ok());
  CHECK(records.size() == 1);
  CHECK(ReadAll(*cs, pc, 100) == c.data);
}

TEMPLATE_TEST_CASE("chunk store: roll back to a mark, recover the committed state", "[chunkstore]",
                   LocalBackend, MemoryBackend,
                   BucketBackend) {
  TestType backend;
  auto cs = backend.Make(300);
  REQUIRE(cs->Open("owner-1", {}).ok());
  Hashed a(Random(100, 7)), b(Random(100, 8)), c(Random(100, 9)), d(Random(50, 10));
  PutResult pa = Put(*cs, a);
  REQUIRE(cs->Sync().ok());
  ContainerMark committed = cs->mark();
  // A failed transaction: b fills container 1, c starts container 2.
  PutResult pb = Put(*cs, b);
  PutResult pc = Put(*cs, c);
  REQUIRE(pc.started);
  REQUIRE(cs->RollBackTo(committed).ok());
  CHECK(cs->mark() == committed);
  CHECK(cs->Containers() == std::vector<uint64_t>{1});
  CHECK(ReadAll(*cs, pa, 100) == a.data);
  // What comes next takes the place of what was rolled back.
  PutResult pd = Put(*cs, d);
  CHECK(pd.at.container == pb.at.container);
  CHECK(pd.at.offset == pb.at.offset);
  CHECK(ReadAll(*cs, pd, 50) == d.data);
  REQUIRE(cs->Sync().ok());
  ContainerMark synced = cs->mark();
  // A crash after more appends: recovery against the committed lengths cuts
  // the tail and drops containers the index does not name.
  Put(*cs, c);
  Put(*cs, b);
  auto again = backend.Crash(std::move(cs), 300);
  REQUIRE(again->Open("owner-1", {{synced.container, synced.size}}).ok());
  CHECK(again->mark() == synced);
  CHECK(again->Containers() == std::vector<uint64_t>{1});
  std::vector<ChunkRecord> records;
  REQUIRE(again->Records(1, synced.size, records).ok());
  CHECK(records.size() == 2);
  CHECK(ReadAll(*again, pd, 50) == d.data);
}

TEMPLATE_TEST_CASE("chunk store: recovery refuses what it cannot trust", "[chunkstore]", LocalBackend,
                   MemoryBackend, BucketBackend) {
  TestType backend;
  auto cs = backend.Make(32u << 20);
  REQUIRE(cs->Open("owner-1", {}).ok());
  Put(*cs, Hashed(Random(100, 11)));
  REQUIRE(cs->Sync().ok());
  ContainerMark m = cs->mark();
  cs = backend.Crash(std::move(cs), 32u << 20);
  // Another store's containers are not cleaned.
  CHECK(cs->Open("owner-2", {{m.container, m.size}}).err() == EEXIST);
  cs = backend.Crash(std::move(cs), 32u << 20);
  // The index names a container that is not there, or is longer than it.
  CHECK_FALSE(cs->Open("owner-1", {{m.container, m.size}, {m.container + 1, 16}}).ok());
  cs = backend.Crash(std::move(cs), 32u << 20);
  CHECK(cs->Open("owner-1", {{m.container, m.size + 1}}).err() == EIO);
  cs = backend.Crash(std::move(cs), 32u << 20);
  REQUIRE(cs->Open("owner-1", {{m.container, m.size}}).ok());
  CHECK(cs->mark() == m);
}

TEMPLATE_TEST_CASE("chunk store: punch, remove, readers", "[chunkstore]", LocalBackend, MemoryBackend,
                   BucketBackend) {
  TestType backend;
  auto cs = backend.Make(32u << 20);
  REQUIRE(cs->Open("owner-1", {}).ok());
  Hashed small(Random(100, 12)), big(Random(5 * 4096, 13)), after(Random(100, 14));
  PutResult ps = Put(*cs, small), pb = Put(*cs, big), pa = Put(*cs, after);
  REQUIRE(cs->Sync().ok());
  auto reader = cs->NewReader();
  REQUIRE(reader.ok());
  CHECK(ReadAll(**reader, pb, big.data.size()) == big.data);
  CHECK_FALSE((*reader)->Put(small.data, small.hash).ok());
  // Whole pages inside the dead record's data read back as zeros; the rest
  // of it, its neighbours and every header stay.
  REQUIRE(cs->Punch(pb.at, big.data.size()).ok());
  REQUIRE(cs->WaitIdle().ok());
  std::string now = ReadAll(*cs, pb, big.data.size());
  uint64_t lo, hi;
  PunchablePages(pb.at.offset, big.data.size(), &lo, &hi);
  REQUIRE(hi - lo >= 4 * 4096);
  size_t from = size_t(lo - pb.at.offset), to = size_t(hi - pb.at.offset);
  CHECK(now.substr(0, from) == big.data.substr(0, from));
  CHECK(now.substr(from, to - from) == std::string(to - from, '\0'));
  CHECK(now.substr(to) == big.data.substr(to));
  CHECK(ReadAll(*cs, ps, 100) == small.data);
  CHECK(ReadAll(*cs, pa, 100) == after.data);
  std::vector<ChunkRecord> records;
  REQUIRE(cs->Records(1, cs->mark().size, records).ok());
  CHECK(records.size() == 3);
  // A punch too small to hold a whole page does nothing.
  REQUIRE(cs->Punch(ps.at, 100).ok());
  REQUIRE(cs->WaitIdle().ok());
  CHECK(ReadAll(*cs, ps, 100) == small.data);
  // Removing a container: gone for the writer and (once it forgets its
  // cached handles) for a reader; removing it again is not an error.
  Hashed next(Random(100, 15));
  auto reader2 = cs->NewReader();
  REQUIRE(reader2.ok());
  REQUIRE(cs->Remove(1).ok());
  CHECK(cs->Containers().empty());
  std::string buf(100, '\0');
  CHECK_FALSE(cs->Read(ps.at, 100, 0, 100, buf.data()).ok());
  (*reader2)->ForgetCached();
  CHECK_FALSE((*reader2)->Read(ps.at, 100, 0, 100, buf.data()).ok());
  CHECK(cs->Remove(1).ok());
}

// --- a whole store on the memory implementation ---

namespace {

// A whole file, in one read.
std::string Content(Store& s, uint64_t ino) {
  auto a = s.GetAttr(ino);
  REQUIRE(a.ok());
  std::string out;
  Status r = s.Read(ino, 0, uint32_t(a->size), out);
  INFO(r.ToString());
  REQUIRE(r.ok());
  REQUIRE(out.size() == a->size);
  return out;
}


}  // namespace

TEST_CASE("store on a memory chunk store: write, read, delete, gc, check", "[chunkstore]") {
  auto owned = std::make_unique<MemoryChunkStore>(256u << 10);
  MemoryChunkStore* chunks = owned.get();
  auto opened = Store::Open(":memory:", std::move(owned));
  INFO(opened.status().ToString());
  REQUIRE(opened.ok());
  Store& s = **opened;
  std::string a = Random(3u << 20, 20), b = Random(1u << 20, 21);
  uint64_t ia = WriteFile(s, "a", a);
  uint64_t ib = WriteFile(s, "b", b);
  REQUIRE(s.Sync(true).ok());
  CHECK(Content(s, ia) == a);
  CHECK(Content(s, ib) == b);
  // The chunk data went to the memory containers (sealed at 256 KiB).
  CHECK(chunks->Containers().size() >= 16);
  CheckReport r = s.Check();
  INFO((r.problems.empty() ? "" : r.problems[0]));
  CHECK(r.ok());
  CHECK(r.packs == chunks->Containers().size());
  auto snap = s.TakeSnapshot("one");
  REQUIRE(snap.ok());
  // Deleting a file gives its chunks' space back (punched after the
  // commit), but the snapshot keeps them; pruning that snapshot frees them.
  REQUIRE(s.Unlink(kRootIno, "a", false).ok());
  REQUIRE(s.Sync(true).ok());
  CHECK(chunks->punched_bytes() == 0);
  REQUIRE(s.TakeSnapshot("two").ok());
  Store::PrunePolicy keep_last;
  keep_last.keep_last = 1;
  auto pruned = s.Prune(keep_last);
  INFO(pruned.status().ToString());
  REQUIRE(pruned.ok());
  REQUIRE(pruned->size() == 1);
  CHECK((*pruned)[0].name == "one");
  REQUIRE(s.Sync(true).ok());
  CHECK(chunks->punched_bytes() > (2u << 20));
  // Compaction drops the containers that are now dead and keeps b intact.
  size_t before = chunks->Containers().size();
  auto gc = s.CollectGarbage(true);
  INFO(gc.status().ToString());
  REQUIRE(gc.ok());
  CHECK(gc->packs_removed >= 8);
  CHECK(chunks->Containers().size() < before);
  CHECK(Content(s, ib) == b);
  r = s.Check();
  INFO((r.problems.empty() ? "" : r.problems[0]));
  CHECK(r.ok());
  CHECK(r.packs == chunks->Containers().size());
}

TEST_CASE("store on a memory chunk store: reopen, readers, a failed commit", "[chunkstore]") {
  test::TempDir base;
  std::string path = base.path + "/store.db";
  auto owned = std::make_unique<MemoryChunkStore>(256u << 10);
  MemoryChunkStore* chunks = owned.get();
  std::string a = Random(600u << 10, 30), b = Random(400u << 10, 31);
  std::unique_ptr<MemoryChunkStore> after_crash;
  {
    auto opened = Store::Open(path, std::move(owned));
    REQUIRE(opened.ok());
    Store& s = **opened;
    uint64_t ia = WriteFile(s, "a", a);
    REQUIRE(s.Sync(true).ok());
    // A reader store on the writer's containers sees the commit.
    auto rc = s.NewChunkReader();
    REQUIRE(rc.ok());
    auto reader = Store::OpenReader(path, s.gate(), std::move(*rc));
    REQUIRE(reader.ok());
    CHECK(Content(**reader, ia) == a);
    // A flush that fails after some of its chunks were put: they are
    // rolled back with its savepoint, and the next Sync puts them again.
    uint64_t ib = WriteFile(s, "b", b);
    int puts = 0;
    s.fault_point = [&puts](const char* point) {
      return strcmp(point, "put-chunk") == 0 && ++puts == 3 ? Status(EIO, "injected") : Status::Ok();
    };
    ContainerMark committed = chunks->mark();
    CHECK(s.Sync(true).err() == EIO);
    s.fault_point = nullptr;
    CHECK(puts == 3);
    CHECK(chunks->mark() == committed);
    REQUIRE(s.Sync(true).ok());
    CHECK(chunks->mark() != committed);
    CHECK(Content(s, ib) == b);
    after_crash = chunks->Reopen();
  }
  // The database and the synced containers: everything committed is there.
  auto reopened = Store::Open(path, std::move(after_crash));
  INFO(reopened.status().ToString());
  REQUIRE(reopened.ok());
  Store& s = **reopened;
  auto ia = s.Lookup(kRootIno, "a"), ib = s.Lookup(kRootIno, "b");
  REQUIRE(ia.ok());
  REQUIRE(ib.ok());
  CHECK(Content(s, ia->ino) == a);
  CHECK(Content(s, ib->ino) == b);
  CheckReport r = s.Check();
  INFO((r.problems.empty() ? "" : r.problems[0]));
  CHECK(r.ok());
}
