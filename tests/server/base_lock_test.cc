// One server per base directory and per store; a pid file left by a crash
// names nobody, so `muscle keys` never signals a stranger.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <string>

#include "tests/server/server_harness.h"

using namespace muscle::test;

namespace {
std::string Muscle() {
  std::string fs = MUSCLEFS_BINARY;
  return fs.substr(0, fs.rfind('/')) + "/muscle";
}
}  // namespace

TEST_CASE("a second server on the same base or store, and check on a live store, are refused") {
  TempDir dir;
  std::string base = dir.path + "/base";
  std::string ep = "unix:" + dir.path + "/sock";
  ChildServer first({"--base", base, "--listen", ep}, ep);
  std::string out;
  int rc = RunCommand(std::string(MUSCLEFS_BINARY) + " serve --base " + base + " --listen unix:" +
                          dir.path + "/other.sock 2>&1",
                      &out);
  CHECK(rc != 0);
  CHECK(out.find("held by a running musclefs (pid " + std::to_string(first.pid()) + ")") !=
        std::string::npos);
  // Another base, the same store.
  rc = RunCommand(std::string(MUSCLEFS_BINARY) + " serve --base " + dir.path + "/base2 --store " +
                      base + "/store.db --listen unix:" + dir.path + "/third.sock 2>&1",
                  &out);
  CHECK(rc != 0);
  CHECK(out.find("is in use") != std::string::npos);
  rc = RunCommand(std::string(MUSCLEFS_BINARY) + " check --base " + base + " 2>&1", &out);
  CHECK(rc != 0);
  CHECK(out.find("is in use") != std::string::npos);
  first.Kill(SIGTERM);
  first.Wait();
  rc = RunCommand(std::string(MUSCLEFS_BINARY) + " check --base " + base + " 2>&1", &out);
  CHECK(rc == 0);
}

TEST_CASE("after kill -9, muscle keys signals no process named by the stale pid file") {
  TempDir dir;
  std::string base = dir.path + "/base";
  std::string ep = "unix:" + dir.path + "/sock";
  {
    ChildServer srv({"--base", base, "--listen", ep}, ep);
    srv.Kill(SIGKILL);
    srv.Wait();
  }
  // The pid file survived; its pid now belongs to someone else.
  pid_t stranger = fork();
  if (stranger == 0) {
    pause();
    _exit(0);
  }
  {
    std::ofstream pf(base + "/musclefs.pid");
    pf << stranger << "\n";
  }
  std::string out;
  int rc = RunCommand(Muscle() + " keys add laptop --base " + base + " 2>&1", &out);
  CHECK(rc == 0);
  CHECK(out.find("no musclefs is running") != std::string::npos);
  usleep(200000);
  int st = 0;
  CHECK(waitpid(stranger, &st, WNOHANG) == 0);  // still alive: not signalled
  kill(stranger, SIGKILL);
  waitpid(stranger, &st, 0);
  // And a live server is told.
  ChildServer srv({"--base", base, "--listen", ep}, ep);
  rc = RunCommand(Muscle() + " keys add phone --base " + base + " 2>&1", &out);
  CHECK(rc == 0);
  CHECK(out.find("told the running musclefs (pid " + std::to_string(srv.pid()) + ")") !=
        std::string::npos);
}
