// What every tree shares (tree.h).
#include "store/tree.h"

namespace muscle::store {

Result<std::vector<DirEntry>> Tree::ReadDir(uint64_t dir, uint64_t cookie, size_t max) {
  std::vector<DirEntry> out;
  Status s = ReadDir(dir, cookie, [&](const DirEntry& e) {
    if (out.size() >= max) return false;
    out.push_back(e);
    return true;
  });
  if (!s.ok()) return s;
  return out;
}

}  // namespace muscle::store
