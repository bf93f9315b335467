#include "auth/keys_file.h"

#include <fcntl.h>
#include <mbedtls/platform_util.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "auth/keys.h"
#include "common/fs_util.h"

namespace muscle::auth {

namespace {

Result<std::vector<std::string>> ReadLines(const std::string& path, bool& exists) {
  struct stat st;
  exists = stat(path.c_str(), &st) == 0;
  std::vector<std::string> lines;
  if (!exists) return lines;
  auto text = ReadPrivateFile(path, true);
  if (!text.ok()) return text.status();
  auto table = KeyTable::Parse(*text, path);  // refuse to edit a broken file
  if (!table.ok()) return table.status();
  size_t pos = 0;
  while (pos < text->size()) {
    size_t eol = text->find('\n', pos);
    if (eol == std::string::npos) eol = text->size();
    lines.push_back(text->substr(pos, eol - pos));
    pos = eol + 1;
  }
  mbedtls_platform_zeroize(text->data(), text->size());
  return lines;
}

std::string IdentityOf(const std::string& line) {
  if (line.empty() || line[0] == '#') return "";
  size_t colon = line.find(':');
  return colon == std::string::npos ? "" : line.substr(0, colon);
}

Status WriteLines(const std::string& path, const std::vector<std::string>& lines) {
  std::string dir = path.substr(0, path.rfind('/') == std::string::npos ? 0 : path.rfind('/'));
  if (!dir.empty()) MakeDirs(dir, 0700);
  std::string tmp = path + ".tmp." + std::to_string(getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status(errno, "cannot write " + tmp);
  std::string text;
  for (auto& l : lines) text += l + "\n";
  bool ok = write(fd, text.data(), text.size()) == ssize_t(text.size()) && fsync(fd) == 0;
  close(fd);
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    unlink(tmp.c_str());
    return Status(e ? e : EIO, "cannot write " + path);
  }
  return Status::Ok();
}

}  // namespace

Status CheckIdentityName(const std::string& name) {
  if (name.empty() || name.size() > kMaxIdentity)
    return Status(EINVAL, "an identity must be 1 to 255 characters");
  for (char c : name)
    if (c == ':' || c == '#' || c == '\n' || c == ' ' || c == '\t' || c == '\r')
      return Status(EINVAL, "an identity cannot contain ':', '#' or white space: '" + name + "'");
  return Status::Ok();
}

Status PutKey(const std::string& path, const std::string& name, const std::string& secret,
              bool replace) {
  MUSCLE_RETURN_IF_ERROR(CheckIdentityName(name));
  bool exists;
  auto lines = ReadLines(path, exists);
  if (!lines.ok()) return lines.status();
  bool found = false;
  for (auto& l : *lines) {
    if (IdentityOf(l) != name) continue;
    found = true;
    if (!replace) return Status(EEXIST, "identity '" + name + "' already exists in " + path +
                                            " (use muscle keys rotate " + name + " for a new secret)");
    l = name + ":" + secret;
  }
  if (replace && !found) return Status(ENOENT, "no identity '" + name + "' in " + path);
  if (!found) lines->push_back(name + ":" + secret);
  return WriteLines(path, *lines);
}

Status RemoveKey(const std::string& path, const std::string& name) {
  bool exists;
  auto lines = ReadLines(path, exists);
  if (!lines.ok()) return lines.status();
  if (!exists) return Status(ENOENT, "no keys file " + path);
  std::vector<std::string> kept;
  for (auto& l : *lines)
    if (IdentityOf(l) != name) kept.push_back(l);
  if (kept.size() == lines->size()) return Status(ENOENT, "no identity '" + name + "' in " + path);
  return WriteLines(path, kept);
}

}  // namespace muscle::auth
