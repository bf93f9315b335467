// libFuzzer target: any text as musclefs.conf (written to a private base
// directory, as the server reads it).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "server/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::string base = [] {
    char tmpl[] = "/tmp/musclefs-fuzz-config-XXXXXX";
    if (!mkdtemp(tmpl)) abort();
    return std::string(tmpl);
  }();
  std::string path = base + "/musclefs.conf";
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) abort();
  if (write(fd, data, size) != ssize_t(size)) abort();
  close(fd);
  auto c = muscle::server::ParseConfig({"serve", "--base", base});
  (void)c;
  return 0;
}
