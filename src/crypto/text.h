// The text forms the key files (keys.h) and the keyring (keyring.h) share:
// lower-case hex of key bytes and plain decimal numbers, parsed strictly
// (a key file or keyring with anything else is malformed).
//
// Threading: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace muscle::crypto {

// Appends the lower-case hex of n bytes (in place: a key's text needs no
// temporary copy to wipe).
void AppendHex(std::string& s, const unsigned char* p, size_t n);
std::string Hex(const unsigned char* p, size_t n);
// Lower-case hex of exactly out.size() bytes; false for anything else.
bool FromHex(std::string_view hex, std::span<unsigned char> out);
// A decimal number without sign or leading zeros that fits in 64 bits.
bool ParseNumber(std::string_view s, uint64_t* out);

}  // namespace muscle::crypto
