// Per-client pre-shared keys, in stunnel's PSKsecrets format.
//
// One "IDENTITY:SECRET" per line, split at the first ':'; empty lines and
// lines starting with '#' are skipped. SECRET is hex-decoded when it is
// valid even-length hex, otherwise its raw bytes are the key (as stunnel
// does); 16 to 32 bytes after decoding (32 is mbedTLS's PSK limit).
// Identities are 1-255 bytes. Duplicate identities and malformed lines are
// errors reported as FILE:LINE. A file that group or others can read is
// refused, with the chmod command that fixes it.
//
// A KeyTable is immutable once loaded and shared by shared_ptr, so a reload
// swaps tables atomically (on the loop thread). Key bytes are zeroized when
// the table is destroyed.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"

namespace muscle::auth {

constexpr size_t kMinKeyBytes = 16;
constexpr size_t kMaxKeyBytes = 32;
constexpr size_t kMaxIdentity = 255;

// Key bytes that wipe themselves.
class Secret {
 public:
  Secret() = default;
  explicit Secret(std::string bytes) : bytes_(std::move(bytes)) {}
  Secret(const Secret&) = default;
  Secret& operator=(const Secret&) = default;
  ~Secret();
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

class KeyTable {
 public:
  // Loads and validates `path`. With check_permissions, refuses files that
  // group or others can read.
  static Result<std::shared_ptr<const KeyTable>> Load(const std::string& path,
                                                      bool check_permissions = true);
  static Result<std::shared_ptr<const KeyTable>> Parse(const std::string& text,
                                                       const std::string& name);

  // The key of `identity`, or nullptr.
  const Secret* Find(const std::string& identity) const;
  std::vector<std::string> Identities() const;
  size_t size() const { return keys_.size(); }

 private:
  std::map<std::string, Secret> keys_;
};

// SECRET text -> key bytes, stunnel's rule (hex if valid even-length hex).
std::string DecodeSecret(const std::string& text);
// 32 random bytes from the OS, as 64 hex digits.
Result<std::string> NewHexSecret();
// Checks that only the owner can read `path`; the error names the fix.
Status CheckPrivate(const std::string& path);
// The file's contents, read only if it is a regular file (a FIFO or device
// is refused without blocking) and, with check_permissions, owned by this
// user or root and closed to group and others.
Result<std::string> ReadPrivateFile(const std::string& path, bool check_permissions);

}  // namespace muscle::auth
