#include "transport/claim.h"

#include <vector>

namespace muscle::transport {

namespace {
bool IdentityChar(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         ch == '.' || ch == '_' || ch == '@' || ch == '+' || ch == '-';
}
}  // namespace

Status CheckClaim(const Claim& c) {
  if (c.identity.size() > 64) return Status(EINVAL, "identity longer than 64 characters");
  for (char ch : c.identity)
    if (!IdentityChar(ch))
      return Status(EINVAL, "identity may hold only letters, digits and . _ @ + -");
  if (c.root.empty()) return Status::Ok();
  if (c.root[0] != '/') return Status(EINVAL, "root must be an absolute path (/sub/tree)");
  if (c.root.size() > 512) return Status(EINVAL, "root longer than 512 bytes");
  for (unsigned char ch : c.root)
    if (ch <= ' ' || ch == 0x7f)
      return Status(EINVAL, "root may not hold spaces or control characters");
  size_t i = 1;
  while (i < c.root.size()) {
    size_t j = c.root.find('/', i);
    if (j == std::string::npos) j = c.root.size();
    std::string_view part(c.root.data() + i, j - i);
    if (part.empty() || part == "." || part == "..")
      return Status(EINVAL, "root may not hold empty, . or .. components");
    i = j + 1;
  }
  if (c.root.size() > 1 && c.root.back() == '/') return Status(EINVAL, "root may not end with /");
  return Status::Ok();
}

std::string FormatClaim(const Claim& c) {
  std::string line(kClaimPrefix);
  if (!c.identity.empty()) line += " identity=" + c.identity;
  if (!c.root.empty() && c.root != "/") line += " root=" + c.root;
  if (c.read_only) line += " read-only";
  return line + "\n";
}

Result<Claim> ParseClaim(std::string_view line) {
  if (line.substr(0, kClaimPrefix.size()) != kClaimPrefix)
    return Status(EINVAL, "not a claim line");
  Claim c;
  bool seen_identity = false, seen_root = false, seen_ro = false;
  size_t i = kClaimPrefix.size();
  while (i < line.size()) {
    if (line[i] != ' ') return Status(EINVAL, "malformed claim line");
    i++;
    size_t j = line.find(' ', i);
    if (j == std::string_view::npos) j = line.size();
    std::string_view word = line.substr(i, j - i);
    i = j;
    if (word.substr(0, 9) == "identity=" && !seen_identity) {
      c.identity = std::string(word.substr(9));
      seen_identity = true;
      if (c.identity.empty()) return Status(EINVAL, "empty identity in claim");
    } else if (word.substr(0, 5) == "root=" && !seen_root) {
      c.root = std::string(word.substr(5));
      seen_root = true;
    } else if (word == "read-only" && !seen_ro) {
      c.read_only = true;
      seen_ro = true;
    } else {
      return Status(EINVAL, "unknown or repeated word in claim line");
    }
  }
  MUSCLE_RETURN_IF_ERROR(CheckClaim(c));
  if (c.root == "/") c.root.clear();
  return c;
}

}  // namespace muscle::transport
