// BucketPackStore (store/bucket_pack_store.h) on a real Ceph RGW, started
// by tests/s3/with-rgw.sh: what tests/store/bucket_pack_store_test.cc checks
// on a directory standing in for the bucket, here through S3ObjectStore
// (s3/s3_client.h) over HTTP.
//
//  - Sealed packs upload (one of them multipart), are listed under packs/
//    with their sealed sizes, are evicted from the cache and read back
//    byte for byte with ranged GETs; a reopen from the cache directory on
//    the same bucket reads everything again.
//  - radosgw stopped under the store (tools/ceph-rgw stop-rgw) with uploads
//    pending: writes are acknowledged locally up to the cache limit, then
//    Put answers ENOSPC at once (not after full_wait_s); after start-rgw the
//    uploads drain and every acknowledged chunk reads back from the bucket.
//  - A crash between upload and index commit (a reopen on an older index
//    mark) and a roll-back, also of an upload in flight: the voided objects
//    are deleted from the bucket; and a reopen whose open pack had been
//    sealed and uploaded at its committed length before the crash: what is
//    appended next stays readable while its own upload is pending.
//  - The ChunkStore contract of tests/store/chunk_store_test.cc (its
//    TEMPLATE_TEST_CASEs), included at the end of this file and run on an
//    RGW bucket instead of its own backends.
//
// Each test makes its own bucket (s3_test_env.h); without with-rgw.sh's
// environment every test fails, saying so.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "s3/s3_client.h"
#include "store/bucket_pack_store.h"
#include "store/sha256.h"
#include "tests/s3/s3_test_env.h"
#include "tests/test_util.h"

using namespace muscle;
using namespace muscle::store;

namespace bucket_on_s3 {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

struct Chunk {
  std::string data;
  unsigned char hash[32];
  PutResult at;
};

Chunk Make(size_t n, uint32_t seed) {
  Chunk c;
  c.data = test::RandomBytes(n, seed);
  Sha256(c.data.data(), c.data.size(), c.hash);
  return c;
}

// Puts `c` (REQUIRE success) and remembers where it went.
void Put(BucketPackStore& cs, Chunk& c) {
  auto p = cs.Put(c.data, c.hash);
  INFO(p.status().ToString());
  REQUIRE(p.ok());
  c.at = *p;
}

// Puts n chunks of about `size` bytes (sizes vary a little), Syncs, and
// appends them to *out.
void Fill(BucketPackStore& cs, int n, size_t size, uint32_t seed, std::vector<Chunk>* out) {
  for (int i = 0; i < n; i++) {
    Chunk c = Make(size - size_t(i % 5) * 97, seed + uint32_t(i));
    Put(cs, c);
    out->push_back(std::move(c));
  }
  Status s = cs.Sync();
  INFO(s.ToString());
  REQUIRE(s.ok());
}

// The whole chunk as read through `cs` (from the cache or the bucket).
Result<std::string> ReadChunk(ChunkStore& cs, const Chunk& c) {
  std::string out(c.data.size(), '\0');
  Status s = cs.Read(c.at.at, c.data.size(), 0, c.data.size(), out.data());
  if (!s.ok()) return s;
  return out;
}

// Every chunk reads back byte for byte.
void CheckAll(ChunkStore& cs, const std::vector<Chunk>& chunks) {
  for (size_t i = 0; i < chunks.size(); i++) {
    auto r = ReadChunk(cs, chunks[i]);
    INFO("chunk " << i << " in pack " << chunks[i].at.at.container << ": " << r.status().ToString());
    REQUIRE(r.ok());
    CHECK((*r == chunks[i].data));
  }
}

// What an index that committed `chunks` names: each pack and its length
// (the end of its last record).
std::map<uint64_t, uint64_t> IndexOf(const std::vector<Chunk>& chunks) {
  std::map<uint64_t, uint64_t> idx;
  for (auto& c : chunks) {
    uint64_t end = c.at.at.offset + c.data.size();
    idx[c.at.at.container] = std::max(idx[c.at.at.container], end);
  }
  return idx;
}

// The objects under packs/: key -> size.
std::map<std::string, uint64_t> Objects(s3::ObjectStore& bucket) {
  auto l = bucket.List("packs/");
  INFO(l.status().ToString());
  REQUIRE(l.ok());
  std::map<std::string, uint64_t> out;
  for (auto& o : *l) out[o.key] = o.size;
  return out;
}

// The uploads the cache's manifest records ("U id name size", "D id"):
// pack id -> (object key, size).
std::map<uint64_t, std::pair<std::string, uint64_t>> Manifest(const std::string& cache_dir) {
  std::map<uint64_t, std::pair<std::string, uint64_t>> out;
  std::istringstream in(test::ReadText(cache_dir + "/bucket-manifest"));
  std::string kind, name;
  for (std::string line; std::getline(in, line);) {
    std::istringstream l(line);
    l >> kind;
    std::string id_hex;
    l >> id_hex;
    uint64_t id = std::stoull(id_hex, nullptr, 16);
    if (kind == "U") {
      uint64_t size = 0;
      l >> name >> size;
      out[id] = {"packs/" + name, size};
    } else if (kind == "D") {
      out.erase(id);
    }
  }
  return out;
}

std::set<std::string> KeysOf(const std::map<uint64_t, std::pair<std::string, uint64_t>>& m) {
  std::set<std::string> out;
  for (auto& [id, u] : m) out.insert(u.first);
  return out;
}

std::set<std::string> KeysOf(const std::map<std::string, uint64_t>& m) {
  std::set<std::string> out;
  for (auto& [k, size] : m) out.insert(k);
  return out;
}

bool Cached(const std::string& cache_dir, uint64_t id) {
  char name[32];
  snprintf(name, sizeof name, "/%016llx.pack", (unsigned long long)id);
  return access((cache_dir + name).c_str(), F_OK) == 0;
}

// Another S3ObjectStore on the same bucket and prefix (nothing shared with
// the first one but the bucket).
std::shared_ptr<s3::S3ObjectStore> SameBucket(const s3::S3ObjectStore& b) {
  auto again = s3::S3ObjectStore::Open(b.config());
  INFO(again.status().ToString());
  REQUIRE(again.ok());
  return std::move(*again);
}

void RequireOk(const Status& s) {
  INFO(s.ToString());
  REQUIRE(s.ok());
}

// An ObjectStore in front of another that can hold the uploads of packs
// (Puts under packs/) until released: to have an upload in flight at a
// chosen moment.
class GatedStore final : public s3::ObjectStore {
 public:
  explicit GatedStore(std::shared_ptr<s3::ObjectStore> inner) : inner_(std::move(inner)) {}
  void Hold(bool hold) {
    std::lock_guard<std::mutex> l(mu_);
    hold_ = hold;
    cv_.notify_all();
  }
  // Waits up to `seconds` until an upload is held.
  bool WaitHeld(double seconds) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::duration<double>(seconds), [&] { return held_ > 0; });
  }
  Status Put(const std::string& key, std::string_view body) override {
    if (key.rfind("packs/", 0) == 0) {
      std::unique_lock<std::mutex> l(mu_);
      ++held_;
      cv_.notify_all();
      cv_.wait(l, [&] { return !hold_; });
      --held_;
    }
    return inner_->Put(key, body);
  }
  Result<std::string> Get(const std::string& key) override { return inner_->Get(key); }
  Status GetRange(const std::string& key, uint64_t offset, size_t len, char* out) override {
    return inner_->GetRange(key, offset, len, out);
  }
  Result<uint64_t> Head(const std::string& key) override { return inner_->Head(key); }
  Status Delete(const std::string& key) override { return inner_->Delete(key); }
  Result<std::vector<s3::ObjectInfo>> List(const std::string& prefix) override { return inner_->List(prefix); }
  std::string Describe() const override { return inner_->Describe(); }
  std::string Location() const override { return inner_->Location(); }

 private:
  std::shared_ptr<s3::ObjectStore> inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool hold_ = false;
  int held_ = 0;
};

// Stops and starts the cluster's radosgw (tools/ceph-rgw, through the
// variables with-rgw.sh sets); one stopped is started again on the way out
// of the test, whatever happened.
class Rgw {
 public:
  Rgw() {
    const char* tool = getenv("MUSCLE_CEPH_TOOL");
    const char* dir = getenv("MUSCLE_CEPH_DIR");
    if (!tool || !dir || !*tool || !*dir)
      FAIL("MUSCLE_CEPH_TOOL and MUSCLE_CEPH_DIR are not set: run through tests/s3/with-rgw.sh");
    cmd_ = std::string("'") + tool + "' %s '" + dir + "' 2>&1";
  }
  ~Rgw() {
    if (stopped_) Run("start-rgw");
  }
  void Stop() {
    auto t = Clock::now();
    std::string out;
    int rc = Run("stop-rgw", &out);
    INFO(out);
    REQUIRE(rc == 0);
    stopped_ = true;
    UNSCOPED_INFO("stop-rgw took " << Seconds(t) << " s");
  }
  void Start() {
    auto t = Clock::now();
    std::string out;
    int rc = Run("start-rgw", &out);
    INFO(out);
    REQUIRE(rc == 0);
    stopped_ = false;
    UNSCOPED_INFO("start-rgw took " << Seconds(t) << " s");
  }

 private:
  int Run(const char* what, std::string* out = nullptr) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, cmd_.c_str(), what);
    return test::RunCommand(cmd, out);
  }
  std::string cmd_;
  bool stopped_ = false;
};

// Options for a test: packs sealed at `pack_target`, short retries, and no
// early seal (seal_after_s): packs are sealed by size only, so that which
// ones are uploaded does not depend on how long a test takes.
BucketPackStore::Options Quick(uint64_t pack_target) {
  BucketPackStore::Options o;
  o.pack_target = pack_target;
  o.retry_first_s = 0.05;
  o.retry_max_s = 0.5;
  o.seal_after_s = 3600;
  return o;
}

// An S3 client that gives up fast: radosgw is stopped on purpose below.
void FastFailing(s3::S3Config& c) {
  c.max_attempts = 2;
  c.backoff_initial = std::chrono::milliseconds(20);
  c.backoff_max = std::chrono::milliseconds(100);
  c.connect_timeout = std::chrono::milliseconds(1000);
  c.low_speed_time = std::chrono::seconds(5);
}

TEST_CASE("bucket on RGW: packs upload (multipart too), are evicted, read back with ranged GETs, and "
          "after a reopen",
          "[s3][bucket]") {
  // Parts of 5 MiB (S3's minimum): the 6 MiB pack below goes as a multipart
  // upload, the 1 MiB ones as single PUTs.
  std::shared_ptr<s3::S3ObjectStore> bucket =
      test::NewTestBucket("store", [](s3::S3Config& c) { c.part_size = 5u << 20; });
  test::TempDir base;
  std::string cache = base.path + "/cache";
  BucketPackStore::Options o = Quick(1u << 20);
  o.cache_limit = 1536u << 10;  // the 6 MiB pack alone is over it: back-pressure
  o.read_ahead = 256u << 10;
  auto cs = std::make_unique<BucketPackStore>(bucket, cache, o);
  RequireOk(cs->Open("owner-1", {}));

  std::vector<Chunk> chunks;
  Fill(*cs, 12, 200000, 1000, &chunks);  // 5 to a pack
  Chunk big = Make(6u << 20, 2000);      // over the target: a pack of its own
  Put(*cs, big);
  const uint64_t big_pack = big.at.at.container;
  chunks.push_back(std::move(big));
  RequireOk(cs->Sync());
  // The next put seals the big pack; the ones after it wait for its upload
  // (pending over the cache limit) and go on once it is done.
  auto t = Clock::now();
  Fill(*cs, 11, 200000, 3000, &chunks);
  INFO("writing behind the big pack took " << Seconds(t) << " s");
  RequireOk(cs->Drain(60));
  RequireOk(cs->Sync());  // (evicts, as every commit does)

  // Every sealed pack is an object under packs/, of its sealed size, named
  // by the manifest; the open pack is not uploaded.
  std::map<uint64_t, uint64_t> index = IndexOf(chunks);
  const uint64_t open = cs->mark().container;
  REQUIRE(index.rbegin()->first == open);
  REQUIRE(index[open] == cs->mark().size);
  auto objects = Objects(*bucket);
  auto manifest = Manifest(cache);
  CHECK(objects.size() == index.size() - 1);
  CHECK(manifest.size() == index.size() - 1);
  CHECK(KeysOf(objects) == KeysOf(manifest));
  for (auto& [id, u] : manifest) {
    INFO("pack " << id << " uploaded as " << u.first);
    CHECK(u.first.size() == strlen("packs/") + 32);
    CHECK(u.first.find_first_not_of("0123456789abcdef", strlen("packs/")) == std::string::npos);
    CHECK(u.second == index[id]);
    CHECK(objects[u.first] == index[id]);
  }
  CHECK(manifest.count(big_pack) == 1);
  CHECK(manifest[big_pack].second > (6u << 20));
  CHECK(bucket->stats().multipart_uploads == 1);
  BucketStats st = cs->stats();
  CHECK(st.uploaded_packs == index.size() - 1);
  CHECK(st.pending_packs == 0);
  CHECK(st.pending_bytes == 0);
  CHECK(st.upload_failures == 0);
  CHECK(st.last_error.empty());
  // Evicted down to the limit: the big pack and the first ones are gone
  // from the cache; the open pack stays.
  CHECK(st.cached_bytes <= o.cache_limit);
  CHECK(st.evictions >= index.size() - 3);
  CHECK(Cached(cache, open));
  CHECK_FALSE(Cached(cache, 1));
  CHECK_FALSE(Cached(cache, big_pack));

  // Everything reads back byte for byte; the evicted packs with ranged GETs.
  uint64_t gets = bucket->stats().requests, reads = st.bucket_reads;
  CheckAll(*cs, chunks);
  CHECK(cs->stats().bucket_reads - reads >= index.size() - 3);
  CHECK(bucket->stats().requests - gets >= index.size() - 3);
  // A range of the big chunk across the boundary of the multipart upload's
  // parts (5 MiB into the object), and its last bytes.
  const Chunk& b = chunks[12];
  REQUIRE(b.at.at.container == big_pack);
  uint64_t from = (5u << 20) - b.at.at.offset - 1000;
  std::string part(2000, '\0');
  RequireOk(cs->Read(b.at.at, b.data.size(), from, part.size(), part.data()));
  CHECK((part == b.data.substr(from, part.size())));
  RequireOk(cs->Read(b.at.at, b.data.size(), b.data.size() - 10, 10, part.data()));
  CHECK((part.substr(0, 10) == b.data.substr(b.data.size() - 10)));
  // A reader instance reads the evicted packs too; check's walk of an
  // evicted pack (a whole GET) finds its records.
  auto reader = cs->NewReader();
  REQUIRE(reader.ok());
  CheckAll(**reader, {chunks[0], chunks[12], chunks[20]});
  std::vector<ChunkRecord> records;
  RequireOk(cs->Records(big_pack, index[big_pack], records));
  REQUIRE(records.size() == 1);
  CHECK(memcmp(records[0].hash, b.hash, 32) == 0);
  RequireOk(cs->Records(1, index[1], records));
  CHECK(records.size() == 5);
  reader->reset();

  // Reopen from the cache directory on the same bucket (another client),
  // evicting every uploaded pack at Open: all of it from the bucket again.
  ContainerMark mark = cs->mark();
  cs.reset();
  auto bucket2 = SameBucket(*bucket);
  o.cache_limit = 1;
  cs = std::make_unique<BucketPackStore>(bucket2, cache, o);
  RequireOk(cs->Open("owner-1", index));
  CHECK(cs->mark() == mark);
  for (auto& [id, size] : index) CHECK(Cached(cache, id) == (id == open));
  CheckAll(*cs, chunks);
  CHECK(cs->stats().bucket_reads >= index.size() - 1);
  // Nothing was deleted or uploaded again; appends go on in the open pack.
  RequireOk(cs->Drain(30));
  CHECK(KeysOf(Objects(*bucket2)) == KeysOf(manifest));
  Chunk more = Make(1000, 4000);
  Put(*cs, more);
  CHECK(more.at.at.container == open);
  RequireOk(cs->Sync());
  CheckAll(*cs, {more});
}

TEST_CASE("bucket on RGW: radosgw stopped mid-write: acknowledged locally up to the limit, then "
          "ENOSPC at once; all uploads when it is back",
          "[s3][bucket]") {
  Rgw rgw;
  std::shared_ptr<s3::S3ObjectStore> direct = test::NewTestBucket("store", FastFailing);
  auto gate = std::make_shared<GatedStore>(direct);
  test::TempDir base;
  std::string cache = base.path + "/cache";
  BucketPackStore::Options o = Quick(256u << 10);  // 4 chunks of ~60 KB
  o.cache_limit = 1u << 20;
  o.read_ahead = 64u << 10;
  o.retry_first_s = 0.1;
  o.full_wait_s = 20;  // a Put that waited for it would show
  auto cs = std::make_unique<BucketPackStore>(gate, cache, o);
  RequireOk(cs->Open("owner-1", {}));

  // Before: packs uploaded and some evicted.
  std::vector<Chunk> acked;
  Fill(*cs, 30, 60000, 5000, &acked);
  RequireOk(cs->Drain(30));
  RequireOk(cs->Sync());
  const size_t before = acked.size();
  const uint64_t uploaded_before = cs->stats().uploaded_packs;
  REQUIRE(uploaded_before >= 6);
  REQUIRE_FALSE(Cached(cache, 1));

  // Uploads pending (the first one in flight, held) when radosgw stops.
  gate->Hold(true);
  Fill(*cs, 9, 60000, 6000, &acked);  // seals two packs
  REQUIRE(gate->WaitHeld(10));
  CHECK(cs->stats().pending_packs >= 2);
  rgw.Stop();
  gate->Hold(false);

  // Writes go on, acknowledged by the local disk, until the packs not yet
  // uploaded reach the cache limit; then Put fails at once with ENOSPC
  // naming the last upload error, and adds nothing.
  Status refused;
  double refused_after = 0;
  for (int i = 0; i < 200; i++) {
    Chunk c = Make(60000, 7000 + uint32_t(i));
    ContainerMark m = cs->mark();
    auto t = Clock::now();
    auto p = cs->Put(c.data, c.hash);
    if (!p.ok()) {
      refused = p.status();
      refused_after = Seconds(t);
      CHECK(cs->mark() == m);
      break;
    }
    c.at = *p;
    RequireOk(cs->Sync());
    acked.push_back(std::move(c));
  }
  INFO(refused.ToString());
  CHECK(refused.err() == ENOSPC);
  CHECK(refused.message().find("not yet uploaded") != std::string::npos);
  CHECK(refused.message().find("last upload error") != std::string::npos);
  CHECK(refused_after < 3);  // not the full_wait_s of a bucket that takes uploads
  BucketStats st = cs->stats();
  CHECK(st.pending_bytes >= o.cache_limit);
  CHECK(st.pending_bytes <= o.cache_limit + o.pack_target);
  CHECK(st.uploaded_packs == uploaded_before);
  CHECK(st.upload_failures >= 1);
  CHECK_FALSE(st.last_error.empty());
  // (Writes were acknowledged during the outage, about a cache limit's worth.)
  CHECK(acked.size() - before >= o.cache_limit / 60100 - 1);
  // Again at once; Drain gives up; what is pending is read from the cache;
  // an evicted pack fails to read (EIO, quickly) instead of hanging.
  auto t = Clock::now();
  Chunk c = Make(60000, 8000);
  CHECK(cs->Put(c.data, c.hash).err() == ENOSPC);
  CHECK(Seconds(t) < 3);
  CHECK(cs->Drain(0.5).err() == ETIMEDOUT);
  CheckAll(*cs, std::vector<Chunk>(acked.begin() + long(before), acked.end()));
  t = Clock::now();
  auto down = ReadChunk(*cs, acked[0]);
  CHECK(Seconds(t) < 5);
  CHECK_FALSE(down.ok());
  CHECK(down.status().err() == EIO);

  // radosgw back: the uploads drain, the store takes writes again, and
  // every acknowledged chunk reads back from the bucket once evicted.
  rgw.Start();
  t = Clock::now();
  RequireOk(cs->Drain(60));
  INFO("the uploads drained " << Seconds(t) << " s after start-rgw");
  st = cs->stats();
  CHECK(st.pending_packs == 0);
  CHECK(st.last_error.empty());
  uint64_t reads = st.bucket_reads;
  RequireOk(cs->Sync());  // evicts
  CHECK(cs->stats().cached_bytes <= o.cache_limit);
  CheckAll(*cs, acked);
  CHECK(cs->stats().bucket_reads > reads);
  Chunk after = Make(60000, 9000);
  Put(*cs, after);
  RequireOk(cs->Sync());
  acked.push_back(std::move(after));
  RequireOk(cs->Drain(30));
  // The bucket holds exactly what the manifest names: every sealed pack.
  std::map<uint64_t, uint64_t> index = IndexOf(acked);
  auto manifest = Manifest(cache);
  CHECK(manifest.size() == index.size() - 1);
  CHECK(KeysOf(Objects(*direct)) == KeysOf(manifest));

  // And after a reopen with nothing but the open pack in the cache.
  ContainerMark mark = cs->mark();
  cs.reset();
  o.cache_limit = 1;
  cs = std::make_unique<BucketPackStore>(SameBucket(*direct), cache, o);
  RequireOk(cs->Open("owner-1", index));
  CHECK(cs->mark() == mark);
  CheckAll(*cs, acked);
}

TEST_CASE("bucket on RGW: a crash between upload and index commit: the uploads the index does not "
          "name are deleted",
          "[s3][bucket]") {
  std::shared_ptr<s3::S3ObjectStore> bucket = test::NewTestBucket("store");
  test::TempDir base;
  std::string cache = base.path + "/cache";
  BucketPackStore::Options o = Quick(128u << 10);  // 2 chunks of 50 KB
  auto cs = std::make_unique<BucketPackStore>(bucket, cache, o);
  RequireOk(cs->Open("owner-1", {}));

  // Committed: packs 1-3 sealed and uploaded, pack 4 open with one chunk.
  std::vector<Chunk> committed_chunks;
  Fill(*cs, 7, 50000, 10000, &committed_chunks);
  RequireOk(cs->Drain(30));
  const ContainerMark committed = cs->mark();
  REQUIRE(committed.container == 4);
  const std::map<uint64_t, uint64_t> index = IndexOf(committed_chunks);
  const auto kept = Manifest(cache);
  REQUIRE(kept.size() == 3);

  // Then a transaction whose packs are sealed, synced and uploaded (pack 4
  // at a longer length than committed, packs 5-8), but whose index commit
  // never happens: the process dies.
  std::vector<Chunk> lost;
  Fill(*cs, 10, 50000, 11000, &lost);
  RequireOk(cs->Drain(30));
  const auto uploaded = Manifest(cache);
  REQUIRE(uploaded.size() == 8);
  CHECK(KeysOf(Objects(*bucket)) == KeysOf(uploaded));
  // And an upload cut short before its manifest line: an object nobody names.
  const std::string orphan = "packs/00112233445566778899aabbccddeeff";
  RequireOk(bucket->Put(orphan, "torn"));
  cs.reset();

  // Restart on the committed index (another client, an empty cache limit:
  // the committed packs are read from the bucket).
  auto bucket2 = SameBucket(*bucket);
  o.cache_limit = 1;
  cs = std::make_unique<BucketPackStore>(bucket2, cache, o);
  RequireOk(cs->Open("owner-1", index));
  RequireOk(cs->Drain(30));
  // Only the committed packs' objects are left, under their names; the
  // manifest names them and nothing else; the store knows no other pack.
  CHECK(KeysOf(Objects(*bucket2)) == KeysOf(kept));
  CHECK(KeysOf(Manifest(cache)) == KeysOf(kept));
  CHECK(cs->Containers() == std::vector<uint64_t>{1, 2, 3, 4});
  CHECK(cs->stats().uploaded_packs == 3);
  CHECK(cs->mark() == committed);
  // What the index names reads back (packs 1-3 from the bucket); what the
  // lost transaction wrote in the voided packs is gone.
  CheckAll(*cs, committed_chunks);
  CHECK(cs->stats().bucket_reads >= 3);
  REQUIRE(lost[1].at.at.container == 5);
  CHECK_FALSE(ReadChunk(*cs, lost[1]).ok());
  CHECK_FALSE(ReadChunk(*cs, lost.back()).ok());

  // The store goes on: pack 4 continues from its committed length and is
  // uploaded under a new name once sealed.
  std::vector<Chunk> next;
  Fill(*cs, 4, 50000, 12000, &next);
  CHECK(next[0].at.at.container == 4);
  CHECK(next[0].at.at.offset == committed.size + kRecordHeaderSize);
  RequireOk(cs->Drain(30));
  auto now = Manifest(cache);
  REQUIRE(now.count(4) == 1);
  CHECK(now[4].first != uploaded.at(4).first);
  CHECK(KeysOf(Objects(*bucket2)) == KeysOf(now));
  CheckAll(*cs, committed_chunks);
  CheckAll(*cs, next);
}

TEST_CASE("bucket on RGW: uploaded packs rolled back are deleted, also one in flight", "[s3][bucket]") {
  std::shared_ptr<s3::S3ObjectStore> direct = test::NewTestBucket("store");
  auto gate = std::make_shared<GatedStore>(direct);
  test::TempDir base;
  std::string cache = base.path + "/cache";
  BucketPackStore::Options o = Quick(128u << 10);
  auto cs = std::make_unique<BucketPackStore>(gate, cache, o);
  RequireOk(cs->Open("owner-1", {}));
  std::vector<Chunk> committed_chunks;
  Fill(*cs, 5, 50000, 20000, &committed_chunks);  // packs 1-2 sealed, 3 open
  RequireOk(cs->Drain(30));
  const ContainerMark committed = cs->mark();
  const auto kept = Manifest(cache);
  REQUIRE(kept.size() == 2);

  // A transaction that seals packs (uploaded at once), then fails.
  std::vector<Chunk> failed;
  Fill(*cs, 7, 50000, 21000, &failed);
  RequireOk(cs->Drain(30));
  CHECK(Objects(*direct).size() == 5);
  RequireOk(cs->RollBackTo(committed));
  RequireOk(cs->Drain(30));
  CHECK(KeysOf(Objects(*direct)) == KeysOf(kept));
  CHECK(KeysOf(Manifest(cache)) == KeysOf(kept));
  CHECK(cs->stats().uploaded_packs == 2);

  // Again with an upload in flight when the roll-back comes: it completes
  // on RGW after the roll-back and is deleted then.
  gate->Hold(true);
  Fill(*cs, 7, 50000, 22000, &failed);
  REQUIRE(gate->WaitHeld(10));
  RequireOk(cs->RollBackTo(committed));
  gate->Hold(false);
  RequireOk(cs->Drain(30));
  CHECK(KeysOf(Objects(*direct)) == KeysOf(kept));
  CHECK(KeysOf(Manifest(cache)) == KeysOf(kept));
  CHECK(cs->mark() == committed);

  // The pack ids are used again for new data, which reads back, also after
  // a reopen that reads the sealed packs from the bucket.
  std::vector<Chunk> again;
  Fill(*cs, 5, 50000, 23000, &again);
  RequireOk(cs->Drain(30));
  CHECK(Objects(*direct).size() == 4);
  std::vector<Chunk> all = committed_chunks;
  all.insert(all.end(), again.begin(), again.end());
  CheckAll(*cs, all);
  cs.reset();
  o.cache_limit = 1;
  cs = std::make_unique<BucketPackStore>(SameBucket(*direct), cache, o);
  RequireOk(cs->Open("owner-1", IndexOf(all)));
  RequireOk(cs->Drain(30));
  CHECK(Objects(*direct).size() == 4);
  CheckAll(*cs, all);
}

TEST_CASE("bucket on RGW: a reopen whose open pack was sealed and uploaded at its committed length: "
          "what is appended next stays readable while its upload is pending",
          "[s3][bucket]") {
  // (A crash after the first Put of a transaction sealed the open pack and
  // its upload completed, before the commit that names the next pack.)
  std::shared_ptr<s3::S3ObjectStore> direct = test::NewTestBucket("store");
  auto gate = std::make_shared<GatedStore>(direct);
  test::TempDir base;
  std::string cache = base.path + "/cache";
  BucketPackStore::Options o = Quick(128u << 10);
  auto cs = std::make_unique<BucketPackStore>(gate, cache, o);
  RequireOk(cs->Open("owner-1", {}));
  std::vector<Chunk> chunks;
  Fill(*cs, 3, 50000, 30000, &chunks);  // pack 1: 2 chunks; pack 2: 1 (open)
  const auto index = IndexOf(chunks);
  REQUIRE(cs->mark().container == 2);
  std::vector<Chunk> lost;
  Fill(*cs, 1, 100000, 31000, &lost);  // seals pack 2 at its committed length
  RequireOk(cs->Drain(30));
  REQUIRE(Manifest(cache).count(2) == 1);
  REQUIRE(Manifest(cache).at(2).second == index.at(2));
  cs.reset();

  // Every uploaded pack is evicted at each Sync (cache limit 1).
  o.cache_limit = 1;
  cs = std::make_unique<BucketPackStore>(gate, cache, o);
  RequireOk(cs->Open("owner-1", index));
  CHECK(cs->mark().container == 2);
  std::vector<Chunk> after;
  Fill(*cs, 1, 10000, 32000, &after);  // committed
  // The next seal's upload held: meanwhile, Sync evicts and `after` reads.
  gate->Hold(true);
  Fill(*cs, 1, 125000, 33000, &after);  // seals the pack `after[0]` is in
  REQUIRE(gate->WaitHeld(10));
  auto r = ReadChunk(*cs, after[0]);
  INFO("pack " << after[0].at.at.container << ": " << r.status().ToString());
  CHECK(r.ok());
  gate->Hold(false);
  RequireOk(cs->Drain(30));
  chunks.insert(chunks.end(), after.begin(), after.end());
  CheckAll(*cs, chunks);
  // The bucket holds what the manifest names, and a reopen on the new
  // index (everything but the open pack from the bucket) reads it all.
  CHECK(KeysOf(Objects(*direct)) == KeysOf(Manifest(cache)));
  cs.reset();
  cs = std::make_unique<BucketPackStore>(SameBucket(*direct), cache, o);
  RequireOk(cs->Open("owner-1", IndexOf(chunks)));
  RequireOk(cs->Drain(30));
  CheckAll(*cs, chunks);
}

}  // namespace bucket_on_s3

// --- the ChunkStore contract (tests/store/chunk_store_test.cc) on RGW ---
//
// That file's TEMPLATE_TEST_CASEs run here on S3Backend alone (a bucket on
// RGW behind a cache directory; a crash keeps both), named "... -
// S3Backend" and tagged [s3][bucket]; its plain TEST_CASEs (a whole store on
// the memory backend) are compiled but not registered: unit_tests runs them.

namespace {

struct S3Backend {
  muscle::test::TempDir base;
  std::shared_ptr<s3::S3ObjectStore> bucket = muscle::test::NewTestBucket("contract");
  std::unique_ptr<ChunkStore> Make(uint64_t target) {
    BucketPackStore::Options o = bucket_on_s3::Quick(target);
    o.retry_first_s = 0.01;
    o.retry_max_s = 0.2;
    return std::make_unique<BucketPackStore>(bucket, base.path + "/cache", o);
  }
  std::unique_ptr<ChunkStore> Crash(std::unique_ptr<ChunkStore> old, uint64_t target) {
    old.reset();
    return Make(target);
  }
};

}  // namespace

#undef TEMPLATE_TEST_CASE
#define TEMPLATE_TEST_CASE(name, tags, ...) \
  INTERNAL_CATCH_TEMPLATE_TEST_CASE(name, tags "[s3][bucket]", S3Backend)
#undef TEST_CASE
#define TEST_CASE(...) [[maybe_unused]] static void INTERNAL_CATCH_UNIQUE_NAME(not_registered_test_)()
#include "tests/store/chunk_store_test.cc"
#undef TEST_CASE
#define TEST_CASE(...) INTERNAL_CATCH_TESTCASE(__VA_ARGS__)
#undef TEMPLATE_TEST_CASE
#define TEMPLATE_TEST_CASE(...) INTERNAL_CATCH_TEMPLATE_TEST_CASE(__VA_ARGS__)
