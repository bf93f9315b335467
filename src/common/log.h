// Logging to stderr with a UTC timestamp. Thread-safe (one write(2) per
// line). Debug tracing (-D) is a global switch set once at start-up.
//
// Every line is escaped as a whole (EscapeForLog): peer-provided text in
// any argument (unames, anames, PSK identities, file names, error texts)
// can neither start a new line nor carry terminal escapes, so no call site
// can forget it.
#pragma once

#include <string>
#include <string_view>

namespace muscle {

void Log(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// Printable ASCII and well-formed UTF-8 of printable characters stay;
// every other byte (controls, newline, ESC, C1, stray or overlong UTF-8)
// becomes \xNN. Log applies it to every line.
std::string EscapeForLog(std::string_view in);
// For a peer string shown between double quotes: a backslash doubles and a
// quote becomes \x22, so the string cannot end its field and fake another.
std::string QuotedForLog(std::string_view in);
void SetTraceEnabled(bool on);
// The program name at the start of each line (default "musclefs"); set
// once at start-up, before any other thread logs.
void SetLogName(const char* name);
bool TraceEnabled();

}  // namespace muscle
