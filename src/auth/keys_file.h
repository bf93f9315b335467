// Editing a keys file in place for `muscle keys`: lines of other identities
// and comments are kept byte for byte; the new file replaces the old one
// atomically (written beside it with mode 0600, then renamed).
#pragma once

#include <string>
#include <vector>

#include "common/result.h"

namespace muscle::auth {

// Adds NAME with SECRET (or, with replace, replaces its secret). Creates
// the file (mode 0600) and its directory if missing. Refuses an existing
// NAME unless replace, a missing one with replace, an insecure or broken
// file.
Status PutKey(const std::string& path, const std::string& name, const std::string& secret,
              bool replace);
Status RemoveKey(const std::string& path, const std::string& name);
// Checks a name is usable as an identity (no ':', no spaces, 1-255 bytes).
Status CheckIdentityName(const std::string& name);

}  // namespace muscle::auth
