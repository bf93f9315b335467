#include "server/store_key.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>

#include "common/fs_util.h"

namespace muscle::server {

namespace {

// One line typed at the controlling terminal with echo off; ENOTTY when
// there is no terminal.
Result<std::string> AskTerminal(const std::string& prompt) {
  int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return Status(ENOTTY, "no terminal");
  termios old{};
  bool restore = tcgetattr(fd, &old) == 0;
  if (restore) {
    termios quiet = old;
    quiet.c_lflag &= ~tcflag_t(ECHO);
    quiet.c_lflag |= ECHONL;
    tcsetattr(fd, TCSAFLUSH, &quiet);
  }
  (void)!write(fd, prompt.data(), prompt.size());
  std::string line;
  line.reserve(1024);
  char c;
  while (line.size() < 1024) {
    ssize_t n = read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || c == '\n') break;
    line.push_back(c);
  }
  if (restore) tcsetattr(fd, TCSAFLUSH, &old);
  close(fd);
  return line;
}

void Wipe(std::string& s) {
  if (!s.empty()) sodium_memzero(s.data(), s.size());
  s.clear();
}

}  // namespace

Result<std::string> ReadPassphrase(const std::string& file, const std::string& what, bool confirm) {
  std::string pass;
  if (!file.empty()) {
    auto text = ReadOwnerOnlyFile(file, "passphrase file", 4096);
    if (!text.ok()) return text.status();
    pass = std::move(*text);
    size_t nl = pass.find_first_of("\r\n");
    if (nl != std::string::npos) {
      std::string first = pass.substr(0, nl);
      Wipe(pass);
      pass = std::move(first);
    }
    if (pass.empty()) return Status(EINVAL, "passphrase file " + file + " is empty");
    return pass;
  }
  auto typed = AskTerminal("passphrase for " + what + ": ");
  if (!typed.ok())
    return Status(EINVAL, what + " needs a passphrase: give --passphrase-file FILE (mode 0600) or "
                                 "run on a terminal");
  pass = std::move(*typed);
  if (pass.empty()) return Status(EINVAL, "an empty passphrase");
  if (confirm) {
    auto again = AskTerminal("the same passphrase again: ");
    bool same = again.ok() && *again == pass;
    if (again.ok()) Wipe(*again);
    if (!same) {
      Wipe(pass);
      return Status(EINVAL, "the passphrases differ");
    }
  }
  return pass;
}

Result<std::shared_ptr<const crypto::MasterKey>> LoadStoreKey(const KeyOptions& o) {
  const std::string& path = o.Path();
  struct stat st;
  if (o.key_file.empty() && (path.empty() || lstat(path.c_str(), &st) != 0))
    return std::shared_ptr<const crypto::MasterKey>();
  auto info = crypto::InspectKeyFileAt(path);
  if (!info.ok()) return info.status();
  if (info->kind == crypto::KeyFileKind::kUnattended) {
    auto k = crypto::LoadUnattendedKeyFile(path);
    if (!k.ok()) return k.status();
    return std::make_shared<const crypto::MasterKey>(std::move(*k));
  }
  auto pass = ReadPassphrase(o.passphrase_file, "key file " + path, false);
  if (!pass.ok()) return pass.status();
  auto k = crypto::UnlockKeyFile(path, *pass);
  Wipe(*pass);
  if (!k.ok()) return k.status();
  return std::make_shared<const crypto::MasterKey>(std::move(*k));
}

}  // namespace muscle::server
