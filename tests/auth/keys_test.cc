// The keys file is trusted only if it is a regular file that this user (or
// root) owns and nobody else can read (OpenSSH's StrictModes).
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>

#include "auth/keys.h"
#include "tests/test_util.h"

using namespace muscle;
using namespace muscle::auth;
using namespace muscle::test;

namespace {
void Write(const std::string& path, mode_t mode) {
  std::ofstream(path) << "laptop:0123456789abcdef0123456789abcdef\n";
  REQUIRE(chmod(path.c_str(), mode) == 0);
}
}  // namespace

TEST_CASE("keys file: a FIFO is refused at once, not waited on") {
  TempDir base;
  std::string path = base.path + "/keys";
  REQUIRE(mkfifo(path.c_str(), 0600) == 0);
  auto t0 = std::chrono::steady_clock::now();
  auto k = KeyTable::Load(path);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
  REQUIRE_FALSE(k.ok());
  CHECK(k.status().message().find("not a regular file") != std::string::npos);
}

TEST_CASE("keys file: another user's file, or one others can read, is refused") {
  TempDir base;
  std::string path = base.path + "/keys";
  Write(path, 0640);
  auto k = KeyTable::Load(path);
  REQUIRE_FALSE(k.ok());
  CHECK(k.status().message().find("chmod 600") != std::string::npos);
  Write(path, 0600);
  REQUIRE(KeyTable::Load(path).ok());
  if (geteuid() == 0) {
    REQUIRE(chown(path.c_str(), 65534, 65534) == 0);
    auto foreign = KeyTable::Load(path);
    REQUIRE_FALSE(foreign.ok());
    CHECK(foreign.status().message().find("owned by uid 65534") != std::string::npos);
  } else {
    WARN("not root: the foreign-owner case needs chown and was skipped");
  }
}
