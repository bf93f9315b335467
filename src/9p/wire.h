// Little-endian 9P wire primitives: a bounds-checked reader with a sticky
// error flag and an appending writer.
//
// WireReader never reads past the end of the buffer it was given. Once any
// read fails (not enough bytes, a length field larger than what remains, a
// count above a limit), ok() stays false and every later read returns zero
// values, so a decoder checks ok() once at the end of a message. The reader
// does not own the buffer; the buffer must outlive every string_view it
// hands out. Neither class is thread-safe; use one per thread.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace muscle::p9 {

class WireReader {
 public:
  WireReader(const uint8_t* data, size_t len) : pos_(data), end_(data + len) {}

  bool ok() const { return ok_; }
  size_t remaining() const { return ok_ ? size_t(end_ - pos_) : 0; }
  void fail() { ok_ = false; }

  uint8_t u8() { return uint8_t(take(1)); }
  uint16_t u16() { return uint16_t(take(2)); }
  uint32_t u32() { return uint32_t(take(4)); }
  uint64_t u64() { return take(8); }

  // A 9P string: size[2] followed by that many bytes (not NUL-terminated).
  std::string_view str() {
    uint16_t n = u16();
    return bytes(n);
  }

  // Raw bytes of a known length.
  std::string_view bytes(size_t n) {
    if (!ok_ || size_t(end_ - pos_) < n) {
      ok_ = false;
      return {};
    }
    std::string_view v(reinterpret_cast<const char*>(pos_), n);
    pos_ += n;
    return v;
  }

 private:
  uint64_t take(int n) {
    if (!ok_ || end_ - pos_ < n) {
      ok_ = false;
      return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= uint64_t(pos_[i]) << (8 * i);
    pos_ += n;
    return v;
  }

  const uint8_t* pos_;
  const uint8_t* end_;
  bool ok_ = true;
};

// Appends little-endian fields to a std::string used as a byte buffer.
class WireWriter {
 public:
  explicit WireWriter(std::string& out) : out_(out) {}

  void u8(uint8_t v) { put(v, 1); }
  void u16(uint16_t v) { put(v, 2); }
  void u32(uint32_t v) { put(v, 4); }
  void u64(uint64_t v) { put(v, 8); }
  void str(std::string_view s) {
    // Strings longer than 65535 bytes cannot be represented; callers
    // validate lengths before encoding, so truncate defensively.
    size_t n = s.size() > 0xffff ? 0xffff : s.size();
    u16(uint16_t(n));
    out_.append(s.data(), n);
  }
  void bytes(std::string_view s) { out_.append(s.data(), s.size()); }
  size_t size() const { return out_.size(); }
  // Overwrites a u16 already written at byte offset `at`.
  void patch_u16(size_t at, uint16_t v) {
    out_[at] = char(v & 0xff);
    out_[at + 1] = char(v >> 8);
  }
  // Overwrites a u32 already written at byte offset `at`.
  void patch_u32(size_t at, uint32_t v) {
    for (int i = 0; i < 4; i++) out_[at + i] = char((v >> (8 * i)) & 0xff);
  }

 private:
  void put(uint64_t v, int n) {
    char b[8];
    for (int i = 0; i < n; i++) b[i] = char((v >> (8 * i)) & 0xff);
    out_.append(b, n);
  }
  std::string& out_;
};

}  // namespace muscle::p9
