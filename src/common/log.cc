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
  line[len++] = '\n';
  ssize_t w = write(2, line, len);
  (void)w;
}

void SetTraceEnabled(bool on) { g_trace = on; }
void SetLogName(const char* name) { g_name = name; }
bool TraceEnabled() { return g_trace; }

}  // namespace muscle
