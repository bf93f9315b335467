#include "common/result.h"

#include <cstring>

namespace muscle {

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string s = strerror(err_);
  if (!msg_.empty()) s = msg_ + ": " + s;
  return s;
}

}  // namespace muscle
