// Private to the store implementation: the decoded-object cache and small
// helpers the snapshot files share (snapshot_objects.cc, snapshots.cc,
// snapshot_history.cc). Same threading rules as Store (writer thread only).
#pragma once

#include <algorithm>
#include <cstring>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "store/store.h"
#include "store/tree_object.h"

namespace muscle::store {

inline std::string_view HashView(const ObjectHash& h) {
  return std::string_view(reinterpret_cast<const char*>(h.data()), 32);
}

inline ObjectHash HashFrom(std::string_view b) {
  ObjectHash h{};
  if (b.size() == 32) memcpy(h.data(), b.data(), 32);
  return h;
}

inline bool IsHex(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

// Splits a relative path into its names ("." and empty names skipped).
inline Result<std::vector<std::string>> Names(std::string_view path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    std::string_view n = path.substr(i, j - i);
    i = j + 1;
    if (n.empty() || n == ".") continue;
    if (n == "..") return Status(EINVAL, "'..' in a path");
    out.emplace_back(n);
  }
  return out;
}

inline TreeEntry EntryOfAttr(const Attr& a) {
  TreeEntry e;
  e.mode = a.mode;
  e.uid = a.uid;
  e.gid = a.gid;
  e.size = a.size;
  e.rdev = a.rdev;
  e.mtime_ns = a.mtime_ns;
  e.ctime_ns = a.ctime_ns;
  e.btime_ns = a.btime_ns;
  return e;
}

inline bool SameMetadata(const TreeEntry& a, const TreeEntry& b) {
  return a.mode == b.mode && a.uid == b.uid && a.gid == b.gid && a.size == b.size &&
         a.rdev == b.rdev && a.mtime_ns == b.mtime_ns;
}


struct HashKey {
  size_t operator()(const ObjectHash& h) const {
    size_t v;
    memcpy(&v, h.data(), sizeof v);
    return v;
  }
};

// Decoded objects by hash, least recently used dropped past a byte budget.
// Objects never change, so an entry is never stale (it may outlive the
// object's chunk, which only means the data it names may be gone).
struct Store::ObjectCache {
  size_t budget = 64u << 20;
  size_t bytes = 0;
  using Entry = std::pair<ObjectHash, std::shared_ptr<const TreeObject>>;
  std::list<Entry> lru;  // most recent first
  std::unordered_map<ObjectHash, std::list<Entry>::iterator, HashKey> index;
  std::unordered_map<ObjectHash, size_t, HashKey> sizes;

  std::shared_ptr<const TreeObject> Find(const ObjectHash& h) {
    auto it = index.find(h);
    if (it == index.end()) return nullptr;
    lru.splice(lru.begin(), lru, it->second);
    return it->second->second;
  }
  void Add(const ObjectHash& h, std::shared_ptr<const TreeObject> o, size_t size) {
    if (index.count(h)) return;
    lru.emplace_front(h, std::move(o));
    index[h] = lru.begin();
    sizes[h] = size;
    bytes += size;
    while (bytes > budget && lru.size() > 1) {
      auto& back = lru.back();
      bytes -= sizes[back.first];
      sizes.erase(back.first);
      index.erase(back.first);
      lru.pop_back();
    }
  }
};

}  // namespace muscle::store
