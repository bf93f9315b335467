// Tree objects: the immutable, content-addressed form of the file tree that
// snapshots are made of (format in man/musclefs-store.5, "TREE OBJECTS").
//
// A directory object lists its entries sorted by name (bytewise), each with
// the metadata a snapshot keeps (mode, ownership, size, rdev, times) and the
// SHA-256 of the child's own object: a directory's, a regular file's (its
// chunk list) or a symlink's (its target); other types have none. Two trees
// that share a subtree share its object, as git's trees do, so a snapshot
// adds only the objects of what changed since the last one.
//
// Objects are stored as chunks (store.h: the chunks table, kind 1) in the
// pack files; an object holds one reference to every child it names.
//
// Pure functions; thread-safe. Decoding checks every length, so a damaged
// or hostile object is an error, never a crash.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace muscle::store {

using ObjectHash = std::array<uint8_t, 32>;

enum class ObjectKind : uint8_t { kDir = 'd', kFile = 'f', kSymlink = 'l' };

struct TreeEntry {
  std::string name;
  uint32_t mode = 0, uid = 0, gid = 0;
  uint64_t size = 0, rdev = 0;
  int64_t mtime_ns = 0, ctime_ns = 0, btime_ns = 0;
  bool has_object = false;  // directories, regular files and symlinks
  ObjectHash object{};
};

struct FileExtent {
  uint64_t offset = 0;
  uint32_t length = 0;
  ObjectHash chunk{};
};

struct TreeObject {
  ObjectKind kind = ObjectKind::kDir;
  std::vector<TreeEntry> entries;  // kDir: sorted by name, names unique
  uint64_t size = 0;               // kFile
  std::vector<FileExtent> extents; // kFile: sorted, not overlapping
  std::string target;              // kSymlink
};

// The object's bytes (entries must already be sorted).
std::string EncodeObject(const TreeObject& o);
Result<TreeObject> DecodeObject(std::string_view bytes);
// True when bytes start like an object (a cheap test before DecodeObject).
bool LooksLikeObject(std::string_view bytes);
// Every hash the object references (children or chunks), in order.
std::vector<ObjectHash> ChildrenOf(const TreeObject& o);
std::string HexOfHash(const ObjectHash& h);

}  // namespace muscle::store
