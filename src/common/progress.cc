#include "common/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace muscle {

namespace {

std::string Amount(ProgressUnit unit, double v) {
  char buf[32];
  if (unit == ProgressUnit::kItems) {
    snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    u++;
  }
  if (u == 0)
    snprintf(buf, sizeof buf, "%.0f B", v);
  else
    snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  return buf;
}

std::string Rate(ProgressUnit unit, double per_second) {
  return Amount(unit, per_second) + "/s";
}

std::string Duration(double seconds) {
  long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600)
    snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  else
    snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

}  // namespace

std::string FormatProgress(std::string_view phase, ProgressUnit unit, uint64_t done, uint64_t total,
                           double seconds, bool final) {
  std::string line(phase);
  line += ": ";
  bool timed = seconds >= 0.1;
  double rate = timed ? double(done) / seconds : 0;
  if (final) {
    char took[32];
    snprintf(took, sizeof took, " in %.1f s", seconds);
    line += Amount(unit, double(done)) + took;
    if (timed) line += ", " + Rate(unit, rate);
    return line;
  }
  int percent = total == 0 ? 100 : int(std::min<uint64_t>(done, total) * 100 / total);
  line += Amount(unit, double(done)) + " / " + Amount(unit, double(total)) + " (" +
          std::to_string(percent) + "%)";
  if (timed) line += ", " + Rate(unit, rate);
  if (timed && done > 0 && done < total) line += ", ETA " + Duration(double(total - done) / rate);
  return line;
}

bool ShowProgress(int mode, int fd) {
  if (mode != 0) return mode > 0;
  return isatty(fd) == 1;
}

TerminalProgress::TerminalProgress(FILE* out, Clock now, std::chrono::milliseconds min_redraw)
    : out_(out), now_(now ? std::move(now) : [] { return std::chrono::steady_clock::now(); }),
      min_redraw_(min_redraw) {}

TerminalProgress::~TerminalProgress() {
  if (drawn_) {
    fputc('\n', out_);
    fflush(out_);
  }
}

void TerminalProgress::Begin(std::string_view phase, ProgressUnit unit, uint64_t total) {
  if (open_) End();
  phase_ = phase;
  unit_ = unit;
  total_ = total;
  done_ = 0;
  open_ = true;
  start_ = now_();
  Draw(false);
}

void TerminalProgress::Add(uint64_t n) {
  if (!open_) return;
  done_ += n;
  if (now_() - last_draw_ >= min_redraw_) Draw(false);
}

void TerminalProgress::End() {
  if (!open_) return;
  Draw(true);
  open_ = false;
}

double TerminalProgress::Seconds() const {
  return std::chrono::duration<double>(now_() - start_).count();
}

void TerminalProgress::Draw(bool final) {
  std::string line = FormatProgress(phase_, unit_, done_, total_, Seconds(), final);
  // "\r" back to the start of the line, ESC [ K erases what a longer
  // earlier line left to the right.
  fprintf(out_, "\r%s\x1b[K%s", line.c_str(), final ? "\n" : "");
  fflush(out_);
  last_draw_ = now_();
  redraws_++;
  drawn_ = !final;
}

}  // namespace muscle
