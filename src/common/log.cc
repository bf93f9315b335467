#include "common/log.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <ctime>

namespace muscle {
namespace {
std::atomic<bool> g_trace{false};
const char* g_name = "musclefs";
}

std::string EscapeForLog(std::string_view in) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  out.reserve(in.size());
  auto escape = [&](unsigned char c) {
    out += "\\x";
    out += kHex[c >> 4];
    out += kHex[c & 15];
  };
  size_t i = 0;
  while (i < in.size()) {
    unsigned char c = static_cast<unsigned char>(in[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += char(c);
      i++;
      continue;
    }
    // A whole, shortest-form UTF-8 sequence of a printable character
    // passes; C1 controls (U+0080-U+009F), stray and overlong bytes and
    // every ASCII control (newline, ESC) are escaped.
    size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    bool ok = n > 0 && i + n <= in.size();
    for (size_t k = 1; ok && k < n; k++)
      ok = (static_cast<unsigned char>(in[i + k]) & 0xc0) == 0x80;
    if (ok && n == 2 && c == 0xc2 && static_cast<unsigned char>(in[i + 1]) < 0xa0) ok = false;
    if (ok && n == 3 && c == 0xe0 && static_cast<unsigned char>(in[i + 1]) < 0xa0) ok = false;
    if (ok && n == 4 && c == 0xf0 && static_cast<unsigned char>(in[i + 1]) < 0x90) ok = false;
    if (ok && n == 4 && c == 0xf4 && static_cast<unsigned char>(in[i + 1]) > 0x8f) ok = false;
    if (!ok) {
      escape(c);
      i++;
      continue;
    }
    out.append(in.substr(i, n));
    i += n;
  }
  return out;
}

std::string QuotedForLog(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (char c : in) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\x22";
    else out += c;
  }
  return out;
}

void Log(const char* fmt, ...) {
  char line[4096];
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t;
  gmtime_r(&ts.tv_sec, &t);
  int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s: ",
                   t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min,
                   t.tm_sec, ts.tv_nsec / 1000000, g_name);
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
  va_end(ap);
  size_t len = size_t(n) + (m < 0 ? 0 : std::min<size_t>(size_t(m), sizeof line - n - 2));
  // One event, one line: whatever the arguments hold (names, identities
  // and messages from peers included) cannot start another line or send
  // terminal escapes.
  std::string out = std::string(line, size_t(n)) + EscapeForLog(std::string_view(line + n, len - size_t(n)));
  out += '\n';
  ssize_t w = write(2, out.data(), out.size());
  (void)w;
}

void SetTraceEnabled(bool on) { g_trace = on; }
void SetLogName(const char* name) { g_name = name; }
bool TraceEnabled() { return g_trace; }

}  // namespace muscle
