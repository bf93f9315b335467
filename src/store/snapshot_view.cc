// The read-only views (snapshot_view.h): their nodes, made from tree
// objects as they are looked up, and the control files.
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "store/sha256.h"
#include "store/snapshot_internal.h"
#include "store/snapshot_view.h"

namespace muscle::store {

namespace {

uint64_t NodeId(uint64_t parent, std::string_view tag, std::string_view name) {
  std::string key(reinterpret_cast<const char*>(&parent), sizeof parent);
  key += tag;
  key.push_back('\0');
  key += name;
  uint8_t h[32];
  Sha256(key.data(), key.size(), h);
  uint64_t v;
  memcpy(&v, h, sizeof v);
  return SnapshotView::kInoBit | (v & (SnapshotView::kInoBit - 1));
}

Attr AttrOf(uint64_t id, const TreeEntry& e) {
  Attr a;
  a.ino = id;
  a.mode = e.mode;
  a.uid = e.uid;
  a.gid = e.gid;
  a.size = e.size;
  a.rdev = e.rdev;
  a.mtime_ns = a.atime_ns = e.mtime_ns;
  a.ctime_ns = e.ctime_ns;
  a.btime_ns = e.btime_ns;
  a.nlink = S_ISDIR(e.mode) ? 2 : 1;
  a.blocks = (e.size + 511) / 512;
  uint64_t v = 0;
  memcpy(&v, e.object.data(), sizeof v);
  a.version = v;
  return a;
}

}  // namespace

Result<Attr> SnapshotView::Attach(std::string_view aname, const auth::AccessRule* rule) {
  auth::AccessRule none;
  if (!rule) rule = &none;
  if (aname == "@ctl") return NewControlFile(*rule);
  constexpr std::string_view kList = "@snapshots";
  if (aname != kList && aname.substr(0, kList.size() + 1) != "@snapshots/") return Status(ENOENT);
  auto a = SnapshotsRoot(rule->Relative());
  size_t i = kList.size();
  while (a.ok() && i < aname.size()) {
    size_t j = aname.find('/', i + 1);
    if (j == std::string_view::npos) j = aname.size();
    std::string_view name = aname.substr(i + 1, j - i - 1);
    i = j;
    if (name.empty() || name == ".") continue;
    if (name == "..") return Status(EACCES);
    a = Lookup(a->ino, name);
  }
  if (a.ok() && !S_ISDIR(a->mode)) return Status(ENOTDIR);
  return a;
}

Result<Attr> SnapshotView::SnapshotsRoot(std::string_view confine) {
  uint64_t id = NodeId(0, "@snapshots", confine);
  Node& n = nodes_[id];
  n.kind = Node::kList;
  n.parent = id;
  n.confine = std::string(confine);
  auto root = store_.GetAttr(kRootIno);
  if (!root.ok()) return root.status();
  auto list = store_.ListSnapshots();
  if (!list.ok()) return list.status();
  Attr& a = n.attr;
  a = Attr{};
  a.ino = id;
  a.mode = S_IFDIR | 0555;
  a.uid = root->uid;
  a.gid = root->gid;
  a.nlink = 2;
  // Changes whenever a snapshot is added or removed (ids only grow).
  a.version = (list->empty() ? 0 : uint64_t(list->back().id)) ^ (uint64_t(list->size()) << 32);
  int64_t t = list->empty() ? root->btime_ns : list->back().created_ns;
  a.atime_ns = a.mtime_ns = a.ctime_ns = a.btime_ns = t;
  return a;
}

Result<Attr> SnapshotView::NewControlFile(const auth::AccessRule& rule) {
  if (control_files_ >= kMaxControlFiles)
    return Status(EMFILE, "too many control files open (" + std::to_string(kMaxControlFiles) + ")");
  if (!rule.identity.empty() && held_[rule.identity].files >= kMaxControlFilesIdentity)
    return Status(EMFILE, "too many control files open by this identity (" +
                              std::to_string(kMaxControlFilesIdentity) + ")");
  control_files_++;
  held_[rule.identity].files++;
  uint64_t id = NodeId(0, "@ctl", std::to_string(next_control_++));
  Node& n = nodes_[id];
  n.kind = Node::kControl;
  n.parent = id;
  n.rule = rule;
  n.attr = Attr{};
  n.attr.ino = id;
  n.attr.mode = S_IFREG | 0600;
  n.attr.uid = getuid();
  n.attr.gid = getgid();
  n.attr.nlink = 1;
  n.attr.atime_ns = n.attr.mtime_ns = n.attr.ctime_ns = n.attr.btime_ns = NowNs();
  return n.attr;
}

bool SnapshotView::IsControlFile(uint64_t ino) const {
  auto it = nodes_.find(ino);
  return it != nodes_.end() && it->second.kind == Node::kControl;
}

Result<Attr> SnapshotView::GetAttr(uint64_t ino) {
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return Status(ESTALE);
  if (it->second.kind == Node::kList) return SnapshotsRoot(it->second.confine);
  if (it->second.kind == Node::kControl) it->second.attr.size = it->second.reply.size();
  return it->second.attr;
}

Result<Attr> SnapshotView::Lookup(uint64_t dir, std::string_view name) {
  auto it = nodes_.find(dir);
  if (it == nodes_.end()) return Status(ESTALE);
  if (name == ".") return GetAttr(dir);
  if (name == "..") return GetAttr(it->second.parent);
  Node parent = it->second;  // (the table may rehash below)
  TreeEntry entry;
  if (parent.kind == Node::kList) {
    auto s = store_.FindSnapshot(name, parent.confine);
    if (!s.ok()) return Status(s.err() == EINVAL ? ENOENT : s.err());
    auto e = store_.ResolveIn(s->root, s->root_attr, parent.confine);
    if (!e.ok() || !S_ISDIR(e->mode)) return Status(ENOENT);  // not in that snapshot
    entry = *e;
    entry.name = std::string(name);
  } else if (parent.kind == Node::kEntry && S_ISDIR(parent.entry.mode)) {
    auto o = store_.LoadObject(parent.entry.object);
    if (!o.ok()) return o.status();
    const auto& es = (*o)->entries;
    auto e = std::lower_bound(es.begin(), es.end(), name,
                              [](const TreeEntry& x, std::string_view k) { return x.name < k; });
    if (e == es.end() || e->name != name) return Status(ENOENT);
    entry = *e;
  } else {
    return Status(ENOTDIR);
  }
  return MakeNode(dir, name, entry);
}

Attr SnapshotView::MakeNode(uint64_t dir, std::string_view name, const TreeEntry& entry) {
  uint64_t id = NodeId(dir, "", name);
  auto [slot, fresh] = nodes_.try_emplace(id);
  Node& n = slot->second;
  if (fresh) {
    n.kind = Node::kEntry;
    n.parent = dir;
    n.name = std::string(name);
    nodes_[dir].children++;
  }
  n.entry = entry;
  n.attr = AttrOf(id, entry);
  Attr out = n.attr;
  if (nodes_.size() > scan_above_) {
    // Forget nodes nothing holds, leaves first (a few passes).
    for (int pass = 0; pass < 8 && nodes_.size() > kMaxNodes / 2; pass++) {
      size_t before = nodes_.size();
      for (auto i = nodes_.begin(); i != nodes_.end();) {
        Node& v = i->second;
        if (v.refs == 0 && v.children == 0 && i->first != id && i->first != dir &&
            v.kind == Node::kEntry) {
          auto p = nodes_.find(v.parent);
          if (p != nodes_.end() && p->first != i->first) p->second.children--;
          i = nodes_.erase(i);
        } else {
          ++i;
        }
      }
      if (nodes_.size() == before) break;
    }
    scan_above_ = std::max(kMaxNodes, nodes_.size() * 2);
  }
  return out;
}

Status SnapshotView::ReadDir(uint64_t dir, uint64_t cookie,
                             const std::function<bool(const DirEntry&)>& emit) {
  auto d = GetAttr(dir);
  if (!d.ok()) return d.status();
  if (!S_ISDIR(d->mode)) return Status(ENOTDIR);
  Node node = nodes_[dir];
  // Cookies: 1 after ".", 2 after "..", 3 + i after entry i.
  if (cookie == 0 && !emit({1, ".", *d})) return Status::Ok();
  if (cookie <= 1) {
    auto p = GetAttr(node.parent);
    if (!p.ok()) return p.status();
    if (!emit({2, "..", *p})) return Status::Ok();
  }
  size_t from = cookie >= 3 ? size_t(cookie - 2) : 0;
  DirEntry e;
  if (node.kind == Node::kList) {
    // Here the cookie after a snapshot is 3 + its id, so a listing that a
    // prune or a new snapshot interrupts neither skips nor repeats one.
    auto list = store_.ListSnapshots();
    if (!list.ok()) return list.status();
    for (size_t i = 0; i < list->size(); i++) {
      const Store::SnapshotInfo& s = (*list)[i];
      if (cookie >= 3 && uint64_t(s.id) + 3 <= cookie) continue;
      TreeEntry te;
      if (node.confine.empty()) {
        te = TreeEntry{};
        te.mode = s.root_attr.mode;
        te.uid = s.root_attr.uid;
        te.gid = s.root_attr.gid;
        te.mtime_ns = s.root_attr.mtime_ns;
        te.object = s.root;
      } else {
        auto r = store_.ResolveIn(s.root, s.root_attr, node.confine);
        if (!r.ok() || !S_ISDIR(r->mode)) continue;  // not in that snapshot
        te = *r;
      }
      e.cookie = 3 + uint64_t(s.id);
      e.name = s.name;
      te.name = s.name;
      e.attr = MakeNode(dir, s.name, te);
      if (!emit(e)) return Status::Ok();
    }
    return Status::Ok();
  }
  auto o = store_.LoadObject(node.entry.object);
  if (!o.ok()) return o.status();
  // Each entry gets its node, so that clients that stat entries by their
  // number as they list them (9P2000, 9P2000.u) find it.
  auto keep = *o;  // (the object stays alive while nodes are made)
  for (size_t i = from; i < keep->entries.size(); i++) {
    e.cookie = 3 + i;
    e.name = keep->entries[i].name;
    e.attr = MakeNode(dir, e.name, keep->entries[i]);
    if (!emit(e)) return Status::Ok();
  }
  return Status::Ok();
}

Status SnapshotView::Read(uint64_t ino, uint64_t offset, uint32_t count, std::string& out) {
  out.clear();
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return Status(ESTALE);
  Node& n = it->second;
  if (n.kind == Node::kControl) {
    if (offset < n.reply.size()) out = n.reply.substr(size_t(offset), count);
    return Status::Ok();
  }
  if (n.kind != Node::kEntry || S_ISDIR(n.entry.mode)) return Status(EISDIR);
  if (!S_ISREG(n.entry.mode)) return Status(EINVAL);
  auto o = store_.LoadObject(n.entry.object);
  if (!o.ok()) return o.status();
  const TreeObject& f = **o;
  if (offset >= f.size) return Status::Ok();
  size_t len = size_t(std::min<uint64_t>(count, f.size - offset));
  out.assign(len, '\0');  // holes read as zeros
  auto x = std::upper_bound(f.extents.begin(), f.extents.end(), offset,
                            [](uint64_t off, const FileExtent& e) { return off < e.offset; });
  if (x != f.extents.begin()) --x;
  uint64_t end = offset + len;
  for (; x != f.extents.end() && x->offset < end; ++x) {
    uint64_t lo = std::max(offset, x->offset), hi = std::min(end, x->offset + x->length);
    if (lo >= hi) continue;
    MUSCLE_RETURN_IF_ERROR(
        store_.ReadChunkOf(x->chunk, lo - x->offset, size_t(hi - lo), out.data() + (lo - offset)));
  }
  return Status::Ok();
}

Result<uint32_t> SnapshotView::Write(uint64_t ino, uint64_t offset, std::string_view data) {
  auto it = nodes_.find(ino);
  if (it == nodes_.end() || it->second.kind != Node::kControl) return Status(EROFS);
  (void)offset;  // each write is one command
  if (!control_) return Status(EOPNOTSUPP);
  auth::AccessRule rule = it->second.rule;  // the handler may change the table
  std::string reply = control_(store_, rule, data);
  auto again = nodes_.find(ino);  // the handler may have changed the table
  if (again == nodes_.end()) return uint32_t(data.size());
  std::string& held = again->second.reply;
  Held& mine = held_[rule.identity];
  reply_bytes_ -= held.size();
  mine.bytes -= held.size();
  if (reply_bytes_ + reply.size() > kMaxReplyBytes ||
      (!rule.identity.empty() && mine.bytes + reply.size() > kMaxReplyBytesIdentity))
    reply = "error ENOMEM: the answer (" + std::to_string(reply.size()) +
            " bytes) does not fit beside the answers other control files hold; narrow it (a PATH)\n";
  held = std::move(reply);
  reply_bytes_ += held.size();
  mine.bytes += held.size();
  return uint32_t(data.size());
}

Result<std::string> SnapshotView::ReadLink(uint64_t ino) {
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return Status(ESTALE);
  if (it->second.kind != Node::kEntry || !S_ISLNK(it->second.entry.mode)) return Status(EINVAL);
  auto o = store_.LoadObject(it->second.entry.object);
  if (!o.ok()) return o.status();
  return (*o)->target;
}

Result<std::pair<uint64_t, std::string>> SnapshotView::FindName(uint64_t ino) {
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return Status(ESTALE);
  if (it->second.parent == ino) return Status(ENOENT);
  return std::make_pair(it->second.parent, it->second.name);
}

void SnapshotView::Ref(uint64_t ino) {
  auto it = nodes_.find(ino);
  if (it != nodes_.end()) it->second.refs++;
}

Status SnapshotView::Unref(uint64_t ino) {
  auto it = nodes_.find(ino);
  if (it == nodes_.end() || it->second.refs == 0) return Status::Ok();
  if (--it->second.refs == 0 && it->second.kind == Node::kControl) {
    control_files_--;
    reply_bytes_ -= it->second.reply.size();
    auto h = held_.find(it->second.rule.identity);
    if (h != held_.end()) {
      h->second.files--;
      h->second.bytes -= it->second.reply.size();
      if (h->second.files == 0) held_.erase(h);
    }
    nodes_.erase(it);
  }
  return Status::Ok();
}

}  // namespace muscle::store
