#include "auth/keys.h"

#include <fcntl.h>
#include <mbedtls/platform_util.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

namespace muscle::auth {

Secret::~Secret() {
  mbedtls_platform_zeroize(bytes_.data(), bytes_.size());
}

std::string DecodeSecret(const std::string& text) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  bool is_hex = !text.empty() && text.size() % 2 == 0;
  for (char c : text) is_hex = is_hex && hex(c) >= 0;
  if (!is_hex) return text;
  std::string out(text.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); i++)
    out[i] = char(hex(text[2 * i]) << 4 | hex(text[2 * i + 1]));
  return out;
}

// Opens without blocking (a FIFO would hang), then checks what was opened
// (no race between check and read): a regular file, owned by us or root,
// with no permission for group or others, as OpenSSH's StrictModes wants.
Result<std::string> ReadPrivateFile(const std::string& path, bool check_permissions) {
  int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return Status(errno, "cannot read keys file " + path + ": " + strerror(errno) +
                             " (create it with: muscle keys add NAME)");
  struct stat st;
  auto fail = [&](Status s) {
    close(fd);
    return s;
  };
  if (fstat(fd, &st) != 0) return fail(Status(errno, "cannot stat keys file " + path));
  if (!S_ISREG(st.st_mode))
    return fail(Status(EINVAL, "keys file " + path + " is not a regular file"));
  if (check_permissions) {
    if (st.st_uid != geteuid() && st.st_uid != 0)
      return fail(Status(EPERM, "keys file " + path + " is owned by uid " +
                                    std::to_string(st.st_uid) + ", not by this user (uid " +
                                    std::to_string(geteuid()) + ") or root; fix it with: chown " +
                                    std::to_string(geteuid()) + " " + path));
    if (st.st_mode & 077) {
      char b[8];
      snprintf(b, sizeof b, "%04o", st.st_mode & 07777);
      return fail(Status(EPERM, "keys file " + path + " is readable by group or others (mode " +
                                    b + "); fix it with: chmod 600 " + path));
    }
  }
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(Status(errno, "cannot read keys file " + path));
    if (n == 0) break;
    text.append(buf, size_t(n));
    if (text.size() > (16u << 20)) return fail(Status(EFBIG, "keys file " + path + " is too large"));
  }
  close(fd);
  mbedtls_platform_zeroize(buf, sizeof buf);
  return text;
}

Status CheckPrivate(const std::string& path) {
  auto text = ReadPrivateFile(path, true);
  if (!text.ok()) return text.status();
  mbedtls_platform_zeroize(text->data(), text->size());
  return Status::Ok();
}

Result<std::shared_ptr<const KeyTable>> KeyTable::Load(const std::string& path,
                                                       bool check_permissions) {
  auto read = ReadPrivateFile(path, check_permissions);
  if (!read.ok()) return read.status();
  std::string& text = *read;
  auto r = Parse(text, path);
  mbedtls_platform_zeroize(text.data(), text.size());
  return r;
}

Result<std::shared_ptr<const KeyTable>> KeyTable::Parse(const std::string& text,
                                                        const std::string& name) {
  auto table = std::make_shared<KeyTable>();
  std::map<std::string, int> first_line;
  size_t pos = 0;
  int n = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    n++;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    std::string where = name + ":" + std::to_string(n);
    size_t colon = line.find(':');
    if (colon == std::string::npos)
      return Status(EINVAL, where + ": expected IDENTITY:SECRET");
    std::string id = line.substr(0, colon);
    if (id.empty() || id.size() > kMaxIdentity)
      return Status(EINVAL, where + ": identity must be 1 to 255 characters");
    std::string key = DecodeSecret(line.substr(colon + 1));
    if (key.size() < kMinKeyBytes || key.size() > kMaxKeyBytes)
      return Status(EINVAL, where + ": the secret of '" + id + "' is " +
                                std::to_string(key.size()) +
                                " bytes; it must be 16 to 32 bytes (e.g. 64 hex digits)");
    if (first_line.count(id))
      return Status(EINVAL, where + ": duplicate identity '" + id + "' (first at line " +
                                std::to_string(first_line[id]) + ")");
    first_line[id] = n;
    table->keys_.emplace(id, Secret(std::move(key)));
  }
  return std::shared_ptr<const KeyTable>(table);
}

const Secret* KeyTable::Find(const std::string& identity) const {
  auto it = keys_.find(identity);
  return it == keys_.end() ? nullptr : &it->second;
}

std::vector<std::string> KeyTable::Identities() const {
  std::vector<std::string> out;
  for (auto& [id, k] : keys_) out.push_back(id);
  return out;
}

Result<std::string> NewHexSecret() {
  unsigned char b[32];
  if (getrandom(b, sizeof b, 0) != ssize_t(sizeof b)) return Status(errno, "getrandom");
  static const char* d = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : b) {
    hex += d[c >> 4];
    hex += d[c & 15];
  }
  memset(b, 0, sizeof b);
  return hex;
}

}  // namespace muscle::auth
