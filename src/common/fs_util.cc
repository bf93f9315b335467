#include "common/fs_util.h"

#include <sys/stat.h>

namespace muscle {

void MakeDirs(const std::string& dir, mode_t mode) {
  std::string p;
  for (size_t i = 0; i <= dir.size(); i++) {
    if ((i == dir.size() || dir[i] == '/') && !p.empty()) mkdir(p.c_str(), mode);
    if (i < dir.size()) p += dir[i];
  }
}

}  // namespace muscle
