// The musclefs command as an administrator runs it: the listeners and file
// modes `musclefs serve` uses when none are asked for, and what `musclefs
// upgrade` says of the store it upgraded.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

#include "9p/client.h"
#include "crypto/keys.h"
#include "store/store.h"
#include "tests/store/store_test_util.h"
#include "tests/server/server_harness.h"

using namespace muscle;
using namespace muscle::p9;
using namespace muscle::test;

TEST_CASE("musclefs serve without --listen opens only the unix socket, mode 0600") {
  TempDir dir;
  std::string log = dir.path + "/server.log";
  {
    ChildServer srv({"--base", dir.path, "--store", ":memory:"},
                    "unix:" + dir.path + "/musclefs.sock", log);
    struct stat st;
    REQUIRE(stat((dir.path + "/musclefs.sock").c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 0777) == 0600);
    Client c;
    Connect(c, "unix:" + dir.path + "/musclefs.sock");
    for (int i = 0; i < 500 && ReadText(log).find("to mount:") == std::string::npos; i++)
      usleep(10000);
  }
  std::string text = ReadText(log);
  INFO(text);
  CHECK(text.find("listening on unix:") != std::string::npos);
  CHECK(text.find("tcp://") == std::string::npos);
  CHECK(text.find("trans=tcp") == std::string::npos);
  CHECK(text.find("WARNING") == std::string::npos);
}

TEST_CASE("the store and the files beside it are private, also in a base readable by all") {
  TempDir dir;
  REQUIRE(chmod(dir.path.c_str(), 0755) == 0);
  {
    ChildServer srv({"--base", dir.path}, "unix:" + dir.path + "/musclefs.sock",
                    dir.path + "/server.log");
    Client c;
    Connect(c, "unix:" + dir.path + "/musclefs.sock");
    MakeFile(c, "f");
    REQUIRE(c.WalkPath(0, 1, "f").ok());
    REQUIRE(c.Fsync(1).ok());
    for (const char* name : {"store.db", "store.db-wal", "musclefs.sock", "musclefs.pid"}) {
      INFO(name);
      struct stat st;
      REQUIRE(stat((dir.path + "/" + name).c_str(), &st) == 0);
      CHECK((st.st_mode & 077) == 0);
    }
  }
}

TEST_CASE("a plain TCP listener is opened only when asked for, with a warning in the log") {
  TempDir dir;
  std::string log = dir.path + "/server.log";
  {
    ChildServer srv({"--base", dir.path, "--store", ":memory:", "--listen",
                     "unix:" + dir.path + "/s", "--listen", "tcp://127.0.0.1:0"},
                    "unix:" + dir.path + "/s", log);
    // The socket accepts before the start-up lines are written (slowly,
    // under the sanitizers): wait for them.
    for (int i = 0; i < 500 && ReadText(log).find("to mount:") == std::string::npos; i++)
      usleep(10000);
  }
  std::string text = ReadText(log);
  INFO(text);
  CHECK(text.find("listening on tcp://127.0.0.1:") != std::string::npos);
  size_t w = text.find("WARNING: tcp://127.0.0.1:");
  REQUIRE(w != std::string::npos);
  CHECK(text.find("every local user", w) != std::string::npos);
}

TEST_CASE("musclefs upgrade names the store's format: a format 2 store becomes the current one") {
  TempDir base;
  std::string src = MUSCLE_SOURCE_DIR "/tests/store/fixtures/v2-store";
  REQUIRE(RunCommand("cp -r " + src + "/store.db " + src + "/packs " + base.path + "/") == 0);
  REQUIRE(RunCommand("chmod 700 " + base.path + "/packs") == 0);
  std::string out;
  REQUIRE(RunCommand(std::string(MUSCLEFS_BINARY) + " upgrade --store " + base.path +
                         "/store.db 2>&1", &out) == 0);
  INFO(out);
  std::string says = "store " + base.path + "/store.db: format " +
                     std::to_string(store::kStoreFormat);
  CHECK(out.find(says) != std::string::npos);
  // Once more on the upgraded store: the same answer.
  out.clear();
  REQUIRE(RunCommand(std::string(MUSCLEFS_BINARY) + " upgrade --store " + base.path +
                         "/store.db 2>&1", &out) == 0);
  CHECK(out.find(says) != std::string::npos);
}

namespace {

// Writes `data` as /NAME into the encrypted store of `base`, opened with
// the unattended key file `key_file`; its inode.
uint64_t WriteWithKeyFile(const std::string& base, const std::string& key_file, const std::string& name,
                          const std::string& data) {
  auto key = crypto::LoadUnattendedKeyFile(key_file);
  REQUIRE(key.ok());
  auto s = store::Store::Open(base + "/store.db", nullptr,
                              std::make_shared<const crypto::MasterKey>(std::move(*key)));
  INFO(s.status().ToString());
  REQUIRE(s.ok());
  uint64_t ino = WriteFile(**s, name, data);
  REQUIRE((*s)->Sync(true).ok());
  return ino;
}

std::string ReadWithKeyFile(const std::string& base, const std::string& key_file, uint64_t ino) {
  auto key = crypto::LoadUnattendedKeyFile(key_file);
  REQUIRE(key.ok());
  auto s = store::Store::Open(base + "/store.db", nullptr,
                              std::make_shared<const crypto::MasterKey>(std::move(*key)));
  INFO(s.status().ToString());
  REQUIRE(s.ok());
  return ReadAll(**s, ino);
}

}  // namespace

TEST_CASE("musclefs key rotate, list, rewrite and retire on an encrypted store; the old key file is refused") {
  TempDir base;
  std::string bin = std::string(MUSCLEFS_BINARY) + " ";
  std::string b = " --base " + base.path + " 2>&1";
  std::string key = base.path + "/store.key", copy = base.path + "/copy.key";
  std::string out;
  REQUIRE(RunCommand(bin + "init --encrypt --unattended" + b, &out) == 0);
  REQUIRE(RunCommand(bin + "key add " + copy + " --unattended" + b, &out) == 0);
  std::string old = RandomBytes(2 << 20, 21), fresh = RandomBytes(2 << 20, 22);
  uint64_t a = WriteWithKeyFile(base.path, key, "old", old);
  auto old_id = crypto::InspectKeyFileAt(key);
  REQUIRE(old_id.ok());

  out.clear();
  REQUIRE(RunCommand(bin + "key rotate" + b, &out) == 0);
  INFO(out);
  CHECK(out.find("rotated to generation 2") != std::string::npos);
  CHECK(out.find("holds the old key " + old_id->key_id.Hex()) != std::string::npos);
  auto new_id = crypto::InspectKeyFileAt(key);
  REQUIRE(new_id.ok());
  CHECK(new_id->kind == crypto::KeyFileKind::kUnattended);
  CHECK_FALSE(new_id->key_id == old_id->key_id);
  CHECK(access((key + ".rotated").c_str(), F_OK) != 0);

  uint64_t f = WriteWithKeyFile(base.path, key, "fresh", fresh);
  CHECK(ReadWithKeyFile(base.path, key, a) == old);
  CHECK(ReadWithKeyFile(base.path, key, f) == fresh);
  out.clear();
  REQUIRE(RunCommand(bin + "key list" + b, &out) == 0);
  CHECK(out.find("generation 1 key " + old_id->key_id.Hex() + " from-pack 0 packs 1\n") != std::string::npos);
  CHECK(out.find("generation 2 key " + new_id->key_id.Hex() + " from-pack 2 packs 1 current\n") !=
        std::string::npos);

  // The copy made before the rotation holds the old key: refused, and says why.
  out.clear();
  CHECK(RunCommand(bin + "check --key-file " + copy + b, &out) == 2);
  CHECK(out.find("before a rotation") != std::string::npos);

  out.clear();
  CHECK(RunCommand(bin + "key retire 1" + b, &out) == 1);
  CHECK(out.find("musclefs key rewrite") != std::string::npos);
  out.clear();
  REQUIRE(RunCommand(bin + "key rewrite" + b, &out) == 0);
  CHECK(out.find("1 packs rewritten under key generation 2") != std::string::npos);
  out.clear();
  REQUIRE(RunCommand(bin + "key retire 1" + b, &out) == 0);
  out.clear();
  REQUIRE(RunCommand(bin + "key list" + b, &out) == 0);
  CHECK(out.find("generation 1 key " + old_id->key_id.Hex() + " from-pack 0 packs 0 retired\n") !=
        std::string::npos);
  out.clear();
  REQUIRE(RunCommand(bin + "check" + b, &out) == 0);
  CHECK(out.find("\nok\n") != std::string::npos);
  CHECK(ReadWithKeyFile(base.path, key, a) == old);
  CHECK(ReadWithKeyFile(base.path, key, f) == fresh);
}

TEST_CASE("musclefs key rotate on a passphrase key file asks the new file's passphrase; the old "
          "passphrase file no longer opens") {
  TempDir base;
  std::string bin = std::string(MUSCLEFS_BINARY) + " ";
  std::string b = " --base " + base.path + " 2>&1";
  std::string p1 = base.path + "/p1", p2 = base.path + "/p2";
  REQUIRE(RunCommand("umask 077; echo first-pass > " + p1 + "; echo second-pass > " + p2) == 0);
  std::string out;
  REQUIRE(RunCommand(bin + "init --encrypt --passphrase-file " + p1 + b, &out) == 0);
  out.clear();
  REQUIRE(RunCommand(bin + "key rotate --passphrase-file " + p1 + " --new-passphrase-file " + p2 + b, &out) == 0);
  INFO(out);
  // The key file in force now opens with the new passphrase only.
  out.clear();
  CHECK(RunCommand(bin + "check --passphrase-file " + p1 + b, &out) == 2);
  CHECK(out.find("wrong passphrase") != std::string::npos);
  out.clear();
  CHECK(RunCommand(bin + "check --passphrase-file " + p2 + b, &out) == 0);
  out.clear();
  REQUIRE(RunCommand(bin + "key list --passphrase-file " + p2 + b, &out) == 0);
  CHECK(out.find("generation 2 key") != std::string::npos);
}
