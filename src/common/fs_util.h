// Small file-system helpers shared by the server and the tools.
#pragma once

#include <sys/types.h>

#include <string>

#include "common/result.h"

namespace muscle {

// Creates `dir` and its missing parents with `mode` (like mkdir -p).
// Errors are ignored: the caller's next open or bind reports them with
// the path that matters.
void MakeDirs(const std::string& dir, mode_t mode);

// Reads a small file that holds a secret, refusing it unless only this user
// could have written or read it: the last component is opened without
// following a symlink (ELOOP, "is a symlink") and without blocking (a FIFO
// would hang), then the descriptor is checked (no race between check and
// read): a regular file (EINVAL), owned by the effective uid (EPERM; root
// owning it is not enough unless root runs us), no permission bit for group
// or others (EPERM, with the chmod that fixes it). Larger than `max_size`:
// EFBIG. `what` names the file in messages ("unattended key file"). The
// text is read into storage reserved up front, so no reallocation leaves a
// copy behind; the caller wipes it when done.
Result<std::string> ReadOwnerOnlyFile(const std::string& path, const std::string& what,
                                      size_t max_size);

}  // namespace muscle
