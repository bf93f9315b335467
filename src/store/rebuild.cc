// A store rebuilt from its bucket (musclefs restore-from), and the catalog
// it is rebuilt from (store/bucket_index.h): the bucket's index objects
// give every uploaded pack and the records in it, the catalog the
// snapshots; the live tree becomes the newest snapshot's. Runs on the
// thread opening the store, before anything else uses it.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <set>

#include "common/fs_util.h"
#include "common/log.h"
#include "crypto/seal.h"
#include "store/bucket_index.h"
#include "store/bucket_pack_store.h"
#include "store/statements.h"
#include "store/store.h"

namespace muscle::store {

namespace {
std::string_view View(const unsigned char (&h)[32]) {
  return std::string_view(reinterpret_cast<const char*>(h), 32);
}
}  // namespace

Status Store::PublishCatalog() {
  std::vector<CatalogEntry> entries;
  Stmt q(db_,
         "SELECT s.name, s.created, c.hash, s.mode, s.uid, s.gid, s.mtime, s.ctime, s.btime "
         "FROM snapshots s JOIN chunks c ON c.id=s.root ORDER BY s.created, s.id");
  while (q.Step()) {
    CatalogEntry e;
    e.name = std::string(q.Blob(0));
    e.created_ns = q.Int(1);
    std::string_view h = q.Blob(2);
    if (h.size() != 32) return Status(EIO, "snapshot " + e.name + ": a bad root hash");
    memcpy(e.root, h.data(), 32);
    e.mode = uint32_t(q.Int(3)), e.uid = uint32_t(q.Int(4)), e.gid = uint32_t(q.Int(5));
    e.mtime_ns = q.Int(6), e.ctime_ns = q.Int(7), e.btime_ns = q.Int(8);
    entries.push_back(std::move(e));
  }
  if (q.failed()) return q.Error("catalog");
  chunks_->PublishCatalog(EncodeCatalog(entries));
  return Status::Ok();
}

// Inside Init's first transaction, on the new store's empty tables: the
// store id, and the packs and records the bucket has (dead records too:
// they are dropped once the tree says what is referenced).
Status Store::LoadRebuildIndex() {
  const RebuildSource& src = *rebuild_;
  Stmt id(db_, "INSERT INTO meta(key, value) VALUES('store_id', ?)");
  id.BindText(1, src.store_id);
  MUSCLE_RETURN_IF_ERROR(id.Run());
  Stmt pack(db_, "INSERT INTO packs(id, size) VALUES(?, ?)");
  // Packs in increasing order, records in order: a chunk written again
  // (after its earlier copy died) is found at its newest place.
  Stmt chunk(db_, "INSERT OR REPLACE INTO chunks(hash, size, refs, pack, offset, kind) VALUES(?,?,0,?,?,0)");
  uint64_t overhead = key_ ? kRecordHeaderSize + crypto::kSealOverhead : kRecordHeaderSize;
  for (const PackIndex& p : src.packs) {
    pack.Bind(1, int64_t(p.container)).Bind(2, int64_t(p.size));
    MUSCLE_RETURN_IF_ERROR(pack.Run());
    for (const ChunkRecord& r : p.records) {
      uint64_t size = r.length - (overhead - kRecordHeaderSize);
      if (r.length <= overhead - kRecordHeaderSize)
        return Status(EIO, "pack " + std::to_string(p.container) + ": a record too short to be sealed");
      chunk.Bind(1, View(r.hash), true).Bind(2, int64_t(size)).Bind(3, int64_t(p.container))
          .Bind(4, int64_t(r.offset));
      MUSCLE_RETURN_IF_ERROR(chunk.Run());
    }
  }
  return Status::Ok();
}

// After Init: the snapshots of the catalog, the references their tree
// objects hold, the live tree as the newest snapshot, and no row for a
// record nothing references.
Status Store::RebuildTree() {
  const RebuildSource& src = *rebuild_;
  return Atomically([&]() -> Status {
    std::deque<ObjectHash> work;
    std::set<ObjectHash> seen;
    for (const CatalogEntry& e : src.catalog) {
      ObjectHash root;
      memcpy(root.data(), e.root, 32);
      auto rid = ChunkIdOf(root);
      if (!rid.ok())
        return Status(EIO, "snapshot " + e.name + ": its root object " + HexOfHash(root) +
                               " is in no pack of the bucket");
      Stmt ins(db_,
               "INSERT INTO snapshots(name, created, root, last_chunk, added, mode, uid, gid, "
               "mtime, ctime, btime) VALUES(?,?,?,0,0,?,?,?,?,?,?)");
      ins.BindText(1, e.name).Bind(2, e.created_ns).Bind(3, *rid).Bind(4, int64_t(e.mode))
          .Bind(5, int64_t(e.uid)).Bind(6, int64_t(e.gid)).Bind(7, e.mtime_ns).Bind(8, e.ctime_ns)
          .Bind(9, e.btime_ns);
      MUSCLE_RETURN_IF_ERROR(ins.Run());
      MUSCLE_RETURN_IF_ERROR(RefChildren({*rid}));
      if (seen.insert(root).second) work.push_back(root);
    }
    // Every tree object reachable from a snapshot holds one reference on
    // each child (as when it was stored: PutObject).
    while (!work.empty()) {
      ObjectHash h = work.front();
      work.pop_front();
      auto id = ChunkIdOf(h);
      if (!id.ok()) return Status(EIO, "tree object " + HexOfHash(h) + " is in no pack of the bucket");
      Stmt& k = st_->set_kind;
      k.Bind(1, *id);
      MUSCLE_RETURN_IF_ERROR(k.Run());
      auto o = LoadObject(h);
      if (!o.ok()) return Status(o.err(), "tree object " + HexOfHash(h) + ": " + o.status().message());
      std::vector<int64_t> children;
      for (const ObjectHash& c : ChildrenOf(**o)) {
        auto cid = ChunkIdOf(c);
        if (!cid.ok()) return Status(EIO, "chunk " + HexOfHash(c) + " of tree object " + HexOfHash(h) +
                                              " is in no pack of the bucket");
        children.push_back(*cid);
      }
      MUSCLE_RETURN_IF_ERROR(RefChildren(children));
      if ((*o)->kind == ObjectKind::kDir)
        for (const TreeEntry& e : (*o)->entries)
          if (e.has_object && seen.insert(e.object).second) work.push_back(e.object);
    }
    // The live tree: the newest snapshot's.
    if (!src.catalog.empty()) {
      const CatalogEntry& newest = src.catalog.back();
      ObjectHash root;
      memcpy(root.data(), newest.root, 32);
      auto o = LoadObject(root);
      if (!o.ok()) return o.status();
      for (const TreeEntry& e : (*o)->entries) {
        auto a = RestoreEntry(kRootIno, e.name, e);
        if (!a.ok()) return Status(a.err(), "restore /" + e.name + ": " + a.status().message());
      }
      auto ra = LoadAttr(kRootIno);
      if (!ra.ok()) return ra.status();
      ra->mode = newest.mode;
      ra->uid = newest.uid;
      ra->gid = newest.gid;
      ra->mtime_ns = newest.mtime_ns;
      ra->atime_ns = newest.mtime_ns;
      ra->ctime_ns = newest.ctime_ns;
      ra->btime_ns = newest.btime_ns;
      MUSCLE_RETURN_IF_ERROR(StoreAttr(*ra));
    }
    Stmt dead(db_, "DELETE FROM chunks WHERE refs<=0");
    MUSCLE_RETURN_IF_ERROR(dead.Run());
    // The next snapshot counts as added only what is new after the rebuild.
    Stmt last(db_, "UPDATE snapshots SET last_chunk=(SELECT coalesce(max(id), 0) FROM chunks)");
    return last.Run();
  });
}

Result<std::unique_ptr<Store>> Store::Rebuild(const std::string& path, std::unique_ptr<ChunkStore> chunks,
                                              std::shared_ptr<const crypto::MasterKey> key,
                                              const RebuildSource& source) {
  struct stat st;
  if (stat(path.c_str(), &st) == 0) return Status(EEXIST, "a store exists at " + path);
  std::unique_ptr<Store> s(new Store());
  s->rebuild_ = &source;
  Status st_init = s->Init(path, std::move(chunks), std::move(key));
  if (!st_init.ok()) return st_init;
  Status t = s->RebuildTree();
  if (t.ok()) t = s->Sync(true);
  if (t.ok()) t = s->PublishCatalog();
  s->rebuild_ = nullptr;
  if (!t.ok()) return t;
  return s;
}

Result<std::unique_ptr<Store>> Store::RebuildFromBucket(const std::string& path,
                                                        std::shared_ptr<s3::ObjectStore> bucket,
                                                        const std::string& cache_dir,
                                                        BucketPackStore::Options options,
                                                        std::shared_ptr<const crypto::MasterKey> key,
                                                        RebuildReport* report, ProgressSink* progress) {
  auto t0 = std::chrono::steady_clock::now();
  struct stat st;
  if (stat(path.c_str(), &st) == 0)
    return Status(EEXIST, "a store exists at " + path + ": restore-from makes a new one (a new --base)");
  auto owner = bucket->Get("owner");
  if (!owner.ok())
    return Status(owner.err(), owner.err() == ENOENT
                                   ? bucket->Describe() + " holds no musclefs store (no owner object)"
                                   : "cannot read " + bucket->Describe() + ": " + owner.status().message());
  RebuildSource src;
  // "<store id> <token>" (bucket_pack_store.h, TakeOver), or the id alone.
  src.store_id = owner->substr(0, owner->find_first_of(" \r\n"));
  auto catalog = bucket->Get("catalog");
  if (!catalog.ok())
    return Status(catalog.err(), bucket->Describe() + " has no catalog (no snapshot of that store was "
                                 "uploaded yet: take one, and wait for the upload): " +
                                     catalog.status().message());
  auto text = OpenBucketObject(key.get(), src.store_id, "catalog", *catalog);
  if (!text.ok()) return text.status();
  auto entries = DecodeCatalog(*text);
  if (!entries.ok()) return entries.status();
  src.catalog = std::move(*entries);
  auto listed = bucket->List("index/");
  if (!listed.ok()) return listed.status();
  auto packs = bucket->List("packs/");
  if (!packs.ok()) return packs.status();
  std::set<std::string> present, indexed;
  for (auto& o : *packs) present.insert(o.key.substr(6));
  for (auto& o : *listed) indexed.insert(o.key.substr(6));
  size_t uncovered = 0;
  for (const std::string& p : present) uncovered += !indexed.count(p);
  if (uncovered)
    // Nothing is changed: the open below would delete them as orphans.
    return Status(EIO, std::to_string(uncovered) + " of the " + std::to_string(present.size()) + " packs in " +
                           bucket->Describe() +
                           " have no index object (uploaded by an older musclefs, which wrote none, or "
                           "being uploaded by a server still running on that bucket): serve the old "
                           "store once with this version (it writes them), stop it, and retry; nothing "
                           "was changed");
  std::vector<BucketPackStore::ManifestEntry> manifest;
  std::set<uint64_t> containers;
  if (progress) progress->Begin("restore-from: reading pack indexes", ProgressUnit::kItems, listed->size());
  for (auto& o : *listed) {
    if (progress) progress->Add(1);
    std::string name = o.key.substr(6);
    if (!present.count(name)) continue;  // a pack deleted, its index not yet
    auto body = bucket->Get(o.key);
    if (!body.ok()) return body.status();
    auto plain = OpenBucketObject(key.get(), src.store_id, o.key, *body);
    if (!plain.ok()) return plain.status();
    auto p = DecodePackIndex(*plain);
    if (!p.ok()) return Status(EIO, o.key + ": " + p.status().message());
    if (!containers.insert(p->container).second) continue;  // a second upload of one pack: one is enough
    manifest.push_back({p->container, name, p->size});
    if (report) report->bytes += p->size;
    src.packs.push_back(std::move(*p));
  }
  if (progress) progress->End();
  size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) MakeDirs(path.substr(0, slash), 0700);
  MakeDirs(cache_dir, 0700);
  std::sort(src.packs.begin(), src.packs.end(),
            [](const PackIndex& a, const PackIndex& b) { return a.container < b.container; });
  // A failed rebuild leaves nothing behind: no store, no cache, and the
  // bucket as it was (its first open deletes nothing; the bucket is taken
  // over only once the store is whole).
  auto clean = [&](const Status& why) -> Status {
    for (const char* suffix : {"", "-wal", "-shm", "-lock", "-reserve", "-inos", "-redo"}) unlink((path + suffix).c_str());
    for (const char* f : {"/bucket-manifest", "/bucket-manifest.tmp", "/owner", "/bucket-owner"})
      unlink((cache_dir + f).c_str());
    for (const PackIndex& p : src.packs) {
      char name[32];
      snprintf(name, sizeof name, "/%016llx.pack", (unsigned long long)p.container);
      unlink((cache_dir + name).c_str());
    }
    rmdir(cache_dir.c_str());
    return why;
  };
  Status m = BucketPackStore::WriteManifest(cache_dir, src.store_id, manifest);
  if (!m.ok()) return m;
  options.sweep = false;
  options.taking_over = true;
  auto chunks = std::make_unique<BucketPackStore>(bucket, cache_dir, options);
  auto s = Rebuild(path, std::move(chunks), key, src);
  if (!s.ok()) return clean(s.status());
  Status taken = BucketPackStore::TakeOver(*bucket, cache_dir, src.store_id);
  if (!taken.ok()) {
    s->reset();
    return clean(Status(taken.err(), "take the bucket over: " + taken.message()));
  }
  if (report) {
    report->packs = src.packs.size();
    report->snapshots = src.catalog.size();
    report->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return s;
}

}  // namespace muscle::store
