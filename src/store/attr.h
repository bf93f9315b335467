// The values the tree's operations pass around: an inode's attributes, a
// directory entry, a setattr request, file-system totals (store/tree.h).
#pragma once

#include <cstdint>
#include <string>

namespace muscle::store {

struct Attr {
  uint64_t ino = 0;
  uint32_t mode = 0;  // includes S_IFMT bits
  uint32_t uid = 0, gid = 0;
  uint64_t nlink = 0, rdev = 0, size = 0;
  int64_t atime_ns = 0, mtime_ns = 0, ctime_ns = 0, btime_ns = 0;
  uint64_t version = 0;
  uint64_t blocks = 0;  // 512-byte units of stored (non-hole) data
};

struct DirEntry {
  uint64_t cookie = 0;  // pass back to ReadDir to continue after this entry
  std::string name;
  Attr attr;  // ino, mode, version are filled
};

struct SetAttrRequest {
  bool set_mode = false, set_uid = false, set_gid = false, set_size = false;
  uint32_t mode = 0, uid = 0, gid = 0;
  uint64_t size = 0;
  bool set_atime = false, set_mtime = false;
  int64_t atime_ns = 0, mtime_ns = 0;  // already resolved to a time
  bool set_ctime = false;
};

struct StatFs {
  uint64_t bsize = 4096, blocks = 0, bfree = 0, bavail = 0, files = 0,
           ffree = 0;
};

}  // namespace muscle::store
