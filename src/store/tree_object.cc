#include "store/tree_object.h"

#include <cstring>

namespace muscle::store {

namespace {

// "MFS" + kind + format version 1.
constexpr char kMagic[3] = {'M', 'F', 'S'};
constexpr uint8_t kVersion = 1;
constexpr size_t kEntryFixed = 2 + 4 * 3 + 8 * 2 + 8 * 3 + 1;

void Put(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++) out.push_back(char(v >> (8 * i)));
}

struct Reader {
  std::string_view in;
  bool ok = true;
  uint64_t Get(int bytes) {
    if (in.size() < size_t(bytes)) {
      ok = false;
      return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= uint64_t(uint8_t(in[i])) << (8 * i);
    in.remove_prefix(bytes);
    return v;
  }
  std::string_view Take(size_t n) {
    if (in.size() < n) {
      ok = false;
      return {};
    }
    auto s = in.substr(0, n);
    in.remove_prefix(n);
    return s;
  }
  void Hash(ObjectHash& h) {
    auto s = Take(32);
    if (ok) memcpy(h.data(), s.data(), 32);
  }
};

}  // namespace

std::string HexOfHash(const ObjectHash& h) {
  static const char* kDigits = "0123456789abcdef";
  std::string s;
  for (uint8_t b : h) {
    s += kDigits[b >> 4];
    s += kDigits[b & 15];
  }
  return s;
}

bool LooksLikeObject(std::string_view b) {
  return b.size() >= 5 && memcmp(b.data(), kMagic, 3) == 0 && uint8_t(b[4]) == kVersion &&
         (b[3] == 'd' || b[3] == 'f' || b[3] == 'l');
}

std::string EncodeObject(const TreeObject& o) {
  std::string out(kMagic, 3);
  out.push_back(char(o.kind));
  out.push_back(char(kVersion));
  switch (o.kind) {
    case ObjectKind::kDir:
      out.reserve(out.size() + o.entries.size() * (kEntryFixed + 48));
      Put(out, o.entries.size(), 4);
      for (const TreeEntry& e : o.entries) {
        Put(out, e.name.size(), 2);
        out += e.name;
        Put(out, e.mode, 4);
        Put(out, e.uid, 4);
        Put(out, e.gid, 4);
        Put(out, e.size, 8);
        Put(out, e.rdev, 8);
        Put(out, uint64_t(e.mtime_ns), 8);
        Put(out, uint64_t(e.ctime_ns), 8);
        Put(out, uint64_t(e.btime_ns), 8);
        out.push_back(e.has_object ? 1 : 0);
        if (e.has_object) out.append(reinterpret_cast<const char*>(e.object.data()), 32);
      }
      break;
    case ObjectKind::kFile:
      out.reserve(out.size() + 12 + o.extents.size() * 44);
      Put(out, o.size, 8);
      Put(out, o.extents.size(), 4);
      for (const FileExtent& x : o.extents) {
        Put(out, x.offset, 8);
        Put(out, x.length, 4);
        out.append(reinterpret_cast<const char*>(x.chunk.data()), 32);
      }
      break;
    case ObjectKind::kSymlink:
      out += o.target;
      break;
  }
  return out;
}

Result<TreeObject> DecodeObject(std::string_view bytes) {
  if (!LooksLikeObject(bytes)) return Status(EIO, "not a tree object");
  TreeObject o;
  o.kind = ObjectKind(bytes[3]);
  Reader r{bytes.substr(5)};
  switch (o.kind) {
    case ObjectKind::kDir: {
      uint64_t n = r.Get(4);
      if (n > r.in.size() / kEntryFixed) return Status(EIO, "directory object: bad count");
      o.entries.reserve(n);
      for (uint64_t i = 0; i < n && r.ok; i++) {
        TreeEntry e;
        size_t len = size_t(r.Get(2));
        e.name = std::string(r.Take(len));
        e.mode = uint32_t(r.Get(4));
        e.uid = uint32_t(r.Get(4));
        e.gid = uint32_t(r.Get(4));
        e.size = r.Get(8);
        e.rdev = r.Get(8);
        e.mtime_ns = int64_t(r.Get(8));
        e.ctime_ns = int64_t(r.Get(8));
        e.btime_ns = int64_t(r.Get(8));
        uint64_t has = r.Get(1);
        if (has > 1) return Status(EIO, "directory object: bad entry");
        e.has_object = has == 1;
        if (e.has_object) r.Hash(e.object);
        if (!r.ok) break;
        if (e.name.empty() || e.name == "." || e.name == ".." ||
            e.name.find('/') != std::string::npos || e.name.find('\0') != std::string::npos)
          return Status(EIO, "directory object: bad name");
        if (!o.entries.empty() && !(o.entries.back().name < e.name))
          return Status(EIO, "directory object: entries out of order");
        o.entries.push_back(std::move(e));
      }
      break;
    }
    case ObjectKind::kFile: {
      o.size = r.Get(8);
      uint64_t n = r.Get(4);
      if (n > r.in.size() / 44) return Status(EIO, "file object: bad count");
      o.extents.reserve(n);
      uint64_t end = 0;
      for (uint64_t i = 0; i < n && r.ok; i++) {
        FileExtent x;
        x.offset = r.Get(8);
        x.length = uint32_t(r.Get(4));
        r.Hash(x.chunk);
        if (!r.ok) break;
        if (x.length == 0 || x.offset < end || x.offset + x.length > o.size ||
            x.offset + x.length < x.offset)
          return Status(EIO, "file object: bad extent");
        end = x.offset + x.length;
        o.extents.push_back(x);
      }
      break;
    }
    case ObjectKind::kSymlink:
      o.target = std::string(r.in);
      r.in = {};
      break;
  }
  if (!r.ok || !r.in.empty()) return Status(EIO, "tree object: truncated or trailing bytes");
  return o;
}

std::vector<ObjectHash> ChildrenOf(const TreeObject& o) {
  std::vector<ObjectHash> out;
  for (const TreeEntry& e : o.entries)
    if (e.has_object) out.push_back(e.object);
  for (const FileExtent& x : o.extents) out.push_back(x.chunk);
  return out;
}

}  // namespace muscle::store
