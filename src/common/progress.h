// Progress of long work (musclefs check, gc, upgrade --encrypt): the work
// reports through a ProgressSink, and a TerminalProgress draws it on a
// terminal as one line redrawn in place (done/total, rate, ETA), then a
// final line per phase.
//
// The work itself never prints: src/store reports to a ProgressSink it is
// given (store.h, Store::progress) and knows nothing of terminals. The
// command decides whether to show anything (ShowProgress): by default only
// when stderr is a terminal, so scripts and tests that read the output see
// exactly what they saw before progress existed.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>

namespace muscle {

enum class ProgressUnit { kBytes, kItems };

// What long work reports to. A phase is Begin, any number of Add, End;
// phases follow one another (never nested). `total` is known before the
// phase starts (from the index), so it is honest: the sum of the Adds of a
// phase that runs to its end is its total. A phase that fails midway may
// stop without End. Called on the thread doing the work, one call at a
// time; the sink is not owned by the work and outlives it.
class ProgressSink {
 public:
  virtual ~ProgressSink() = default;
  // A phase named `phase` (e.g. "check: re-hashing chunks") of `total`
  // units begins.
  virtual void Begin(std::string_view phase, ProgressUnit unit, uint64_t total) = 0;
  // `n` more units of the current phase are done.
  virtual void Add(uint64_t n) = 0;
  // The current phase is done.
  virtual void End() = 0;
};

// The line shown for a phase: "PHASE: DONE / TOTAL (P%), RATE, ETA M:SS"
// while it runs, "PHASE: TOTAL in S.S s, RATE" when `final`. Bytes are in
// binary units (KiB, MiB, GiB), items as counts; the rate is done over
// `seconds` (none shown before a tenth of a second has passed, nor an ETA
// while nothing is done). Pure: tests call it with made-up times.
std::string FormatProgress(std::string_view phase, ProgressUnit unit, uint64_t done, uint64_t total,
                           double seconds, bool final);

// Whether to show progress: forced on (`mode` > 0), forced off (< 0), or
// by default when `fd` is a terminal.
bool ShowProgress(int mode, int fd);

// A ProgressSink drawing on `out` (a terminal): the running line is
// redrawn in place ("\r", the line, erase to its end) at most once per
// `min_redraw` (default 150 ms, so ~7 times a second however often Add is
// called); End draws the final line and a newline. `now` is the clock
// (tests pass a fake one). Not thread-safe: one working thread reports to
// it, as ProgressSink says. `out` is not owned and outlives it.
class TerminalProgress : public ProgressSink {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  explicit TerminalProgress(FILE* out, Clock now = nullptr,
                            std::chrono::milliseconds min_redraw = std::chrono::milliseconds(150));
  // Ends a phase left open (work that failed midway) with a newline, so
  // that what follows starts on a line of its own.
  ~TerminalProgress() override;
  TerminalProgress(const TerminalProgress&) = delete;
  TerminalProgress& operator=(const TerminalProgress&) = delete;

  void Begin(std::string_view phase, ProgressUnit unit, uint64_t total) override;
  void Add(uint64_t n) override;
  void End() override;

  // How many times the running line was drawn (tests).
  uint64_t redraws() const { return redraws_; }

 private:
  void Draw(bool final);
  double Seconds() const;

  FILE* out_;
  Clock now_;
  std::chrono::milliseconds min_redraw_;
  std::string phase_;
  ProgressUnit unit_ = ProgressUnit::kItems;
  uint64_t done_ = 0, total_ = 0, redraws_ = 0;
  bool open_ = false;       // a phase began and has not ended
  bool drawn_ = false;      // its running line is on the terminal
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace muscle
