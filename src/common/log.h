// Logging to stderr with a UTC timestamp. Thread-safe (one write(2) per
// line). Debug tracing (-D) is a global switch set once at start-up.
#pragma once

#include <string>

namespace muscle {

void Log(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void SetTraceEnabled(bool on);
// The program name at the start of each line (default "musclefs"); set
// once at start-up, before any other thread logs.
void SetLogName(const char* name);
bool TraceEnabled();

}  // namespace muscle
