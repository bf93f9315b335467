// musclefs serve --check-config: what would stop a server from starting is
// a problem; what it would do is a note.
#include "server/config_check.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "crypto/keys.h"
#include "server/config.h"
#include "tests/test_util.h"

using namespace muscle;
using namespace muscle::test;

namespace {
server::ConfigReport CheckWith(const std::string& base, const std::string& conf) {
  std::string path = base + "/musclefs.conf";
  std::ofstream(path) << conf;
  chmod(path.c_str(), 0600);
  auto c = server::ParseConfig({"serve", "--base", base, "--check-config"});
  REQUIRE(c.ok());
  CHECK(c->check_config);
  return server::CheckConfig(*c);
}
bool Mentions(const std::vector<std::string>& lines, const std::string& what) {
  for (const auto& l : lines)
    if (l.find(what) != std::string::npos) return true;
  return false;
}
}  // namespace

TEST_CASE("check-config accepts a good configuration and lists what it serves") {
  TempDir dir;
  auto r = CheckWith(dir.path, "access = bob read-only\naccess = carol uid=7 no-root-squash devices\n");
  CHECK(r.ok());
  CHECK(Mentions(r.notes, "listen: unix:" + dir.path + "/musclefs.sock"));
  CHECK(Mentions(r.notes, "access: bob root=/ read-only root-squash"));
  CHECK(Mentions(r.notes, "access: carol root=/ uid=7 no-root-squash devices"));
}

TEST_CASE("check-config reports what would stop the server") {
  TempDir dir;
  SECTION("plain TCP on a network address") {
    auto r = CheckWith(dir.path, "listen = tcp://192.0.2.1:5640\n");
    CHECK(!r.ok());
    CHECK(Mentions(r.problems, "tcp://192.0.2.1:5640"));
    CHECK(
        CheckWith(dir.path, "listen = tcp://192.0.2.1:5640\nallow-plaintext-network = yes\n").ok());
  }
  SECTION("a TLS listener without a keys file, or with an empty one") {
    auto r = CheckWith(dir.path, "listen = tls://127.0.0.1:3004\n");
    CHECK(!r.ok());
    CHECK(Mentions(r.problems, "keys"));
    std::ofstream(dir.path + "/keys") << "";
    chmod((dir.path + "/keys").c_str(), 0600);
    CHECK(
        Mentions(CheckWith(dir.path, "listen = tls://127.0.0.1:3004\n").problems, "no identities"));
  }
  SECTION("a keys file others can read") {
    std::ofstream(dir.path + "/keys") << "a:0123456789abcdef0123456789abcdef\n";
    chmod((dir.path + "/keys").c_str(), 0644);
    auto r = CheckWith(dir.path, "");
    CHECK(!r.ok());
    CHECK(Mentions(r.problems, "chmod 600"));
  }
  SECTION("an unparsable listen address fails while parsing (exit 1 too)") {
    std::ofstream(dir.path + "/musclefs.conf") << "listen = carrier-pigeon\n";
    chmod((dir.path + "/musclefs.conf").c_str(), 0600);
    CHECK(!server::ParseConfig({"serve", "--base", dir.path, "--check-config"}).ok());
  }
}

TEST_CASE("check-config reads the key of an encrypted store") {
  TempDir dir;
  auto master = crypto::MasterKey::Generate();
  std::string pass = dir.path + "/pass", wrong = dir.path + "/wrong";
  std::ofstream(pass) << "the passphrase\n";
  std::ofstream(wrong) << "another\n";
  chmod(pass.c_str(), 0600);
  chmod(wrong.c_str(), 0600);
  REQUIRE(crypto::CreatePassphraseKeyFile(dir.path + "/store.key", master, "the passphrase",
                                          crypto::KdfParams::Minimum())
              .ok());
  if (!isatty(0)) {
    // No passphrase file and no terminal: a service would not start.
    auto r = CheckWith(dir.path, "");
    CHECK_FALSE(r.ok());
    CHECK(Mentions(r.problems, "needs a passphrase"));
  }
  auto bad = CheckWith(dir.path, "passphrase-file = " + wrong + "\n");
  CHECK_FALSE(bad.ok());
  CHECK(Mentions(bad.problems, "wrong passphrase"));
  auto good = CheckWith(dir.path, "passphrase-file = " + pass + "\n");
  CHECK(good.ok());
  CHECK(Mentions(good.notes, "encryption: key " + crypto::KeyIdOf(master).Hex()));
  // A key file that is not one.
  std::ofstream(dir.path + "/other.key") << "hello\n";
  auto junk = CheckWith(dir.path, "key-file = " + dir.path + "/other.key\n");
  CHECK_FALSE(junk.ok());
  CHECK(Mentions(junk.problems, "key-file"));
}
