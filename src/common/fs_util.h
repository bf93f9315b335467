// Small file-system helpers shared by the server and the tools.
#pragma once

#include <sys/types.h>

#include <string>

namespace muscle {

// Creates `dir` and its missing parents with `mode` (like mkdir -p).
// Errors are ignored: the caller's next open or bind reports them with
// the path that matters.
void MakeDirs(const std::string& dir, mode_t mode);

}  // namespace muscle
