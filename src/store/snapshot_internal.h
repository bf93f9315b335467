// Private to the store implementation: the decoded-object cache and the
// node table of the read-only views (snapshot_view.cc). Same threading
// rules as Store (writer thread only).
#pragma once

#include <list>
#include <memory>
#include <string>
#include <unordered_map>

#include "store/store.h"
#include "store/tree_object.h"

namespace muscle::store {

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

// A node of a read-only view. Its number is kViewBit | a hash of where it
// is (its parent's number and its name), so the same path has the same
// number for as long as the server runs.
struct ViewNode {
  enum Kind { kList, kEntry, kControl } kind = kEntry;
  uint64_t parent = 0;  // the list node is its own parent
  std::string name;
  Attr attr;
  TreeEntry entry;      // kEntry: what the node is (metadata, object)
  std::string confine;  // kList: the subtree each snapshot shows
  uint32_t refs = 0;    // fids
  uint32_t children = 0;  // nodes naming it as parent
  auth::AccessRule rule;  // kControl: the client's, for its commands
  std::string reply;      // kControl
};

struct Store::View {
  std::unordered_map<uint64_t, ViewNode> nodes;
  uint64_t next_control = 1;
  // Nodes nothing holds are forgotten when the table passes scan_above
  // (at least kMaxNodes); after a pass it is raised to twice what is left,
  // so lookups cost O(1) amortized even when most nodes are held.
  static constexpr size_t kMaxNodes = 65536;
  size_t scan_above = kMaxNodes;
  // Control files open at once, and the bytes their answers hold.
  static constexpr size_t kMaxControlFiles = 1024;
  static constexpr size_t kMaxReplyBytes = 64u << 20;
  size_t control_files = 0, reply_bytes = 0;
};

}  // namespace muscle::store
