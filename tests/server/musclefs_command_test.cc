// The musclefs command as an administrator runs it: the listeners and file
// modes `musclefs serve` uses when none are asked for, and what `musclefs
// upgrade` says of the store it upgraded.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

#include "9p/client.h"
#include "store/store.h"
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
