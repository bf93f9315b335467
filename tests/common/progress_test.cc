// Progress lines (common/progress.h): the formatting of done/total, rate
// and ETA; redraws limited however often work reports; shown by default
// only on a terminal.
#include "common/progress.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <string>

using namespace muscle;
using std::chrono::milliseconds;

namespace {

constexpr uint64_t kMiB = 1 << 20;

// A clock the test moves by hand.
struct FakeClock {
  std::chrono::steady_clock::time_point t{};
  TerminalProgress::Clock Fn() {
    return [this] { return t; };
  }
  void Advance(milliseconds d) { t += d; }
};

// A FILE* writing into memory, and what was written so far.
struct Captured {
  Captured() { f = open_memstream(&buf, &len); }
  ~Captured() {
    fclose(f);
    free(buf);
  }
  std::string Text() {
    fflush(f);
    return std::string(buf, len);
  }
  FILE* f;
  char* buf = nullptr;
  size_t len = 0;
};

}  // namespace

TEST_CASE("progress lines show done/total, percent, rate and ETA in binary units") {
  CHECK(FormatProgress("check: re-hashing chunks", ProgressUnit::kBytes, 10 * kMiB, 40 * kMiB, 5.0, false) ==
        "check: re-hashing chunks: 10.0 MiB / 40.0 MiB (25%), 2.0 MiB/s, ETA 0:15");
  CHECK(FormatProgress("gc", ProgressUnit::kItems, 500, 2000, 10.0, false) ==
        "gc: 500 / 2000 (25%), 50/s, ETA 0:30");
  // Units from bytes to GiB.
  CHECK(FormatProgress("x", ProgressUnit::kBytes, 512, 1536, 1.0, false) ==
        "x: 512 B / 1.5 KiB (33%), 512 B/s, ETA 0:02");
  CHECK(FormatProgress("x", ProgressUnit::kBytes, 3 * 1024 * kMiB, 6 * 1024 * kMiB, 100.0, false) ==
        "x: 3.0 GiB / 6.0 GiB (50%), 30.7 MiB/s, ETA 1:40");
  // An ETA past an hour has hours.
  CHECK(FormatProgress("x", ProgressUnit::kItems, 1, 1000, 10.0, false) == "x: 1 / 1000 (0%), 0/s, ETA 2:46:30");
  // Final: what was done, how long it took, the rate.
  CHECK(FormatProgress("check: re-hashing chunks", ProgressUnit::kBytes, 40 * kMiB, 40 * kMiB, 5.0, true) ==
        "check: re-hashing chunks: 40.0 MiB in 5.0 s, 8.0 MiB/s");
}

TEST_CASE("progress lines show no rate too early, no ETA without a rate, 100% of nothing") {
  CHECK(FormatProgress("x", ProgressUnit::kItems, 5, 10, 0.05, false) == "x: 5 / 10 (50%)");
  CHECK(FormatProgress("x", ProgressUnit::kItems, 0, 10, 2.0, false) == "x: 0 / 10 (0%), 0/s");
  CHECK(FormatProgress("x", ProgressUnit::kItems, 0, 0, 0.0, false) == "x: 0 / 0 (100%)");
  CHECK(FormatProgress("x", ProgressUnit::kItems, 10, 10, 2.0, false) == "x: 10 / 10 (100%), 5/s");
  CHECK(FormatProgress("x", ProgressUnit::kBytes, 0, 0, 0.01, true) == "x: 0 B in 0.0 s");
}

TEST_CASE("a terminal progress line is redrawn in place at most once per interval, then a final line") {
  FakeClock clock;
  Captured out;
  TerminalProgress p(out.f, clock.Fn(), milliseconds(150));
  p.Begin("check: re-hashing chunks", ProgressUnit::kBytes, 1000 * kMiB);
  CHECK(p.redraws() == 1);  // shown at once
  for (int i = 0; i < 1000; i++) p.Add(kMiB / 10);  // many reports, no time passes
  CHECK(p.redraws() == 1);
  clock.Advance(milliseconds(100));
  p.Add(kMiB);
  CHECK(p.redraws() == 1);
  clock.Advance(milliseconds(50));
  p.Add(kMiB);
  CHECK(p.redraws() == 2);
  // A second of reports every millisecond: redrawn at 300, 450, ...,
  // 1050 ms (6 times), not 1000 times.
  for (int i = 0; i < 1000; i++) {
    clock.Advance(milliseconds(1));
    p.Add(kMiB / 2);
  }
  CHECK(p.redraws() == 8);
  std::string running = out.Text();
  CHECK(running.find('\n') == std::string::npos);  // redrawn in place
  CHECK(running.rfind("\rcheck: re-hashing chunks: ", 0) == 0);
  CHECK(running.find("\x1b[K") != std::string::npos);
  p.End();
  std::string all = out.Text();
  CHECK(all.size() > running.size());
  CHECK(all.substr(running.size()) ==
        "\rcheck: re-hashing chunks: 602.0 MiB in 1.1 s, 523.5 MiB/s\x1b[K\n");
}

TEST_CASE("a progress line left open by failed work ends with a newline") {
  FakeClock clock;
  Captured out;
  {
    TerminalProgress p(out.f, clock.Fn());
    p.Begin("gc: copying live chunks", ProgressUnit::kBytes, 10);
    p.Add(3);
  }
  std::string text = out.Text();
  CHECK(text.find("gc: copying live chunks: 0 B / 10 B (0%)") != std::string::npos);
  CHECK(text.back() == '\n');
  CHECK(std::count(text.begin(), text.end(), '\n') == 1);
}

TEST_CASE("progress is shown by default only on a terminal, and can be forced either way") {
  int pipe_fds[2];
  REQUIRE(pipe(pipe_fds) == 0);
  CHECK_FALSE(ShowProgress(0, pipe_fds[1]));
  CHECK(ShowProgress(1, pipe_fds[1]));
  int null_fd = open("/dev/null", O_WRONLY);
  REQUIRE(null_fd >= 0);
  CHECK_FALSE(ShowProgress(0, null_fd));
  // A pseudo-terminal is a terminal.
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  REQUIRE(master >= 0);
  REQUIRE(grantpt(master) == 0);
  REQUIRE(unlockpt(master) == 0);
  int pty = open(ptsname(master), O_RDWR | O_NOCTTY);
  REQUIRE(pty >= 0);
  CHECK(ShowProgress(0, pty));
  CHECK_FALSE(ShowProgress(-1, pty));
  for (int fd : {pipe_fds[0], pipe_fds[1], null_fd, master, pty}) close(fd);
}
