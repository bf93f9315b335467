// Verification of a store: SQLite's own integrity check, every chunk
// re-hashed, reference counts and link counts recomputed, and the Merkle
// hash of the tree.
#include <mbedtls/sha256.h>
#include <sys/stat.h>

#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <unordered_set>

#include "store/sha256.h"
#include "store/statements.h"
#include "store/store.h"

namespace muscle::store {

std::string HexOf(const Hash& h) {
  static const char* kDigits = "0123456789abcdef";
  std::string s;
  for (uint8_t b : h) {
    s += kDigits[b >> 4];
    s += kDigits[b & 15];
  }
  return s;
}

CheckReport Store::Check() {
  OpScope op(this);
  CheckReport r;
  Status s = Sync(false);
  if (!s.ok()) r.problems.push_back("cannot commit pending work: " + s.ToString());
  auto problem = [&](std::string p) {
    if (r.problems.size() < 1000) r.problems.push_back(std::move(p));
  };
  {
    Stmt q(db_, "PRAGMA integrity_check");
    while (q.Step()) {
      std::string line(q.Blob(0));
      if (line != "ok") problem("sqlite: " + line);
    }
  }
  // Every chunk: its bytes, read from its pack, hash to its name; its
  // record header in the pack agrees.
  {
    if (progress) {
      Stmt total(db_, "SELECT coalesce(sum(size), 0) FROM chunks");
      progress->Begin("check: re-hashing chunks", ProgressUnit::kBytes, total.Step() ? uint64_t(total.Int(0)) : 0);
    }
    Stmt q(db_, "SELECT id, hash, size, refs, pack, offset FROM chunks ORDER BY pack, offset");
    std::string data;
    while (q.Step()) {
      r.chunks++;
      std::string id = std::to_string(q.Int(0));
      uint64_t size = uint64_t(q.Int(2)), pack = uint64_t(q.Int(4)), offset = uint64_t(q.Int(5));
      r.chunk_bytes += size;
      if (progress) progress->Add(size);
      std::string_view stored = q.Blob(1);
      ChunkRecord head;
      Status rs = chunks_->ReadRecord({pack, offset}, size, &head, data);
      if (!rs.ok()) {
        problem("chunk " + id + ": " + rs.ToString());
        continue;
      }
      if (head.length != size || stored.size() != 32 || memcmp(head.hash, stored.data(), 32) != 0)
        problem("chunk " + id + ": pack record header does not match the index");
      unsigned char h[32];
      naming_->Name(data.data(), size, h);
      if (stored.size() != 32 || memcmp(stored.data(), h, 32) != 0)
        problem("chunk " + id + ": content does not match its hash");
      if (q.Int(3) <= 0) problem("chunk " + id + ": unreferenced chunk kept");
    }
    if (progress) progress->End();
  }
  // Packs: every indexed pack exists with its committed length; the bytes
  // no live chunk uses are reported (dead records, freed by punching holes
  // or by musclefs gc).
  {
    Stmt q(db_,
           "SELECT p.id, p.size, coalesce(sum(c.size), 0), count(c.id) FROM packs p "
           "LEFT JOIN chunks c ON c.pack=p.id GROUP BY p.id");
    while (q.Step()) {
      r.packs++;
      uint64_t id = uint64_t(q.Int(0)), size = uint64_t(q.Int(1));
      uint64_t live = uint64_t(q.Int(2)) + uint64_t(q.Int(3)) * chunks_->RecordOverhead() +
                      kContainerHeaderSize;
      r.pack_bytes += size;
      if (size >= live) r.unreferenced_bytes += size - live;
      std::vector<ChunkRecord> records;
      Status w = chunks_->Records(id, size, records);
      if (!w.ok()) problem("pack " + std::to_string(id) + ": " + w.ToString());
    }
    Stmt orphan(db_, "SELECT c.id FROM chunks c LEFT JOIN packs p ON p.id=c.pack WHERE p.id IS NULL");
    while (orphan.Step()) problem("chunk " + std::to_string(orphan.Int(0)) + ": its pack is not indexed");
  }
  // References: extents, tree objects naming their children, inode caches
  // and snapshot roots (store.h, "snapshots") each hold one.
  {
    std::map<int64_t, int64_t> expected;
    {
      Stmt q(db_, "SELECT chunk, count(*) FROM extents GROUP BY chunk");
      while (q.Step()) expected[q.Int(0)] += q.Int(1);
    }
    {
      Stmt q(db_, "SELECT obj, count(*) FROM inodes WHERE obj IS NOT NULL GROUP BY obj");
      while (q.Step()) expected[q.Int(0)] += q.Int(1);
    }
    {
      Stmt q(db_, "SELECT root, count(*) FROM snapshots GROUP BY root");
      while (q.Step()) expected[q.Int(0)] += q.Int(1);
    }
    Status o = CheckObjects(r, expected);
    if (!o.ok()) problem("tree objects: " + o.ToString());
    Stmt q(db_, "SELECT id, refs FROM chunks");
    std::unordered_set<int64_t> present;
    while (q.Step()) {
      present.insert(q.Int(0));
      auto it = expected.find(q.Int(0));
      int64_t want = it == expected.end() ? 0 : it->second;
      if (q.Int(1) != want)
        problem("chunk " + std::to_string(q.Int(0)) + ": refs " + std::to_string(q.Int(1)) +
                " but " + std::to_string(want) + " references (extents, objects, snapshots) use it");
    }
    for (auto& [id, n] : expected)
      if (!present.count(id))
        problem("chunk " + std::to_string(id) + ": referenced " + std::to_string(n) +
                " times but missing");
  }
  {
    Stmt q(db_,
           "SELECT e.ino, e.offset FROM extents e LEFT JOIN chunks c ON "
           "c.id=e.chunk WHERE c.id IS NULL");
    while (q.Step())
      problem("inode " + std::to_string(q.Int(0)) + " offset " +
              std::to_string(q.Int(1)) + ": extent points to a missing chunk");
  }
  // Extents: inside the file, not overlapping, same length as their chunk.
  {
    Stmt q(db_,
           "SELECT e.ino, e.offset, e.length, i.size, c.size FROM extents e "
           "LEFT JOIN inodes i ON i.ino=e.ino LEFT JOIN chunks c ON c.id=e.chunk "
           "ORDER BY e.ino, e.offset");
    int64_t prev_ino = -1, prev_end = 0;
    while (q.Step()) {
      r.extents++;
      int64_t ino = q.Int(0), off = q.Int(1), len = q.Int(2);
      std::string where = "inode " + std::to_string(ino) + " offset " + std::to_string(off);
      if (q.IsNull(3)) problem(where + ": extent of a missing inode");
      else if (off + len > q.Int(3)) problem(where + ": extent past end of file");
      if (!q.IsNull(4) && q.Int(4) != len) problem(where + ": extent length differs from chunk");
      if (ino == prev_ino && off < prev_end) problem(where + ": overlapping extents");
      prev_ino = ino;
      prev_end = off + len;
    }
  }
  // Directory structure and link counts.
  {
    Stmt q(db_,
           "SELECT d.parent, d.name, d.ino, p.mode, i.ino FROM dirents d "
           "LEFT JOIN inodes p ON p.ino=d.parent LEFT JOIN inodes i ON i.ino=d.ino");
    while (q.Step()) {
      std::string where = "entry " + std::string(q.Blob(1)) + " in " + std::to_string(q.Int(0));
      if (q.IsNull(3) || !S_ISDIR(uint32_t(q.Int(3)))) problem(where + ": parent is not a directory");
      if (q.IsNull(4)) problem(where + ": points to missing inode " + std::to_string(q.Int(2)));
    }
  }
  {
    Stmt q(db_,
           "SELECT i.ino, i.mode, i.nlink, i.parent, coalesce(n.n, 0), "
           "coalesce(s.n, 0) FROM inodes i "
           "LEFT JOIN (SELECT ino, count(*) AS n FROM dirents GROUP BY ino) n "
           "ON n.ino=i.ino "
           "LEFT JOIN (SELECT d.parent, count(*) AS n FROM dirents d JOIN inodes c "
           "ON c.ino=d.ino WHERE (c.mode & 61440)=16384 GROUP BY d.parent) s "
           "ON s.parent=i.ino");
    while (q.Step()) {
      r.inodes++;
      int64_t ino = q.Int(0), nlink = q.Int(2), names = q.Int(4), subdirs = q.Int(5);
      uint32_t mode = uint32_t(q.Int(1));
      std::string where = "inode " + std::to_string(ino);
      if (S_ISDIR(mode)) {
        if (nlink != 2 + subdirs)
          problem(where + ": directory link count " + std::to_string(nlink) +
                  ", expected " + std::to_string(2 + subdirs));
        if (ino != int64_t(kRootIno) && names != 1)
          problem(where + ": directory has " + std::to_string(names) + " names");
      } else if (nlink != names && !gate_->Referenced(uint64_t(ino))) {
        problem(where + ": link count " + std::to_string(nlink) + " but " +
                std::to_string(names) + " names");
      }
    }
  }
  // Every inode reachable from the root (breadth first, no recursion);
  // directories' parent fields agree with their entries. Cycles cut off
  // from the root show up as unreachable directories.
  {
    std::unordered_set<uint64_t> seen{kRootIno};
    std::deque<uint64_t> todo{kRootIno};
    Stmt q(db_,
           "SELECT d.ino, i.mode, i.parent FROM dirents d JOIN inodes i ON "
           "i.ino=d.ino WHERE d.parent=?");
    while (!todo.empty()) {
      uint64_t dir = todo.front();
      todo.pop_front();
      Stmt::Scope scope(q);
      q.Bind(1, int64_t(dir));
      while (q.Step()) {
        uint64_t child = uint64_t(q.Int(0));
        bool is_dir = S_ISDIR(uint32_t(q.Int(1)));
        if (is_dir && uint64_t(q.Int(2)) != dir)
          problem("inode " + std::to_string(child) + ": directory's parent field " +
                  std::to_string(q.Int(2)) + " but it is listed in " + std::to_string(dir));
        if (seen.insert(child).second) {
          if (is_dir) todo.push_back(child);
        } else if (is_dir) {
          problem("inode " + std::to_string(child) + ": directory reached twice (cycle)");
        }
      }
    }
    Stmt all(db_, "SELECT ino, nlink FROM inodes");
    uint64_t unreachable = 0;
    while (all.Step()) {
      uint64_t ino = uint64_t(all.Int(0));
      if (seen.count(ino)) continue;
      if (all.Int(1) == 0 && gate_->Referenced(ino)) continue;  // unlinked, still open
      if (unreachable++ < 20) problem("inode " + std::to_string(ino) + ": not reachable from the root");
    }
    if (unreachable > 0)
      problem(std::to_string(unreachable) + " inodes not reachable from the root in all");
  }
  return r;
}

namespace {

// A SHA-256 being fed length-prefixed strings and integers.
class Hasher {
 public:
  Hasher() {
    mbedtls_sha256_init(&ctx_);
    mbedtls_sha256_starts_ret(&ctx_, 0);
  }
  ~Hasher() { mbedtls_sha256_free(&ctx_); }
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;
  void Put(std::string_view s) {
    PutInt(s.size());
    mbedtls_sha256_update_ret(&ctx_, reinterpret_cast<const unsigned char*>(s.data()), s.size());
  }
  void PutInt(uint64_t v) {
    mbedtls_sha256_update_ret(&ctx_, reinterpret_cast<const unsigned char*>(&v), 8);
  }
  Hash Finish() {
    Hash out;
    mbedtls_sha256_finish_ret(&ctx_, out.data());
    return out;
  }

 private:
  mbedtls_sha256_context ctx_;
};

}  // namespace

// Every tree object decodes, and every hash it names is a chunk (counted
// in `refs`); snapshot roots and inode caches are objects.
Status Store::CheckObjects(CheckReport& r, std::map<int64_t, int64_t>& refs) {
  auto problem = [&](std::string p) {
    if (r.problems.size() < 1000) r.problems.push_back(std::move(p));
  };
  if (progress) {
    Stmt total(db_, "SELECT count(*) FROM chunks WHERE kind=1");
    progress->Begin("check: decoding tree objects", ProgressUnit::kItems, total.Step() ? uint64_t(total.Int(0)) : 0);
  }
  Stmt q(db_, "SELECT id, pack, offset, size FROM chunks WHERE kind=1");
  std::string bytes;
  while (q.Step()) {
    r.objects++;
    if (progress) progress->Add(1);
    int64_t id = q.Int(0);
    bytes.resize(size_t(q.Int(3)));
    Status rs = chunks_->Read({uint64_t(q.Int(1)), uint64_t(q.Int(2))}, bytes.size(), 0, bytes.size(),
                              bytes.data());
    if (!rs.ok()) continue;  // reported with the chunk above
    auto o = DecodeObject(bytes);
    if (!o.ok()) {
      problem("object " + std::to_string(id) + ": " + o.status().message());
      continue;
    }
    for (const ObjectHash& h : ChildrenOf(*o)) {
      auto child = ChunkIdOf(h);
      if (child.ok()) refs[*child]++;
      else problem("object " + std::to_string(id) + ": " + child.status().message());
    }
  }
  if (q.failed()) return q.Error("objects");
  if (progress) progress->End();
  Stmt s(db_,
         "SELECT 'snapshot ' || s.name, s.root FROM snapshots s LEFT JOIN chunks c ON c.id=s.root "
         "WHERE c.kind IS NOT 1 UNION ALL SELECT 'inode ' || i.ino, i.obj FROM inodes i "
         "LEFT JOIN chunks c ON c.id=i.obj WHERE i.obj IS NOT NULL AND c.kind IS NOT 1");
  while (s.Step()) problem(std::string(s.Blob(0)) + ": its object " + std::to_string(s.Int(1)) + " is not a tree object");
  r.snapshots = 0;
  Stmt n(db_, "SELECT count(*) FROM snapshots");
  if (n.Step()) r.snapshots = uint64_t(n.Int(0));
  return Status::Ok();
}

// Iterative (an explicit stack of directories being hashed), so a tree of
// any depth is hashed without recursion; a directory met again below
// itself is reported as a cycle.
Result<Hash> Store::TreeHash(uint64_t ino) {
  OpScope op(this);
  MUSCLE_RETURN_IF_ERROR(Sync(false));
  struct Frame {
    uint64_t ino;
    std::unique_ptr<Hasher> h;
    std::vector<std::pair<std::string, uint64_t>> entries;
    size_t next = 0;
  };
  std::vector<Frame> stack;
  std::unordered_set<uint64_t> on_stack;
  // Hashes a non-directory, or opens a frame for a directory (returns no
  // hash then).
  auto start = [&](uint64_t i, std::optional<Hash>& leaf) -> Status {
    auto a = LoadAttr(i);
    if (!a.ok()) return a.status();
    auto h = std::make_unique<Hasher>();
    h->PutInt(a->mode);
    h->PutInt(a->uid);
    h->PutInt(a->gid);
    if (S_ISDIR(a->mode)) {
      if (!on_stack.insert(i).second)
        return Status(EIO, "directory cycle through inode " + std::to_string(i));
      Frame f{i, std::move(h), {}, 0};
      Stmt q(db_, "SELECT name, ino FROM dirents WHERE parent=? ORDER BY name");
      q.Bind(1, int64_t(i));
      while (q.Step()) f.entries.emplace_back(std::string(q.Blob(0)), uint64_t(q.Int(1)));
      if (q.failed()) return q.Error("tree hash");
      stack.push_back(std::move(f));
      return Status::Ok();
    }
    if (S_ISLNK(a->mode)) {
      auto t = ReadLink(i);
      if (!t.ok()) return t.status();
      h->Put(*t);
    } else {
      h->PutInt(a->size);
      h->PutInt(a->rdev);
      Stmt q(db_,
             "SELECT e.offset, e.length, c.hash FROM extents e JOIN chunks c ON "
             "c.id=e.chunk WHERE e.ino=? ORDER BY e.offset");
      q.Bind(1, int64_t(i));
      while (q.Step()) {
        h->PutInt(uint64_t(q.Int(0)));
        h->PutInt(uint64_t(q.Int(1)));
        h->Put(q.Blob(2));
      }
      if (q.failed()) return q.Error("tree hash");
    }
    leaf = h->Finish();
    return Status::Ok();
  };
  std::optional<Hash> result;
  MUSCLE_RETURN_IF_ERROR(start(ino, result));
  while (!stack.empty()) {
    Frame& f = stack.back();
    if (f.next < f.entries.size()) {
      std::optional<Hash> leaf;
      MUSCLE_RETURN_IF_ERROR(start(f.entries[f.next].second, leaf));
      if (!leaf) continue;  // a subdirectory: its frame is on top now
      Frame& g = stack.back();
      g.h->Put(g.entries[g.next].first);
      g.h->Put(std::string_view(reinterpret_cast<const char*>(leaf->data()), 32));
      g.next++;
      continue;
    }
    Hash done = f.h->Finish();
    on_stack.erase(f.ino);
    stack.pop_back();
    if (stack.empty()) {
      result = done;
      break;
    }
    Frame& parent = stack.back();
    parent.h->Put(parent.entries[parent.next].first);
    parent.h->Put(std::string_view(reinterpret_cast<const char*>(done.data()), 32));
    parent.next++;
  }
  return *result;
}

}  // namespace muscle::store
