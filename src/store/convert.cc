// Converting a plain store to an encrypted one in place (musclefs upgrade
// --encrypt): every chunk is read, named under the key and sealed into new
// packs, every tree object re-encoded with its children's new names (so
// snapshots survive), in one transaction; then the old packs go. A crash
// before the commit leaves the plain store (the new packs are named by no
// index row: removed at the next open); after it, the encrypted one (the
// old packs, named by none, likewise). Cut points of existing data stay
// those of the plain chunker; data written afterwards is cut with the
// keyed table.
#include <cerrno>
#include <cstring>
#include <map>

#include "common/log.h"
#include "store/pack.h"
#include "store/sealed_chunk_store.h"
#include "store/snapshot_internal.h"
#include "store/statements.h"
#include "store/store.h"

namespace muscle::store {

Status Store::ConvertToEncrypted(std::shared_ptr<const crypto::MasterKey> key) {
  OpScope op(this);
  if (read_only_) return Status(EROFS);
  if (encrypted()) return Status(EEXIST, "store " + path_ + " is encrypted already");
  auto* local = dynamic_cast<LocalPackStore*>(chunks_.get());
  if (!local || chunks_->Location() != "local")
    return Status(EINVAL, "store " + path_ + " keeps its chunks in " + chunks_->Location() +
                              ": convert it while its chunks are local pack files");
  MUSCLE_RETURN_IF_ERROR(Sync(true));
  {
    Stmt q(db_, "SELECT 1 FROM extents e JOIN chunks c ON c.id=e.chunk WHERE c.kind=1 LIMIT 1");
    if (q.Step())
      return Status(ENOTSUP, "a file holds the bytes of a tree object: this store cannot be converted");
  }
  auto id = StoreId();
  if (!id.ok()) return id.status();
  auto t0 = std::chrono::steady_clock::now();
  std::vector<uint64_t> old_packs;
  {
    Stmt q(db_, "SELECT id FROM packs ORDER BY id");
    while (q.Step()) old_packs.push_back(uint64_t(q.Int(0)));
  }
  // New records go to new packs only (the plain ones are removed whole).
  local->SealOpen();
  keyring_ = std::make_shared<const crypto::Keyring>(crypto::Keyring::First(*key));
  auto sealed_ring = keyring_->Seal(*id);
  if (!sealed_ring.ok()) return sealed_ring.status();
  auto sealed = std::make_unique<SealedChunkStore>(std::move(chunks_), keyring_);
  sealed->Adopt(*id);
  ChunkStore& plain = sealed->inner();
  chunks_ = std::move(sealed);
  auto plain_naming = naming_;
  naming_ = ChunkNaming::Keyed(*key);
  precut_.SetNaming(naming_);
  object_cache_.reset();
  key_ = key;
  uint64_t chunks = 0, objects = 0, bytes = 0;
  Status s = Atomically([&]() -> Status {
    std::map<ObjectHash, ObjectHash> renamed;       // file data
    std::map<ObjectHash, ObjectHash> renamed_objs;  // tree objects
    auto read = [&](int64_t pack, int64_t offset, int64_t size, std::string& out) {
      out.resize(size_t(size));
      return plain.Read({uint64_t(pack), uint64_t(offset)}, uint64_t(size), 0, size_t(size), out.data());
    };
    Stmt move(db_, "UPDATE chunks SET hash=?, pack=?, offset=? WHERE id=?");
    auto put = [&](int64_t row, std::string_view data, ObjectHash& name) -> Status {
      naming_->Name(data.data(), data.size(), name.data());
      unsigned char raw[32];
      memcpy(raw, name.data(), 32);
      auto at = AppendChunk(data, raw);
      if (!at.ok()) return at.status();
      move.Bind(1, HashView(name), true).Bind(2, int64_t(at->container)).Bind(3, int64_t(at->offset)).Bind(4, row);
      bytes += data.size();
      return move.Run();
    };
    // File data first.
    {
      Stmt q(db_, "SELECT id, hash, pack, offset, size FROM chunks WHERE kind=0 ORDER BY pack, offset");
      std::vector<std::tuple<int64_t, ObjectHash, int64_t, int64_t, int64_t>> rows;
      while (q.Step()) {
        ObjectHash h{};
        if (q.Blob(1).size() != 32) return Status(EIO, "chunk " + std::to_string(q.Int(0)) + " has a bad name");
        memcpy(h.data(), q.Blob(1).data(), 32);
        rows.emplace_back(q.Int(0), h, q.Int(2), q.Int(3), q.Int(4));
      }
      if (q.failed()) return q.Error("chunks");
      if (progress) {
        uint64_t total = 0;
        for (auto& row : rows) total += uint64_t(std::get<4>(row));
        progress->Begin("upgrade --encrypt: sealing chunks", ProgressUnit::kBytes, total);
      }
      std::string data;
      for (auto& [row, old, pack, offset, size] : rows) {
        MUSCLE_RETURN_IF_ERROR(read(pack, offset, size, data));
        ObjectHash check{};
        plain_naming->Name(data.data(), data.size(), check.data());
        if (check != old) return Status(EIO, "chunk " + std::to_string(row) + " does not match its name (run musclefs check)");
        ObjectHash name{};
        MUSCLE_RETURN_IF_ERROR(put(row, data, name));
        renamed[old] = name;
        chunks++;
        if (progress) progress->Add(uint64_t(size));
      }
      if (progress) progress->End();
    }
    // Tree objects, children before parents: each re-encoded with the new
    // names of what it names.
    struct Obj {
      int64_t row, pack, offset, size;
    };
    std::map<ObjectHash, Obj> objs;
    {
      Stmt q(db_, "SELECT id, hash, pack, offset, size FROM chunks WHERE kind=1");
      while (q.Step()) {
        ObjectHash h{};
        if (q.Blob(1).size() != 32) return Status(EIO, "object " + std::to_string(q.Int(0)) + " has a bad name");
        memcpy(h.data(), q.Blob(1).data(), 32);
        objs[h] = {q.Int(0), q.Int(2), q.Int(3), q.Int(4)};
      }
      if (q.failed()) return q.Error("objects");
    }
    // Each object is re-encoded exactly once (renamed_objs).
    if (progress) progress->Begin("upgrade --encrypt: re-encoding tree objects", ProgressUnit::kItems, objs.size());
    std::string data;
    for (auto& [top, unused] : objs) {
      (void)unused;
      if (renamed_objs.count(top)) continue;
      // Post-order over the objects below `top` not yet renamed.
      std::vector<std::pair<ObjectHash, bool>> stack{{top, false}};
      std::map<ObjectHash, TreeObject> decoded;
      while (!stack.empty()) {
        auto [h, expanded] = stack.back();
        if (renamed_objs.count(h)) {
          stack.pop_back();
          continue;
        }
        auto it = objs.find(h);
        if (it == objs.end()) return Status(EIO, "a tree object names a missing object " + HexOfHash(h));
        if (!expanded) {
          stack.back().second = true;
          MUSCLE_RETURN_IF_ERROR(read(it->second.pack, it->second.offset, it->second.size, data));
          ObjectHash check{};
          plain_naming->Name(data.data(), data.size(), check.data());
          if (check != h) return Status(EIO, "tree object " + HexOfHash(h) + " does not match its name (run musclefs check)");
          auto o = DecodeObject(data);
          if (!o.ok()) return Status(EIO, "tree object " + HexOfHash(h) + ": " + o.status().message());
          if (stack.size() > 100000) return Status(ELOOP, "tree objects nested too deep");
          for (const TreeEntry& e : o->entries)
            if (e.has_object && !renamed_objs.count(e.object)) stack.push_back({e.object, false});
          decoded[h] = std::move(*o);
          continue;
        }
        stack.pop_back();
        TreeObject o = std::move(decoded[h]);
        decoded.erase(h);
        for (TreeEntry& e : o.entries) {
          if (!e.has_object) continue;
          auto n = renamed_objs.find(e.object);
          if (n == renamed_objs.end()) return Status(EIO, "tree object " + HexOfHash(h) + " names a missing object");
          e.object = n->second;
        }
        for (FileExtent& x : o.extents) {
          auto n = renamed.find(x.chunk);
          if (n == renamed.end())
            return Status(ENOTSUP, "a file in a snapshot holds the bytes of a tree object (or a missing chunk): "
                                   "this store cannot be converted");
          x.chunk = n->second;
        }
        ObjectHash name{};
        MUSCLE_RETURN_IF_ERROR(put(it->second.row, EncodeObject(o), name));
        renamed_objs[h] = name;
        objects++;
        if (progress) progress->Add(1);
      }
    }
    if (progress) progress->End();
    for (uint64_t p : old_packs) {
      Stmt d(db_, "DELETE FROM packs WHERE id=?");
      d.Bind(1, int64_t(p));
      MUSCLE_RETURN_IF_ERROR(d.Run());
    }
    Stmt r(db_, "INSERT OR REPLACE INTO meta(key, value) VALUES('keyring', ?)");
    r.Bind(1, *sealed_ring);
    MUSCLE_RETURN_IF_ERROR(r.Run());
    Stmt k(db_, "INSERT INTO meta(key, value) VALUES('key_id', ?)");
    k.BindText(1, crypto::KeyIdOf(*key).Hex());
    return k.Run();
  });
  if (!s.ok()) return s;  // the store is unusable as it is: reopen it (plain, as before)
  // Committed: the store is encrypted from here on, whatever follows. The
  // old packs are named by no row: one not removed now is at the next open.
  Status synced = Sync(true);
  if (!synced.ok()) Log("store: after the conversion: %s", synced.ToString().c_str());
  for (uint64_t p : old_packs) {
    Status r = chunks_->Remove(p);
    if (!r.ok()) Log("store: old plain pack %llu not removed (%s): the next open removes it",
                     (unsigned long long)p, r.ToString().c_str());
  }
  Log("store: %s converted to encrypted at rest: %llu chunks, %llu tree objects (%llu MiB) sealed in %.1f s",
      path_.c_str(), (unsigned long long)chunks, (unsigned long long)objects,
      (unsigned long long)(bytes >> 20),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return Status::Ok();
}

}  // namespace muscle::store
