// Log lines: whatever the arguments hold stays one line without terminal
// escapes.
#include <catch2/catch.hpp>

#include "common/log.h"

using muscle::EscapeForLog;

TEST_CASE("log escaping: controls, newlines, ESC, C1 and bad UTF-8 become \\xNN") {
  CHECK(EscapeForLog("plain text 123") == "plain text 123");
  CHECK(EscapeForLog("a\nb") == "a\\x0ab");
  CHECK(EscapeForLog("\r\t") == "\\x0d\\x09");
  CHECK(EscapeForLog("\x1b[31mred") == "\\x1b[31mred");
  CHECK(EscapeForLog("back\\slash") == "back\\slash");
  CHECK(EscapeForLog(std::string("nul\0byte", 8)) == "nul\\x00byte");
  CHECK(EscapeForLog("caf\xc3\xa9 \xe2\x82\xac") == "caf\xc3\xa9 \xe2\x82\xac");  // UTF-8 kept
  CHECK(EscapeForLog("\xc2\x9b") == "\\xc2\\x9b");                           // C1 CSI
  CHECK(EscapeForLog("\xff\xfe") == "\\xff\\xfe");
  CHECK(EscapeForLog("\xc0\xaf") == "\\xc0\\xaf");  // overlong '/'
  CHECK(EscapeForLog("\xe2\x82") == "\\xe2\\x82");  // truncated
  CHECK(EscapeForLog("\x7f") == "\\x7f");
}

TEST_CASE("a quoted peer string cannot end its field") {
  using muscle::QuotedForLog;
  CHECK(QuotedForLog("plain") == "plain");
  CHECK(QuotedForLog("x\" uid=0 aname=\"/etc") == "x\\x22 uid=0 aname=\\x22/etc");
  CHECK(QuotedForLog("a\\b") == "a\\\\b");
}
