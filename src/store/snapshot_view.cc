// The read-only views of the store: @snapshots (every snapshot as a
// directory, its tree below, served from tree objects) and @ctl control
// files. Nodes are made as they are looked up and live while a fid holds
// them or a node below them lives; beyond View::kMaxNodes the others are
// forgotten (and made again when looked up again, with the same number).
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "store/sha256.h"
#include "store/snapshot_internal.h"
#include "store/statements.h"
#include "store/store.h"

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
  return Store::kViewBit | (v & (Store::kViewBit - 1));
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

Result<Attr> Store::SnapshotsRoot(std::string_view confine) {
  OpScope op(this);
  if (read_only_) return Status(EROFS);
  if (!view_) view_ = std::make_unique<View>();
  uint64_t id = NodeId(0, "@snapshots", confine);
  ViewNode& n = view_->nodes[id];
  n.kind = ViewNode::kList;
  n.parent = id;
  n.confine = std::string(confine);
  auto root = LoadAttr(kRootIno);
  if (!root.ok()) return root.status();
  auto list = ListSnapshots();
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

Result<Attr> Store::NewControlFile(const auth::AccessRule& rule) {
  OpScope op(this);
  if (read_only_) return Status(EROFS);
  if (!view_) view_ = std::make_unique<View>();
  if (view_->control_files >= View::kMaxControlFiles)
    return Status(EMFILE, "too many control files open (" + std::to_string(View::kMaxControlFiles) + ")");
  view_->control_files++;
  uint64_t id = NodeId(0, "@ctl", std::to_string(view_->next_control++));
  ViewNode& n = view_->nodes[id];
  n.kind = ViewNode::kControl;
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

bool Store::IsControlFile(uint64_t ino) const {
  if (!view_ || !IsView(ino)) return false;
  auto it = view_->nodes.find(ino);
  return it != view_->nodes.end() && it->second.kind == ViewNode::kControl;
}

Result<Attr> Store::ViewAttr(uint64_t ino) {
  if (!view_) return Status(ESTALE);
  auto it = view_->nodes.find(ino);
  if (it == view_->nodes.end()) return Status(ESTALE);
  if (it->second.kind == ViewNode::kList) return SnapshotsRoot(it->second.confine);
  if (it->second.kind == ViewNode::kControl) it->second.attr.size = it->second.reply.size();
  return it->second.attr;
}

Result<Attr> Store::ViewLookup(uint64_t dir, std::string_view name) {
  if (!view_) return Status(ESTALE);
  auto it = view_->nodes.find(dir);
  if (it == view_->nodes.end()) return Status(ESTALE);
  if (name == ".") return ViewAttr(dir);
  if (name == "..") return ViewAttr(it->second.parent);
  ViewNode parent = it->second;  // (the table may rehash below)
  TreeEntry entry;
  if (parent.kind == ViewNode::kList) {
    auto s = FindSnapshot(name, parent.confine);
    if (!s.ok()) return Status(s.err() == EINVAL ? ENOENT : s.err());
    auto e = ResolveIn(s->root, s->root_attr, parent.confine);
    if (!e.ok() || !S_ISDIR(e->mode)) return Status(ENOENT);  // not in that snapshot
    entry = *e;
    entry.name = std::string(name);
  } else if (parent.kind == ViewNode::kEntry && S_ISDIR(parent.entry.mode)) {
    auto o = LoadObject(parent.entry.object);
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

// The node for `name` in directory node `dir` (made, or refreshed).
Attr Store::MakeNode(uint64_t dir, std::string_view name, const TreeEntry& entry) {
  uint64_t id = NodeId(dir, "", name);
  auto [slot, fresh] = view_->nodes.try_emplace(id);
  ViewNode& n = slot->second;
  if (fresh) {
    n.kind = ViewNode::kEntry;
    n.parent = dir;
    n.name = std::string(name);
    view_->nodes[dir].children++;
  }
  n.entry = entry;
  n.attr = AttrOf(id, entry);
  Attr out = n.attr;
  if (view_->nodes.size() > view_->scan_above) {
    // Forget nodes nothing holds, leaves first (a few passes).
    for (int pass = 0; pass < 8 && view_->nodes.size() > View::kMaxNodes / 2; pass++) {
      size_t before = view_->nodes.size();
      for (auto i = view_->nodes.begin(); i != view_->nodes.end();) {
        ViewNode& v = i->second;
        if (v.refs == 0 && v.children == 0 && i->first != id && i->first != dir &&
            v.kind == ViewNode::kEntry) {
          auto p = view_->nodes.find(v.parent);
          if (p != view_->nodes.end() && p->first != i->first) p->second.children--;
          i = view_->nodes.erase(i);
        } else {
          ++i;
        }
      }
      if (view_->nodes.size() == before) break;
    }
    view_->scan_above = std::max(View::kMaxNodes, view_->nodes.size() * 2);
  }
  return out;
}

Status Store::ViewReadDir(uint64_t dir, uint64_t cookie,
                          const std::function<bool(const DirEntry&)>& emit) {
  auto d = ViewAttr(dir);
  if (!d.ok()) return d.status();
  if (!S_ISDIR(d->mode)) return Status(ENOTDIR);
  ViewNode node = view_->nodes[dir];
  // Cookies: 1 after ".", 2 after "..", 3 + i after entry i.
  if (cookie == 0 && !emit({1, ".", *d})) return Status::Ok();
  if (cookie <= 1) {
    auto p = ViewAttr(node.parent);
    if (!p.ok()) return p.status();
    if (!emit({2, "..", *p})) return Status::Ok();
  }
  size_t from = cookie >= 3 ? size_t(cookie - 2) : 0;
  DirEntry e;
  if (node.kind == ViewNode::kList) {
    // Here the cookie after a snapshot is 3 + its id, so a listing that a
    // prune or a new snapshot interrupts neither skips nor repeats one.
    auto list = ListSnapshots();
    if (!list.ok()) return list.status();
    for (size_t i = 0; i < list->size(); i++) {
      const SnapshotInfo& s = (*list)[i];
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
        auto r = ResolveIn(s.root, s.root_attr, node.confine);
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
  auto o = LoadObject(node.entry.object);
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

Status Store::ViewRead(uint64_t ino, uint64_t offset, uint32_t count, std::string& out) {
  out.clear();
  if (!view_) return Status(ESTALE);
  auto it = view_->nodes.find(ino);
  if (it == view_->nodes.end()) return Status(ESTALE);
  ViewNode& n = it->second;
  if (n.kind == ViewNode::kControl) {
    if (offset < n.reply.size()) out = n.reply.substr(size_t(offset), count);
    return Status::Ok();
  }
  if (n.kind != ViewNode::kEntry || S_ISDIR(n.entry.mode)) return Status(EISDIR);
  if (!S_ISREG(n.entry.mode)) return Status(EINVAL);
  auto o = LoadObject(n.entry.object);
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
    Stmt& q = st_->chunk_by_hash;
    Stmt::Scope scope(q);
    q.Bind(1, std::string_view(reinterpret_cast<const char*>(x->chunk.data()), 32), true);
    if (!q.Step()) return q.failed() ? q.Error("chunk") : Status(ESTALE, "chunk is gone");
    MUSCLE_RETURN_IF_ERROR(chunks_->Read({uint64_t(q.Int(1)), uint64_t(q.Int(2))}, uint64_t(q.Int(3)),
                                         lo - x->offset, size_t(hi - lo), out.data() + (lo - offset)));
  }
  return Status::Ok();
}

Result<uint32_t> Store::ViewWrite(uint64_t ino, uint64_t offset, std::string_view data) {
  if (!view_) return Status(EROFS);
  auto it = view_->nodes.find(ino);
  if (it == view_->nodes.end() || it->second.kind != ViewNode::kControl) return Status(EROFS);
  (void)offset;  // each write is one command
  if (!control_handler) return Status(EOPNOTSUPP);
  auth::AccessRule rule = it->second.rule;  // the handler may change the table
  std::string reply = control_handler(*this, rule, data);
  auto again = view_->nodes.find(ino);  // the handler may have changed the table
  if (again == view_->nodes.end()) return uint32_t(data.size());
  std::string& held = again->second.reply;
  view_->reply_bytes -= held.size();
  if (view_->reply_bytes + reply.size() > View::kMaxReplyBytes)
    reply = "error ENOMEM: the answer (" + std::to_string(reply.size()) +
            " bytes) does not fit beside the answers other control files hold; narrow it (a PATH)\n";
  held = std::move(reply);
  view_->reply_bytes += held.size();
  return uint32_t(data.size());
}

Result<std::string> Store::ViewReadLink(uint64_t ino) {
  if (!view_) return Status(ESTALE);
  auto it = view_->nodes.find(ino);
  if (it == view_->nodes.end()) return Status(ESTALE);
  if (it->second.kind != ViewNode::kEntry || !S_ISLNK(it->second.entry.mode)) return Status(EINVAL);
  auto o = LoadObject(it->second.entry.object);
  if (!o.ok()) return o.status();
  return (*o)->target;
}

Result<std::pair<uint64_t, std::string>> Store::ViewFindName(uint64_t ino) {
  if (!view_) return Status(ESTALE);
  auto it = view_->nodes.find(ino);
  if (it == view_->nodes.end()) return Status(ESTALE);
  if (it->second.parent == ino) return Status(ENOENT);
  return std::make_pair(it->second.parent, it->second.name);
}

void Store::ViewRef(uint64_t ino) {
  if (!view_) return;
  auto it = view_->nodes.find(ino);
  if (it != view_->nodes.end()) it->second.refs++;
}

void Store::ViewUnref(uint64_t ino) {
  if (!view_) return;
  auto it = view_->nodes.find(ino);
  if (it == view_->nodes.end() || it->second.refs == 0) return;
  if (--it->second.refs == 0 && it->second.kind == ViewNode::kControl) {
    view_->control_files--;
    view_->reply_bytes -= it->second.reply.size();
    view_->nodes.erase(it);
  }
}

}  // namespace muscle::store
