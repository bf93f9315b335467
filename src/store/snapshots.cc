// The snapshot catalog: taking a snapshot (its root object and record),
// listing and finding snapshots, and pruning them by restic's forget
// policy (see store.h, "snapshots"; the objects are snapshot_objects.cc's).
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <map>
#include <optional>
#include <set>

#include "common/log.h"
#include "store/sha256.h"
#include "store/snapshot_internal.h"
#include "store/statements.h"
#include "store/store.h"

namespace muscle::store {

std::string UtcTime(int64_t ns, const char* format) {
  time_t t = time_t(ns / 1000000000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[64];
  strftime(buf, sizeof buf, format, &tm);
  return buf;
}

struct Store::SnapshotRow {
  static constexpr const char* kColumns =
      "s.id, s.name, s.created, c.hash, s.added, s.mode, s.uid, s.gid, s.mtime, s.ctime, "
      "s.btime, s.root FROM snapshots s JOIN chunks c ON c.id=s.root";
  static SnapshotInfo From(const Stmt& q) {
    SnapshotInfo i;
    i.id = q.Int(0);
    i.name = std::string(q.Blob(1));
    i.created_ns = q.Int(2);
    i.root = HashFrom(q.Blob(3));
    i.added_bytes = uint64_t(q.Int(4));
    i.root_attr.mode = uint32_t(q.Int(5));
    i.root_attr.uid = uint32_t(q.Int(6));
    i.root_attr.gid = uint32_t(q.Int(7));
    i.root_attr.mtime_ns = q.Int(8);
    i.root_attr.ctime_ns = q.Int(9);
    i.root_attr.btime_ns = q.Int(10);
    i.root_attr.atime_ns = q.Int(8);
    i.root_attr.nlink = 2;
    return i;
  }
};


Result<Store::SnapshotInfo> Store::TakeSnapshot(std::string_view name) {
  OpScope op(this);
  if (read_only_) return Status(EROFS);
  if (!name.empty()) {
    MUSCLE_RETURN_IF_ERROR(CheckName(name));
    if (name[0] == '@') return Status(EINVAL, "a snapshot name may not start with '@'");
    // Snapshots are also named by hash prefixes (FindSnapshot looks names
    // up first): a name that could be one would shadow another's hash.
    if (name.size() >= 4 && name.size() <= 64 && IsHex(name))
      return Status(EINVAL, "a snapshot name of 4 to 64 hex digits could be taken for a hash prefix");
  }
  MUSCLE_RETURN_IF_ERROR(CheckSpace(0));
  // Buffered writes become chunks first (and are committed with the rest).
  MUSCLE_RETURN_IF_ERROR(Sync(false));
  auto t0 = std::chrono::steady_clock::now();
  auto info = Atomically([&]() -> Result<SnapshotInfo> {
    auto root = Freeze(kRootIno);
    if (!root.ok()) return root.status();
    auto ra = LoadAttr(kRootIno);
    if (!ra.ok()) return ra.status();
    SnapshotInfo i;
    i.created_ns = NowNs();
    i.name = name.empty() ? UtcTime(i.created_ns) : std::string(name);
    for (int n = 2; name.empty(); n++) {
      Stmt q(db_, "SELECT 1 FROM snapshots WHERE name=?");
      q.BindText(1, i.name);
      if (!q.Step()) break;
      i.name = UtcTime(i.created_ns) + "-" + std::to_string(n);
    }
    {
      Stmt q(db_, "SELECT 1 FROM snapshots WHERE name=?");
      q.BindText(1, i.name);
      if (q.Step()) return Status(EEXIST, "a snapshot named '" + i.name + "' exists");
    }
    int64_t prev_last = 0, last = 0;
    {
      Stmt q(db_, "SELECT coalesce(max(last_chunk), 0) FROM snapshots");
      if (q.Step()) prev_last = q.Int(0);
      Stmt m(db_, "SELECT coalesce(max(id), 0) FROM chunks");
      if (m.Step()) last = m.Int(0);
      Stmt a(db_, "SELECT coalesce(sum(size), 0) FROM chunks WHERE id>?");
      a.Bind(1, prev_last);
      if (a.Step()) i.added_bytes = uint64_t(a.Int(0));
    }
    i.root = root->second;
    i.root_attr = *ra;
    Stmt ins(db_,
             "INSERT INTO snapshots(name, created, root, last_chunk, added, mode, uid, gid, "
             "mtime, ctime, btime) VALUES(?,?,?,?,?,?,?,?,?,?,?)");
    ins.BindText(1, i.name).Bind(2, i.created_ns).Bind(3, root->first).Bind(4, last)
        .Bind(5, int64_t(i.added_bytes)).Bind(6, int64_t(ra->mode)).Bind(7, int64_t(ra->uid))
        .Bind(8, int64_t(ra->gid)).Bind(9, ra->mtime_ns).Bind(10, ra->ctime_ns)
        .Bind(11, ra->btime_ns);
    MUSCLE_RETURN_IF_ERROR(ins.Run());
    i.id = int64_t(sqlite3_last_insert_rowid(db_.raw()));
    MUSCLE_RETURN_IF_ERROR(RefChildren({root->first}));
    return i;
  });
  if (!info.ok()) return info.status();
  MUSCLE_RETURN_IF_ERROR(Sync(true));
  MUSCLE_RETURN_IF_ERROR(PublishCatalog());
  Log("store: snapshot %s (root %s, %llu KiB added) in %.1f ms", info->name.c_str(),
      HexOfHash(info->root).substr(0, 16).c_str(), (unsigned long long)(info->added_bytes >> 10),
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  return info;
}

Result<std::vector<Store::SnapshotInfo>> Store::ListSnapshots() {
  OpScope op(this);
  std::vector<SnapshotInfo> out;
  Stmt q(db_, (std::string("SELECT ") + SnapshotRow::kColumns + " ORDER BY s.id").c_str());
  while (q.Step()) out.push_back(SnapshotRow::From(q));
  if (q.failed()) return q.Error("snapshots");
  return out;
}

Result<Store::SnapshotInfo> Store::FindSnapshot(std::string_view ref, std::string_view confine) {
  OpScope op(this);
  {
    Stmt q(db_, (std::string("SELECT ") + SnapshotRow::kColumns + " WHERE s.name=?").c_str());
    q.BindText(1, ref);
    if (q.Step()) return SnapshotRow::From(q);
    if (q.failed()) return q.Error("snapshot");
  }
  if (ref.size() >= 4 && ref.size() <= 64 && IsHex(ref)) {
    auto all = ListSnapshots();
    if (!all.ok()) return all.status();
    // Pass 0 (confined only): the hash of `confine` in each snapshot;
    // pass 1: the root's.
    // (A confined identity does not see, and may not probe, root hashes.)
    for (int pass = confine.empty() ? 1 : 0; pass < (confine.empty() ? 2 : 1); pass++) {
      const SnapshotInfo* found = nullptr;
      ObjectHash found_hash{};
      for (auto it = all->rbegin(); it != all->rend(); ++it) {
        ObjectHash h = it->root;
        if (pass == 0) {
          auto e = ResolveIn(it->root, it->root_attr, confine);
          if (!e.ok() || !S_ISDIR(e->mode)) continue;  // not in that snapshot
          h = e->object;
        }
        if (HexOfHash(h).compare(0, ref.size(), ref) != 0) continue;
        if (found && found_hash != h)
          return Status(EINVAL, "snapshot hash prefix '" + std::string(ref) + "' is ambiguous");
        if (!found) found = &*it, found_hash = h;  // the newest of those with that tree
      }
      if (found) return *found;
    }
  }
  return Status(ENOENT, "no snapshot '" + std::string(ref) + "'");
}


Result<std::vector<Store::SnapshotInfo>> Store::Prune(const PrunePolicy& p) {
  OpScope op(this);
  if (p.keep_last <= 0 && p.keep_hourly <= 0 && p.keep_daily <= 0 && p.keep_weekly <= 0)
    return Status(EINVAL, "prune needs at least one keep rule (keep-last, keep-hourly, keep-daily, keep-weekly)");
  auto all = ListSnapshots();
  if (!all.ok()) return all.status();
  std::vector<SnapshotInfo> newest(all->rbegin(), all->rend());
  std::set<int64_t> keep;
  for (int i = 0; i < p.keep_last && i < int(newest.size()); i++) keep.insert(newest[i].id);
  // One per bucket (the newest in it), for the most recent N buckets that
  // have a snapshot (restic's forget).
  auto bucketed = [&](int n, auto bucket_of) {
    if (n <= 0) return;
    std::string last;
    int used = 0;
    for (const SnapshotInfo& s : newest) {
      std::string b = bucket_of(s.created_ns);
      if (b == last) continue;
      last = b;
      keep.insert(s.id);
      if (++used == n) break;
    }
  };
  bucketed(p.keep_hourly, [&](int64_t ns) { return UtcTime(ns, "%Y-%m-%d %H"); });
  bucketed(p.keep_daily, [&](int64_t ns) { return UtcTime(ns, "%Y-%m-%d"); });
  bucketed(p.keep_weekly, [&](int64_t ns) { return UtcTime(ns, "%G-%V"); });
  std::vector<SnapshotInfo> removed;
  for (const SnapshotInfo& s : *all)
    if (!keep.count(s.id)) removed.push_back(s);
  if (p.dry_run || removed.empty()) return removed;
  Status st = Atomically([&]() -> Status {
    for (const SnapshotInfo& s : removed) {
      int64_t root = 0;
      {
        Stmt q(db_, "SELECT root FROM snapshots WHERE id=?");
        q.Bind(1, s.id);
        if (!q.Step()) return q.failed() ? q.Error("snapshot") : Status(ENOENT);
        root = q.Int(0);
      }
      Stmt d(db_, "DELETE FROM snapshots WHERE id=?");
      d.Bind(1, s.id);
      MUSCLE_RETURN_IF_ERROR(d.Run());
      MUSCLE_RETURN_IF_ERROR(DropChunk(root));
    }
    return Status::Ok();
  });
  if (!st.ok()) return st;
  MUSCLE_RETURN_IF_ERROR(Sync(true));
  MUSCLE_RETURN_IF_ERROR(PublishCatalog());
  Log("store: pruned %zu snapshots, %zu kept", removed.size(), all->size() - removed.size());
  return removed;
}

}  // namespace muscle::store
