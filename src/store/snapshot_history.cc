// Reading the past: diff between snapshots (or a snapshot and the live
// tree), the history of a path, and restore, which brings a snapshot's
// subtree back into the live tree sharing its chunks (see store.h,
// "snapshots").
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

Result<std::vector<Store::Change>> Store::Diff(std::string_view a, std::string_view b,
                                               std::string_view path) {
  OpScope op(this);
  auto sa = FindSnapshot(a);
  if (!sa.ok()) return sa.status();
  ObjectHash root_b;
  Attr attr_b;
  if (b.empty()) {
    // The live tree, frozen now (its objects stay cached for the next
    // snapshot; the commit makes them durable like any other change).
    MUSCLE_RETURN_IF_ERROR(Sync(false));
    auto r = Atomically([&]() { return Freeze(kRootIno); });
    if (!r.ok()) return r.status();
    MUSCLE_RETURN_IF_ERROR(Sync(false));
    root_b = r->second;
    auto ra = LoadAttr(kRootIno);
    if (!ra.ok()) return ra.status();
    attr_b = *ra;
  } else {
    auto sb = FindSnapshot(b);
    if (!sb.ok()) return sb.status();
    root_b = sb->root;
    attr_b = sb->root_attr;
  }
  auto ea = ResolveIn(sa->root, sa->root_attr, path);
  auto eb = ResolveIn(root_b, attr_b, path);
  std::vector<Change> out;
  if (!ea.ok() && ea.err() != ENOENT) return ea.status();
  if (!eb.ok() && eb.err() != ENOENT) return eb.status();
  auto suffix = [](const TreeEntry& e) { return S_ISDIR(e.mode) ? "/" : ""; };
  if (!ea.ok() && !eb.ok()) return Status(ENOENT, "'" + std::string(path) + "' is in neither");
  if (!ea.ok()) return std::vector<Change>{{'+', std::string(".") + suffix(*eb)}};
  if (!eb.ok()) return std::vector<Change>{{'-', std::string(".") + suffix(*ea)}};
  // Pairs of directories still to compare, by their relative path.
  struct Pending {
    std::string prefix;
    ObjectHash x, y;
  };
  std::vector<Pending> work;
  auto compare = [&](const std::string& p, const TreeEntry& x, const TreeEntry& y) {
    bool dirs = S_ISDIR(x.mode) && S_ISDIR(y.mode);
    if (dirs) {
      // A directory's times and size follow its entries: only a change of
      // its own mode or ownership is reported.
      if (x.mode != y.mode || x.uid != y.uid || x.gid != y.gid) out.push_back({'M', p + "/"});
      if (x.object != y.object) work.push_back({p.empty() ? "" : p + "/", x.object, y.object});
      return;
    }
    if (!SameMetadata(x, y) || x.has_object != y.has_object || x.object != y.object)
      out.push_back({'M', p + suffix(y)});
  };
  if (S_ISDIR(ea->mode) && S_ISDIR(eb->mode)) {
    if (ea->object != eb->object) work.push_back({"", ea->object, eb->object});
  } else {
    compare(".", *ea, *eb);
  }
  while (!work.empty()) {
    Pending w = std::move(work.back());
    work.pop_back();
    auto ox = LoadObject(w.x);
    if (!ox.ok()) return ox.status();
    auto oy = LoadObject(w.y);
    if (!oy.ok()) return oy.status();
    const auto &ex = (*ox)->entries, &ey = (*oy)->entries;
    size_t i = 0, j = 0;
    while (i < ex.size() || j < ey.size()) {
      if (j == ey.size() || (i < ex.size() && ex[i].name < ey[j].name)) {
        out.push_back({'-', w.prefix + ex[i].name + suffix(ex[i])});
        i++;
      } else if (i == ex.size() || ey[j].name < ex[i].name) {
        out.push_back({'+', w.prefix + ey[j].name + suffix(ey[j])});
        j++;
      } else {
        compare(w.prefix + ex[i].name, ex[i], ey[j]);
        i++, j++;
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const Change& x, const Change& y) { return x.path < y.path; });
  return out;
}

Result<std::vector<Store::PathVersion>> Store::History(std::string_view path) {
  OpScope op(this);
  auto all = ListSnapshots();
  if (!all.ok()) return all.status();
  std::vector<PathVersion> out;
  std::optional<TreeEntry> last;  // in the previous (older) snapshot
  bool seen = false;
  for (const SnapshotInfo& s : *all) {
    auto e = ResolveIn(s.root, s.root_attr, path);
    if (!e.ok() && e.err() != ENOENT && e.err() != ENOTDIR) return e.status();
    std::optional<TreeEntry> now;
    if (e.ok()) now = *e;
    bool changed;
    if (!seen) changed = now.has_value();
    else if (!now || !last) changed = now.has_value() != last.has_value();
    else changed = !SameMetadata(*now, *last) || now->object != last->object;
    seen = true;
    if (changed) {
      PathVersion v;
      v.snapshot = s;
      v.present = now.has_value();
      if (now) v.entry = *now;
      out.push_back(std::move(v));
    }
    last = now;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

// Creates `name` in `dir` from a snapshot entry: directories recursively
// (an explicit stack), files by naming the same chunks (one more reference
// each), symlinks and nodes from their metadata.
Result<Attr> Store::RestoreEntry(uint64_t dir, const std::string& name, const TreeEntry& top) {
  struct Item {
    uint64_t dir;
    std::string name;
    TreeEntry e;
  };
  std::vector<Item> work{{dir, name, top}};
  std::optional<Attr> first;
  std::vector<std::pair<uint64_t, TreeEntry>> dir_times;  // set after their entries
  while (!work.empty()) {
    Item it = std::move(work.back());
    work.pop_back();
    const TreeEntry& e = it.e;
    uint32_t type = e.mode & S_IFMT;
    std::string target;
    std::shared_ptr<const TreeObject> obj;
    if (e.has_object) {
      auto o = LoadObject(e.object);
      if (!o.ok()) return o.status();
      obj = *o;
      if (type == S_IFLNK) target = obj->target;
    }
    auto a = Create(it.dir, it.name, e.mode, e.uid, e.gid, e.rdev, target);
    if (!a.ok()) return a.status();
    if (!first) first = *a;
    if (type == S_IFREG && obj) {
      for (const FileExtent& x : obj->extents) {
        auto id = ChunkIdOf(x.chunk);
        if (!id.ok()) return id.status();
        Stmt& ins = st_->insert_extent;
        ins.Bind(1, int64_t(a->ino)).Bind(2, int64_t(x.offset)).Bind(3, int64_t(x.length))
            .Bind(4, *id);
        MUSCLE_RETURN_IF_ERROR(ins.Run());
        MUSCLE_RETURN_IF_ERROR(RefChildren({*id}));
      }
      a->size = obj->size;
      a->blocks = (a->size + 511) / 512;
    }
    a->mtime_ns = e.mtime_ns;
    a->atime_ns = e.mtime_ns;
    MUSCLE_RETURN_IF_ERROR(StoreAttr(*a));
    if (type == S_IFDIR && obj) {
      dir_times.emplace_back(a->ino, e);
      for (auto c = obj->entries.rbegin(); c != obj->entries.rend(); ++c)
        work.push_back({a->ino, c->name, *c});
    }
  }
  // A directory's mtime changed as its entries were made: put it back.
  for (auto d = dir_times.rbegin(); d != dir_times.rend(); ++d) {
    auto a = LoadAttr(d->first);
    if (!a.ok()) return a.status();
    a->mtime_ns = d->second.mtime_ns;
    MUSCLE_RETURN_IF_ERROR(StoreAttr(*a));
  }
  return LoadAttr(first->ino);
}

Result<Attr> Store::Restore(std::string_view snap, std::string_view path, std::string_view dest) {
  OpScope op(this);
  if (read_only_) return Status(EROFS);
  auto s = FindSnapshot(snap);
  if (!s.ok()) return s.status();
  auto e = ResolveIn(s->root, s->root_attr, path);
  if (!e.ok()) return Status(e.err(), "'" + std::string(path) + "' is not in snapshot " + s->name);
  auto names = Names(dest.empty() ? path : dest);
  if (!names.ok()) return names.status();
  if (names->empty()) return Status(EINVAL, "cannot restore over the root; give --to DEST");
  MUSCLE_RETURN_IF_ERROR(CheckSpace(0));
  // Not in the redo log (its inner operations would be, without the
  // restored data): committed before it is answered.
  redo_quiet_++;
  auto r = Atomically([&]() -> Result<Attr> {
    uint64_t dir = kRootIno;
    for (size_t i = 0; i + 1 < names->size(); i++) {
      auto d = Lookup(dir, (*names)[i]);
      if (!d.ok()) return Status(d.err(), "destination directory: " + d.status().ToString());
      if (!S_ISDIR(d->mode)) return Status(ENOTDIR);
      dir = d->ino;
    }
    const std::string& leaf = names->back();
    auto existing = Lookup(dir, leaf);
    if (existing.ok()) {
      if (S_ISDIR(existing->mode))
        return Status(EEXIST, "'" + leaf + "' exists and is a directory; restore --to another path");
      MUSCLE_RETURN_IF_ERROR(Unlink(dir, leaf, false));
    } else if (existing.err() != ENOENT) {
      return existing.status();
    }
    return RestoreEntry(dir, leaf, *e);
  });
  redo_quiet_--;
  if (r.ok()) MUSCLE_RETURN_IF_ERROR(Sync(false));
  return r;
}

}  // namespace muscle::store
