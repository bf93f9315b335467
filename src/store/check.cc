// Verification of a store: SQLite's own integrity check, every chunk
// re-hashed, reference counts and link counts recomputed, and the Merkle
// hash of the tree.
#include <mbedtls/sha256.h>
#include <sys/stat.h>

#include <cstring>
#include <map>

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
  // Every chunk: its bytes hash to its name, its size matches.
  {
    Stmt q(db_, "SELECT id, hash, size, refs, data FROM chunks");
    while (q.Step()) {
      r.chunks++;
      std::string_view data = q.Blob(4);
      r.chunk_bytes += data.size();
      unsigned char h[32];
      Sha256(data.data(), data.size(), h);
      std::string_view stored = q.Blob(1);
      std::string id = std::to_string(q.Int(0));
      if (stored.size() != 32 || memcmp(stored.data(), h, 32) != 0)
        problem("chunk " + id + ": content does not match its hash");
      if (uint64_t(q.Int(2)) != data.size())
        problem("chunk " + id + ": size field differs from data length");
      if (q.Int(3) <= 0) problem("chunk " + id + ": unreferenced chunk kept");
    }
  }
  {
    Stmt q(db_,
           "SELECT c.id, c.refs, coalesce(x.n, 0) FROM chunks c LEFT JOIN "
           "(SELECT chunk, count(*) AS n FROM extents GROUP BY chunk) x "
           "ON x.chunk=c.id");
    while (q.Step())
      if (q.Int(1) != q.Int(2))
        problem("chunk " + std::to_string(q.Int(0)) + ": refs " +
                std::to_string(q.Int(1)) + " but " + std::to_string(q.Int(2)) +
                " extents use it");
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
      } else if (nlink != names && !refs_.count(uint64_t(ino))) {
        problem(where + ": link count " + std::to_string(nlink) + " but " +
                std::to_string(names) + " names");
      }
    }
  }
  return r;
}

Result<Hash> Store::TreeHash(uint64_t ino) {
  MUSCLE_RETURN_IF_ERROR(Sync(false));
  auto a = LoadAttr(ino);
  if (!a.ok()) return a.status();
  mbedtls_sha256_context ctx;
  mbedtls_sha256_init(&ctx);
  mbedtls_sha256_starts_ret(&ctx, 0);
  auto put = [&](std::string_view s) {
    uint64_t n = s.size();
    mbedtls_sha256_update_ret(&ctx, reinterpret_cast<const unsigned char*>(&n), 8);
    mbedtls_sha256_update_ret(&ctx, reinterpret_cast<const unsigned char*>(s.data()), s.size());
  };
  auto put_int = [&](uint64_t v) {
    mbedtls_sha256_update_ret(&ctx, reinterpret_cast<const unsigned char*>(&v), 8);
  };
  put_int(a->mode);
  put_int(a->uid);
  put_int(a->gid);
  Status s;
  if (S_ISDIR(a->mode)) {
    // Entries sorted by name bytes, each with its child's hash.
    std::vector<std::pair<std::string, uint64_t>> entries;
    {
      Stmt q(db_, "SELECT name, ino FROM dirents WHERE parent=? ORDER BY name");
      q.Bind(1, int64_t(ino));
      while (q.Step()) entries.emplace_back(std::string(q.Blob(0)), uint64_t(q.Int(1)));
    }
    for (auto& [name, child] : entries) {
      auto h = TreeHash(child);
      if (!h.ok()) { s = h.status(); break; }
      put(name);
      put(std::string_view(reinterpret_cast<const char*>(h->data()), 32));
    }
  } else if (S_ISLNK(a->mode)) {
    auto t = ReadLink(ino);
    if (t.ok()) put(*t); else s = t.status();
  } else {
    put_int(a->size);
    put_int(a->rdev);
    Stmt q(db_,
           "SELECT e.offset, e.length, c.hash FROM extents e JOIN chunks c ON "
           "c.id=e.chunk WHERE e.ino=? ORDER BY e.offset");
    q.Bind(1, int64_t(ino));
    while (q.Step()) {
      put_int(uint64_t(q.Int(0)));
      put_int(uint64_t(q.Int(1)));
      put(q.Blob(2));
    }
  }
  Hash out;
  mbedtls_sha256_finish_ret(&ctx, out.data());
  mbedtls_sha256_free(&ctx);
  if (!s.ok()) return s;
  return out;
}

}  // namespace muscle::store
