// Progress of musclefs check, gc and upgrade --encrypt as an administrator
// sees it: on a terminal (a pseudo-terminal from script(1)) a line redrawn
// in place on stderr; with stderr a file or a pipe, nothing at all, so the
// output scripts read is what it was before; --progress and --no-progress
// force it either way.
#include <catch2/catch.hpp>
#include <string>

#include "store/store.h"
#include "tests/store/store_test_util.h"

using namespace muscle;
using namespace muscle::test;

namespace {

// A store in `base` holding 16 MiB of chunks: a file of 8 MiB in a
// snapshot, one of 8 MiB after it, and between them 24 MiB written and
// deleted, so that the first pack (32 MiB) is mostly dead: gc compacts it.
void MakeStore(const std::string& base) {
  auto s = OpenStore(base + "/store.db");
  WriteFile(*s, "f0", RandomBytes(8 << 20, 70));
  REQUIRE(s->TakeSnapshot("one").ok());
  WriteFile(*s, "f1", RandomBytes(24 << 20, 71));
  WriteFile(*s, "f2", RandomBytes(8 << 20, 72));
  REQUIRE(s->Unlink(store::kRootIno, "f1", false).ok());
  REQUIRE(s->Sync(true).ok());
}

std::string Musclefs(const std::string& args) { return std::string(MUSCLEFS_BINARY) + " " + args; }

// Runs `cmd` with stdout and stderr on a pseudo-terminal (script -q: no
// header; -e: its exit status); what the terminal showed.
std::string OnTerminal(const std::string& cmd, int* rc) {
  std::string out;
  *rc = RunCommand("script -qec '" + cmd + "' /dev/null", &out);
  return out;
}

}  // namespace

TEST_CASE("musclefs check shows progress on a terminal, none when stderr is not one") {
  TempDir base;
  MakeStore(base.path);
  std::string err = base.path + "/err";
  // Not a terminal: stdout as before, nothing on stderr.
  std::string quiet;
  REQUIRE(RunCommand(Musclefs("check --base " + base.path + " 2>" + err), &quiet) == 0);
  INFO(quiet);
  CHECK(quiet.find("\nok\n") != std::string::npos);
  CHECK(ReadText(err).empty());
  // --no-progress: the same.
  std::string off;
  REQUIRE(RunCommand(Musclefs("check --no-progress --base " + base.path + " 2>" + err), &off) == 0);
  CHECK(off == quiet);
  CHECK(ReadText(err).empty());
  // --progress: on stderr even into a file, stdout unchanged.
  std::string forced;
  REQUIRE(RunCommand(Musclefs("check --progress --base " + base.path + " 2>" + err), &forced) == 0);
  CHECK(forced == quiet);
  std::string shown = ReadText(err);
  INFO(shown);
  CHECK(shown.find("\rcheck: re-hashing chunks: ") != std::string::npos);
  CHECK(shown.find("check: re-hashing chunks: 16.0 MiB in ") != std::string::npos);
  CHECK(shown.find("check: decoding tree objects: ") != std::string::npos);
  // A real terminal: shown by default, not with --no-progress.
  int rc = -1;
  std::string tty = OnTerminal(Musclefs("check --base " + base.path), &rc);
  INFO(tty);
  CHECK(rc == 0);
  CHECK(tty.find("check: re-hashing chunks: 16.0 MiB in ") != std::string::npos);
  CHECK(tty.find("ok") != std::string::npos);
  std::string tty_off = OnTerminal(Musclefs("check --no-progress --base " + base.path), &rc);
  INFO(tty_off);
  CHECK(rc == 0);
  CHECK(tty_off.find("re-hashing") == std::string::npos);
  CHECK(tty_off.find("ok") != std::string::npos);
}

TEST_CASE("musclefs gc and upgrade --encrypt show progress on a terminal, none when stderr is not one") {
  TempDir base, copy;
  MakeStore(base.path);
  REQUIRE(RunCommand("cp -a " + base.path + "/. " + copy.path + "/") == 0);
  std::string err = base.path + "/err";
  std::string quiet;
  REQUIRE(RunCommand(Musclefs("gc --base " + copy.path + " 2>" + err), &quiet) == 0);
  INFO(quiet);
  CHECK(quiet.find("packs compacted") != std::string::npos);
  CHECK(ReadText(err).empty());
  int rc = -1;
  std::string tty = OnTerminal(Musclefs("gc --base " + base.path), &rc);
  INFO(tty);
  CHECK(rc == 0);
  CHECK(tty.find("gc: copying live chunks: ") != std::string::npos);
  CHECK(tty.find("gc: punching dead records: ") != std::string::npos);
  CHECK(tty.find("packs compacted") != std::string::npos);

  std::string enc_quiet;
  REQUIRE(RunCommand(Musclefs("upgrade --encrypt --unattended --base " + copy.path + " 2>" + err), &enc_quiet) ==
          0);
  CHECK(ReadText(err).find("sealing chunks") == std::string::npos);
  std::string enc = OnTerminal(Musclefs("upgrade --encrypt --unattended --base " + base.path), &rc);
  INFO(enc);
  CHECK(rc == 0);
  CHECK(enc.find("upgrade --encrypt: sealing chunks: 16.0 MiB in ") != std::string::npos);
  CHECK(enc.find("upgrade --encrypt: re-encoding tree objects: ") != std::string::npos);
  CHECK(enc.find("converted, encrypted at rest") != std::string::npos);
}
