// Encoding, decoding and tracing of 9P2000.L frames, derived from the field
// descriptions in messages.h.
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

// Decodes one complete frame (including its size field). The frame's size
// field must equal len; trailing bytes after the last field are malformed.
Decoded Decode(const uint8_t* frame, size_t len);

// Appends one complete frame for `msg` with `tag` to `out`.
void Encode(uint16_t tag, const Message& msg, std::string& out);

// The wire type of a message.
uint8_t TypeOf(const Message& msg);
const char* NameOf(const Message& msg);

// One line describing the message, for -D tracing: "Twalk tag=1 fid=0 ...".
// Payloads are summarised by length, never dumped.
std::string Trace(uint16_t tag, const Message& msg);

}  // namespace muscle::p9
