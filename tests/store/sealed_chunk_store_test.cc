// Encryption at rest (store/sealed_chunk_store.h, store/chunk_naming.h):
// an encrypted store keeps no plaintext and no plaintext hash in its packs
// or its index, cuts where a plain store does not, opens only with its
// key, and answers EIO (and check names the record) for every record that
// was altered, moved, swapped or truncated on disk or in the bucket.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <set>

#include "crypto/keys.h"
#include "crypto/seal.h"
#include "s3/dir_object_store.h"
#include "store/bucket_pack_store.h"
#include "store/memory_chunk_store.h"
#include "store/pack.h"
#include "store/sealed_chunk_store.h"
#include "store/sha256.h"
#include "store/sqlite.h"
#include "store/store.h"
#include "tests/store/store_test_util.h"
#include "tests/test_util.h"

using namespace muscle;
using namespace muscle::store;
using muscle::test::KeyOf;
using muscle::test::WriteFile;

namespace {


std::unique_ptr<Store> OpenKeyed(const std::string& path, std::shared_ptr<const crypto::MasterKey> key,
                                 std::unique_ptr<ChunkStore> chunks = nullptr) {
  auto s = Store::Open(path, std::move(chunks), std::move(key));
  INFO(s.status().ToString());
  REQUIRE(s.ok());
  return std::move(*s);
}


std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Every regular file under `dir`, recursively, concatenated.
std::string AllBytesUnder(const std::string& dir) {
  std::string all, out;
  REQUIRE(test::RunCommand("find " + dir + " -type f", &out) == 0);
  size_t at = 0;
  while (at < out.size()) {
    size_t nl = out.find('\n', at);
    if (nl == std::string::npos) nl = out.size();
    std::string f = out.substr(at, nl - at);
    if (!f.empty()) all += Slurp(f);
    at = nl + 1;
  }
  return all;
}

// Text with many distinct, recognisable 4 KiB pages.
std::string Recognisable(size_t n) {
  std::string s;
  for (size_t i = 0; s.size() < n; i++) s += "secret line " + std::to_string(i) + " of the plaintext\n";
  s.resize(n);
  return s;
}

// The chunk rows (pack, offset, size, name) of the index in the database
// file at `db` (read while the store is open: SQLite's own reader).
struct Row {
  int64_t pack, offset, size;
  std::string name;
};
std::vector<Row> Rows(const std::string& db) {
  Db h;
  Status o = h.Open(db, true);
  INFO(o.ToString());
  REQUIRE(o.ok());
  std::vector<Row> rows;
  Stmt q(h, "SELECT pack, offset, size, hash FROM chunks ORDER BY pack, offset");
  while (q.Step()) rows.push_back({q.Int(0), q.Int(1), q.Int(2), std::string(q.Blob(3))});
  return rows;
}

void FlipByte(const std::string& path, off_t at) {
  int fd = open(path.c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  unsigned char b = 0;
  REQUIRE(pread(fd, &b, 1, at) == 1);
  b ^= 0x01;
  REQUIRE(pwrite(fd, &b, 1, at) == 1);
  close(fd);
}

}  // namespace

TEST_CASE("encrypted store: no plaintext or plaintext hash on disk, cut points keyed, reads back",
          "[sealed]") {
  test::TempDir dir;
  std::string path = dir.path + "/store.db";
  std::string text = Recognisable(3u << 20), random = test::RandomBytes(2u << 20, 7);
  uint64_t ia, ir;
  {
    auto s = OpenKeyed(path, KeyOf('k'));
    CHECK(s->encrypted());
    ia = WriteFile(*s, "text", text);
    ir = WriteFile(*s, "random", random);
    REQUIRE(s->TakeSnapshot("one").ok());
    REQUIRE(s->Sync(true).ok());
    CHECK(test::ReadAll(*s, ia) == text);
    CHECK(test::ReadAll(*s, ir) == random);
    test::RequireClean(*s);
    // The index names chunks by keyed ids: none is the SHA-256 of its bytes.
    size_t checked = 0;
    for (const Row& r : Rows(path)) {
      std::string data;
      ChunkRecord head;
      auto reader = s->NewChunkReader();
      REQUIRE(reader.ok());
      REQUIRE((*reader)->ReadRecord({uint64_t(r.pack), uint64_t(r.offset)}, uint64_t(r.size), &head, data).ok());
      unsigned char h[32];
      Sha256(data.data(), data.size(), h);
      CHECK(r.name != std::string(reinterpret_cast<char*>(h), 32));
      CHECK(r.name == std::string(reinterpret_cast<char*>(head.hash), 32));
      if (++checked == 8) break;
    }
  }
  std::string packs = AllBytesUnder(dir.path + "/packs");
  REQUIRE(packs.size() > (5u << 20));
  // No page of either file, and no SHA-256 of any 64 KiB piece of them, is
  // anywhere in the packs or the database.
  std::string db = Slurp(path) + Slurp(path + "-wal");
  for (size_t at = 0; at + 4096 <= text.size(); at += 256u << 10) {
    std::string_view page = std::string_view(text).substr(at, 64);
    CHECK(packs.find(page) == std::string::npos);
    CHECK(db.find(page) == std::string::npos);
    CHECK(packs.find(std::string_view(random).substr(at % random.size(), 64)) == std::string::npos);
  }
  // The same bytes in a plain store: its chunk names are SHA-256 of the
  // chunks, and none of them is in the encrypted store's packs or index;
  // the encrypted store cut the text elsewhere.
  test::TempDir plain_dir;
  std::set<std::pair<int64_t, int64_t>> plain_sizes;
  {
    auto p = test::OpenStore(plain_dir.path + "/store.db");
    WriteFile(*p, "text", text);
    REQUIRE(p->Sync(true).ok());
    for (const Row& r : Rows(plain_dir.path + "/store.db")) {
      CHECK(packs.find(r.name) == std::string::npos);
      CHECK(db.find(r.name) == std::string::npos);
      plain_sizes.insert({r.size, 0});
    }
  }
  {
    auto s = OpenKeyed(path, KeyOf('k'));
    std::set<std::pair<int64_t, int64_t>> keyed_sizes;
    for (const Row& r : Rows(path)) keyed_sizes.insert({r.size, 0});
    size_t same = 0;
    for (auto& x : keyed_sizes) same += plain_sizes.count(x);
    CHECK(same < plain_sizes.size() / 2);
    // Reopened with its key: everything reads back, check is clean.
    CHECK(test::ReadAll(*s, ia) == text);
    CHECK(test::ReadAll(*s, ir) == random);
    test::RequireClean(*s);
  }
}

TEST_CASE("encrypted store: opens only with its key; a plain store refuses a key", "[sealed]") {
  test::TempDir dir;
  std::string path = dir.path + "/store.db";
  {
    auto s = OpenKeyed(path, KeyOf('a'));
    WriteFile(*s, "f", "hello");
    REQUIRE(s->Sync(true).ok());
  }
  auto none = Store::Open(path);
  REQUIRE_FALSE(none.ok());
  CHECK(none.status().err() == EACCES);
  CHECK(none.status().message().find("encrypted") != std::string::npos);
  auto wrong = Store::Open(path, nullptr, KeyOf('b'));
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.status().err() == EACCES);
  CHECK(wrong.status().message().find("not the key") != std::string::npos);
  CHECK(OpenKeyed(path, KeyOf('a'))->encrypted());

  test::TempDir plain;
  { auto p = test::OpenStore(plain.path + "/store.db"); WriteFile(*p, "f", "x"); REQUIRE(p->Sync(true).ok()); }
  auto keyed = Store::Open(plain.path + "/store.db", nullptr, KeyOf('a'));
  REQUIRE_FALSE(keyed.ok());
  CHECK(keyed.status().err() == EINVAL);
  CHECK(keyed.status().message().find("without encryption") != std::string::npos);
}

TEST_CASE("encrypted store: a record altered, moved, swapped or truncated on disk is EIO and check "
          "names it", "[sealed]") {
  test::TempDir dir;
  std::string path = dir.path + "/store.db";
  // Two files of equal size, one chunk each (under the minimum cut size).
  std::string a = test::RandomBytes(9000, 1), b = test::RandomBytes(9000, 2);
  uint64_t ia, ib;
  std::vector<Row> rows;
  {
    auto s = OpenKeyed(path, KeyOf('k'));
    ia = WriteFile(*s, "a", a);
    ib = WriteFile(*s, "b", b);
    REQUIRE(s->Sync(true).ok());
    rows = Rows(path);
  }
  REQUIRE(rows.size() == 2);
  REQUIRE(rows[0].pack == rows[1].pack);
  {
    // rows[0] is a's chunk, rows[1] b's (flushes need not run in order).
    auto s = OpenKeyed(path, KeyOf('k'));
    auto reader = s->NewChunkReader();
    REQUIRE(reader.ok());
    std::string data;
    ChunkRecord head;
    REQUIRE((*reader)->ReadRecord({uint64_t(rows[0].pack), uint64_t(rows[0].offset)}, 9000, &head, data).ok());
    if (data != a) std::swap(rows[0], rows[1]);
  }
  std::string pack = test::PackPath(dir.path, uint64_t(rows[0].pack));
  std::string original = Slurp(pack);
  auto restore = [&] {
    std::ofstream out(pack, std::ios::binary | std::ios::trunc);
    out << original;
  };
  auto expect_bad = [&](const char* what, bool a_bad, bool b_bad) {
    INFO(what);
    auto s = OpenKeyed(path, KeyOf('k'));
    std::string out;
    Status ra = s->Read(ia, 0, 9000, out);
    CHECK(ra.ok() != a_bad);
    if (a_bad) CHECK(ra.err() == EIO);
    if (!a_bad) CHECK(out == a);
    Status rb = s->Read(ib, 0, 9000, out);
    CHECK(rb.ok() != b_bad);
    if (b_bad) CHECK(rb.err() == EIO);
    CheckReport r = s->Check();
    CHECK_FALSE(r.ok());
    bool named = false;
    for (const auto& p : r.problems) named |= p.find("fails authentication") != std::string::npos &&
                                              p.find("pack 000000000000000" + std::to_string(rows[0].pack)) != std::string::npos;
    CHECK(named);
  };
  // A bit flipped in the ciphertext of a.
  FlipByte(pack, rows[0].offset + 100);
  expect_bad("bit flip", true, false);
  restore();
  // A bit flipped in a's record header (its name).
  FlipByte(pack, rows[0].offset - 10);
  expect_bad("header flip", true, false);
  restore();
  // The two records swapped (equal lengths): each is now at the other's place.
  {
    size_t len = 9000 + crypto::kSealOverhead + kRecordHeaderSize;
    std::string t = original;
    std::string ra = original.substr(rows[0].offset - kRecordHeaderSize, len);
    std::string rb = original.substr(rows[1].offset - kRecordHeaderSize, len);
    t.replace(rows[0].offset - kRecordHeaderSize, len, rb);
    t.replace(rows[1].offset - kRecordHeaderSize, len, ra);
    std::ofstream(pack, std::ios::binary | std::ios::trunc) << t;
  }
  expect_bad("swap", true, true);
  restore();
  // b's sealed data replaced by a's (header kept): moved content.
  {
    std::string t = original;
    t.replace(rows[1].offset, 9000 + crypto::kSealOverhead,
              original.substr(rows[0].offset, 9000 + crypto::kSealOverhead));
    std::ofstream(pack, std::ios::binary | std::ios::trunc) << t;
  }
  expect_bad("moved data", false, true);
  restore();
  // Truncated by 16 bytes: b's tag is gone (the pack is shorter than the
  // index says: the store does not open at all, which is as safe).
  REQUIRE(truncate(pack.c_str(), off_t(original.size() - 16)) == 0);
  {
    auto s = Store::Open(path, nullptr, KeyOf('k'));
    if (s.ok()) {
      std::string out;
      CHECK((*s)->Read(ib, 0, 9000, out).err() == EIO);
    } else {
      CHECK(s.status().err() == EIO);
    }
  }
  restore();
  auto s = OpenKeyed(path, KeyOf('k'));
  test::RequireClean(*s);
}

TEST_CASE("sealed chunk store: a chunk read in pieces is opened once; roll-back forgets", "[sealed]") {
  auto inner = std::make_unique<MemoryChunkStore>();
  SealedChunkStore cs(std::move(inner), KeyOf('m'));
  REQUIRE(cs.Open("0123456789abcdef0123456789abcdef", {}).ok());
  std::string data = test::RandomBytes(200000, 3);
  unsigned char name[32];
  Sha256(data.data(), data.size(), name);
  ChunkLocation place = cs.PlaceOf(data.size());
  auto put = cs.Put(data, name);
  REQUIRE(put.ok());
  CHECK(put->at.container == place.container);
  CHECK(put->at.offset == place.offset);
  CHECK(cs.RecordOverhead() == kRecordHeaderSize + crypto::kSealOverhead);
  CHECK(cs.mark().size == put->at.offset + data.size() + crypto::kSealOverhead);
  std::string back(data.size(), '\0');
  for (size_t at = 0; at < data.size(); at += 8192) {
    size_t n = std::min<size_t>(8192, data.size() - at);
    REQUIRE(cs.Read(put->at, data.size(), at, n, back.data() + at).ok());
  }
  CHECK(back == data);
  CHECK(cs.opened() == 1);
  // A reader's pieces of it share what the writer opened (reads in flight
  // are answered by several threads); a whole chunk is opened each time.
  {
    auto peer = cs.NewReader();
    REQUIRE(peer.ok());
    auto* sealed = static_cast<SealedChunkStore*>(peer->get());
    REQUIRE(sealed->Read(put->at, data.size(), 100, 5000, back.data()).ok());
    CHECK(memcmp(back.data(), data.data() + 100, 5000) == 0);
    CHECK(sealed->opened() == 0);
    REQUIRE(sealed->Read(put->at, data.size(), 0, data.size(), back.data()).ok());
    CHECK(back == data);
    CHECK(sealed->opened() == 1);
  }
  std::vector<ChunkRecord> records;
  REQUIRE(cs.Records(1, cs.mark().size, records).ok());
  REQUIRE(records.size() == 1);
  CHECK(records[0].length == data.size());
  // A roll-back then a put of other bytes at the same place: read fresh.
  ContainerMark before{1, put->at.offset - kRecordHeaderSize};
  REQUIRE(cs.RollBackTo(before).ok());
  std::string other = test::RandomBytes(200000, 4);
  Sha256(other.data(), other.size(), name);
  auto again = cs.Put(other, name);
  REQUIRE(again.ok());
  CHECK(again->at.offset == put->at.offset);
  REQUIRE(cs.Read(again->at, other.size(), 0, other.size(), back.data()).ok());
  CHECK(back == other);
  REQUIRE(cs.Read(again->at, other.size(), 1000, 4000, back.data()).ok());
  CHECK(memcmp(back.data(), other.data() + 1000, 4000) == 0);
  // A reader instance opens the same records.
  auto reader = cs.NewReader();
  REQUIRE(reader.ok());
  REQUIRE((*reader)->Read(again->at, other.size(), 0, other.size(), back.data()).ok());
  CHECK(back == other);
}

TEST_CASE("encrypted store on a bucket: packs in the bucket are sealed; a flipped object is EIO",
          "[sealed][bucket]") {
  test::TempDir dir;
  auto bucket = std::make_shared<s3::DirObjectStore>(dir.path + "/bucket");
  BucketPackStore::Options o;
  o.pack_target = 1u << 20;
  o.cache_limit = 64u << 20;
  o.retry_first_s = 0.01;
  o.seal_after_s = 0;  // the open pack too is sealed and uploaded at each commit
  auto make = [&] { return std::make_unique<BucketPackStore>(bucket, dir.path + "/cache", o); };
  std::string text = Recognisable(4u << 20);
  uint64_t ino;
  {
    auto owned = make();
    BucketPackStore* chunks = owned.get();
    auto s = OpenKeyed(dir.path + "/store.db", KeyOf('z'), std::move(owned));
    ino = WriteFile(*s, "text", text);
    REQUIRE(s->Sync(true).ok());
    REQUIRE(chunks->Drain(30).ok());
    CHECK(chunks->stats().uploaded_packs >= 3);
    bool said = false;
    for (auto& [k, v] : s->ChunkStatus()) said |= k == "encryption" && v.find("xchacha20-poly1305") == 0;
    CHECK(said);
  }
  std::string objects = AllBytesUnder(dir.path + "/bucket");
  CHECK(objects.find(text.substr(1u << 20, 64)) == std::string::npos);
  // An empty cache: reads come from the bucket, and authenticate.
  test::RunCommand("rm -f " + dir.path + "/cache/*.pack");
  {
    auto s = OpenKeyed(dir.path + "/store.db", KeyOf('z'), make());
    CHECK(test::ReadAll(*s, ino) == text);
  }
  // One bit of one pack object flipped in the bucket.
  std::string listed;
  REQUIRE(test::RunCommand("find " + dir.path + "/bucket -path '*packs*' -type f | sort | head -1", &listed) == 0);
  std::string victim = listed.substr(0, listed.find('\n'));
  REQUIRE_FALSE(victim.empty());
  FlipByte(victim, 5000);
  test::RunCommand("rm -f " + dir.path + "/cache/*.pack");
  auto s = OpenKeyed(dir.path + "/store.db", KeyOf('z'), make());
  std::string out;
  bool failed = false;
  for (uint64_t at = 0; at < text.size(); at += 1u << 20) {
    Status r = s->Read(ino, at, 1u << 20, out);
    if (!r.ok()) {
      CHECK(r.err() == EIO);
      failed = true;
    } else {
      CHECK(out == text.substr(at, 1u << 20));
    }
  }
  CHECK(failed);
  CHECK_FALSE(s->Check().ok());
}

TEST_CASE("sealed chunk store: an authentic record of another chunk put back where the index names "
          "this one is refused", "[sealed]") {
  test::TempDir dir;
  auto packs = std::make_unique<LocalPackStore>(dir.path + "/packs", LocalPackStore::Mode::kWrite);
  SealedChunkStore cs(std::move(packs), KeyOf('p'));
  REQUIRE(cs.Open("0123456789abcdef0123456789abcdef", {}).ok());
  // X is put, rolled back (as by a crash before its commit), and Y put in
  // its place: the same pack, offset and length.
  std::string x = test::RandomBytes(50000, 5), y = test::RandomBytes(50000, 6);
  unsigned char nx[32], ny[32];
  Sha256(x.data(), x.size(), nx);
  Sha256(y.data(), y.size(), ny);
  auto px = cs.Put(x, nx);
  REQUIRE(px.ok());
  REQUIRE(cs.Sync().ok());
  std::string pack = dir.path + "/packs/0000000000000001.pack";
  std::string old_record = Slurp(pack).substr(px->at.offset - kRecordHeaderSize);
  REQUIRE(cs.RollBackTo({1, px->at.offset - kRecordHeaderSize}).ok());
  auto py = cs.Put(y, ny);
  REQUIRE(py.ok());
  REQUIRE(py->at.offset == px->at.offset);
  REQUIRE(cs.Sync().ok());
  std::string back(y.size(), '\0');
  REQUIRE(cs.Read(py->at, y.size(), 0, y.size(), back.data(), ny).ok());
  CHECK(back == y);
  // Someone who kept X's record writes it back.
  {
    int fd = open(pack.c_str(), O_WRONLY);
    REQUIRE(fd >= 0);
    REQUIRE(pwrite(fd, old_record.data(), old_record.size(), off_t(px->at.offset - kRecordHeaderSize)) ==
            ssize_t(old_record.size()));
    close(fd);
  }
  auto reader = cs.NewReader();
  REQUIRE(reader.ok());
  Status s = (*reader)->Read(py->at, y.size(), 0, y.size(), back.data(), ny);
  CHECK(s.err() == EIO);
  CHECK(s.message().find("another chunk than the index names") != std::string::npos);
}

TEST_CASE("a plain store converted in place: data, snapshots, hard links and xattrs kept, sealed, "
          "old packs gone", "[sealed][convert]") {
  test::TempDir dir;
  std::string path = dir.path + "/store.db";
  std::string text = Recognisable(2u << 20), old_text = Recognisable(600000).substr(100);
  uint64_t ia;
  std::vector<Row> before;
  {
    auto s = test::OpenStore(path);
    ia = WriteFile(*s, "a", old_text);
    REQUIRE(s->TakeSnapshot("old").ok());
    SetAttrRequest cut;
    cut.set_size = true;
    REQUIRE(s->SetAttr(ia, cut).ok());
    REQUIRE(s->Write(ia, 0, text).ok());
    auto d = s->Create(kRootIno, "d", S_IFDIR | 0755, 0, 0);
    REQUIRE(d.ok());
    REQUIRE(s->Link(d->ino, "hard", ia).ok());
    REQUIRE(s->SetXattr(ia, "user.color", "blue", 0).ok());
    REQUIRE(s->TakeSnapshot("new").ok());
    REQUIRE(s->Sync(true).ok());
    before = Rows(path);
    auto key = KeyOf('c');
    Status c = s->ConvertToEncrypted(key);
    INFO(c.ToString());
    REQUIRE(c.ok());
    CHECK(s->encrypted());
    CHECK(test::ReadAll(*s, ia) == text);
    test::RequireClean(*s);
    // It goes on: a write after the conversion, a gc.
    WriteFile(*s, "after", Recognisable(300000));
    REQUIRE(s->Sync(true).ok());
    REQUIRE(s->CollectGarbage(true).ok());
    test::RequireClean(*s);
  }
  // Every chunk renamed, none of the old names or the text left on disk.
  std::string packs = AllBytesUnder(dir.path + "/packs");
  std::string db = Slurp(path) + Slurp(path + "-wal");
  for (const Row& r : before) CHECK(packs.find(r.name) == std::string::npos);
  CHECK(packs.find(text.substr(1u << 20, 64)) == std::string::npos);
  CHECK(packs.find(old_text.substr(4096, 64)) == std::string::npos);
  CHECK_FALSE(Store::Open(path).ok());
  auto s = OpenKeyed(path, KeyOf('c'));
  CHECK(test::ReadAll(*s, ia) == text);
  auto hard = s->Lookup(s->Lookup(kRootIno, "d")->ino, "hard");
  REQUIRE(hard.ok());
  CHECK(hard->ino == ia);
  auto x = s->GetXattr(ia, "user.color");
  REQUIRE(x.ok());
  CHECK(*x == "blue");
  // Both snapshots still read (their objects re-encoded with new names).
  auto old_version = s->Restore("old", "a", "a-old");
  INFO(old_version.status().ToString());
  REQUIRE(old_version.ok());
  CHECK(test::ReadAll(*s, old_version->ino) == old_text);
  auto diff = s->Diff("old", "new", "");
  REQUIRE(diff.ok());
  CHECK_FALSE(diff->empty());
  test::RequireClean(*s);
  // Converting twice is refused.
  CHECK(s->ConvertToEncrypted(KeyOf('d')).err() == EEXIST);
}
