// Encoding, decoding and tracing of 9P frames (9P2000, 9P2000.u, 9P2000.L),
// derived from the field descriptions in messages.h.
//
// All functions are pure and thread-safe. A frame is size[4] type[1] tag[2]
// followed by the message body; size counts the whole frame.
#pragma once

#include <cstdint>
#include <string>

#include "9p/messages.h"

namespace muscle::p9 {

enum class DecodeStatus {
  kOk,
  kMalformed,    // body shorter/longer than its fields, or a bad count
  kUnknownType,  // header fine, type not one musclefs implements
};

struct Decoded {
  DecodeStatus status = DecodeStatus::kMalformed;
  uint8_t type = 0;
  uint16_t tag = kNoTag;
  Message msg;
};

// Decodes one complete frame (including its size field) as a message of
// `dialect` (one Dialect bit): a type the dialect does not have is
// kUnknownType. The frame's size field must equal len; trailing bytes
// after the last field are malformed.
Decoded Decode(const uint8_t* frame, size_t len, Dialect dialect = k9P2000L);

// One stat record as directory reads carry them (size[2] then the fields,
// no outer count), appended to `out`; DecodeStat reads one from r (false,
// and r failed, when it is malformed).
void EncodeStat(const Stat& st, std::string& out);
void EncodeStat(const StatU& st, std::string& out);
class WireReader;
bool DecodeStat(WireReader& r, Stat& st);
bool DecodeStat(WireReader& r, StatU& st);
// The size of EncodeStat's output.
size_t StatSize(const Stat& st);
size_t StatSize(const StatU& st);

// Appends one complete frame for `msg` with `tag` to `out`.
void Encode(uint16_t tag, const Message& msg, std::string& out);

// The wire type of a message, and the dialects (mask) it belongs to.
uint8_t TypeOf(const Message& msg);
uint8_t DialectsOf(const Message& msg);
const char* NameOf(const Message& msg);

// One line describing the message, for -D tracing: "Twalk tag=1 fid=0 ...".
// Payloads are summarised by length, never dumped.
std::string Trace(uint16_t tag, const Message& msg);

}  // namespace muscle::p9
