#include "transport/resumable.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>

#include "crypto/text.h"

namespace muscle::transport {

namespace {
constexpr uint8_t kData = 1, kAck = 2, kPing = 3, kBye = 4;

void PutHeader(char* h, uint8_t type, uint32_t len) {
  h[0] = char(type);
  for (int i = 0; i < 4; i++) h[1 + i] = char(len >> (8 * i));
}

bool IsHexId(const std::string& s) {
  if (s.size() != 32) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}
}  // namespace

std::string FormatHello(const ResumableHello& h) {
  if (!h.resume) return std::string(kResumablePrefix) + "new\n";
  return std::string(kResumablePrefix) + "resume " + h.id + " " + std::to_string(h.received) +
         "\n";
}

Result<ResumableHello> ParseHello(const std::string& line) {
  std::string rest = line.substr(0, sizeof kResumablePrefix - 1) == kResumablePrefix
                         ? line.substr(sizeof kResumablePrefix - 1)
                         : std::string();
  ResumableHello h;
  if (rest == "new") return h;
  if (rest.rfind("resume ", 0) == 0) {
    rest = rest.substr(7);
    size_t sp = rest.find(' ');
    if (sp != std::string::npos && IsHexId(rest.substr(0, sp)) &&
        crypto::ParseNumber(rest.substr(sp + 1), &h.received)) {
      h.resume = true;
      h.id = rest.substr(0, sp);
      return h;
    }
  }
  return Status(EPROTO, "malformed session line");
}

Status ParseHelloAnswer(const std::string& line, std::string* id, uint64_t* received,
                        std::string* features) {
  if (line.rfind("error ", 0) == 0) return Status(ESTALE, line.substr(6));
  if (line.rfind("ok ", 0) == 0) {
    std::string rest = line.substr(3);
    size_t sp = rest.find(' ');
    size_t sp2 = sp == std::string::npos ? sp : rest.find(' ', sp + 1);
    std::string count = sp == std::string::npos ? "" : rest.substr(sp + 1, sp2 - sp - 1);
    if (sp != std::string::npos && IsHexId(rest.substr(0, sp)) &&
        crypto::ParseNumber(count, received)) {
      *id = rest.substr(0, sp);
      if (features) *features = sp2 == std::string::npos ? "" : rest.substr(sp2 + 1);
      return Status::Ok();
    }
  }
  return Status(EPROTO, "the server does not offer resumable sessions (it answered '" +
                            line.substr(0, 40) + "')");
}

std::string NewSessionId() {
  unsigned char b[16];
  size_t got = 0;
  while (got < sizeof b) {
    ssize_t n = getrandom(b + got, sizeof b - got, 0);
    if (n > 0) got += size_t(n);
  }
  return crypto::Hex(b, sizeof b);
}

void ResumableStream::Send(const char* data, size_t len) {
  if (keep_pos_ > (1u << 20) && keep_pos_ * 2 > keep_.size()) {
    keep_.erase(0, keep_pos_);
    keep_pos_ = 0;
  }
  keep_.append(data, len);
  sent_ += len;
  if (attached_) EmitData(data, len);
}

void ResumableStream::EmitData(const char* data, size_t len) {
  while (len > 0) {
    size_t n = std::min(len, kMaxData);
    std::string f(5 + n, '\0');
    PutHeader(f.data(), kData, uint32_t(n));
    memcpy(f.data() + 5, data, n);
    on_wire(std::move(f));
    data += n;
    len -= n;
  }
}

void ResumableStream::EmitControl(uint8_t type, uint64_t value) {
  std::string f(type == kBye ? 5 : 13, '\0');
  PutHeader(f.data(), type, type == kBye ? 0 : 8);
  if (type != kBye)
    for (int i = 0; i < 8; i++) f[5 + i] = char(value >> (8 * i));
  if (type == kAck || type == kPing) ack_sent_ = received_;
  on_wire(std::move(f));
}

void ResumableStream::Ping() {
  if (attached_) EmitControl(kPing, received_);
}

void ResumableStream::Bye() {
  if (attached_) EmitControl(kBye, 0);
}

void ResumableStream::Detach() {
  attached_ = false;
  header_len_ = 0;
  left_ = 0;
  value_len_ = 0;
}

Status ResumableStream::Attach(uint64_t peer_received) {
  if (peer_received < acked_ || peer_received > sent_)
    return Status(EINVAL, "the peer received " + std::to_string(peer_received) +
                              " bytes; this side kept bytes " + std::to_string(acked_) + " to " +
                              std::to_string(sent_));
  MUSCLE_RETURN_IF_ERROR(Acked(peer_received));
  attached_ = true;
  if (sent_ > acked_) EmitData(keep_.data() + keep_pos_, size_t(sent_ - acked_));
  return Status::Ok();
}

Status ResumableStream::Acked(uint64_t n) {
  if (n > sent_) return Status(EPROTO, "acknowledgement beyond the bytes sent");
  if (n <= acked_) return Status::Ok();
  keep_pos_ += size_t(n - acked_);
  acked_ = n;
  if (keep_pos_ == keep_.size()) {
    keep_pos_ = 0;
    if (keep_.capacity() > (4u << 20)) std::string().swap(keep_);
    else keep_.clear();
  }
  return Status::Ok();
}

// Takes bytes of a fixed-size field received in pieces; true once complete.
bool ResumableStream::Gather(char* field, size_t& have, size_t size, const char*& data,
                             size_t& len) {
  size_t n = std::min(len, size - have);
  memcpy(field + have, data, n);
  have += n;
  data += n;
  len -= n;
  return have == size;
}

Status ResumableStream::Feed(const char* data, size_t len) {
  bool acked = false;
  while (len > 0) {
    if (header_len_ < 5) {
      if (!Gather(header_, header_len_, 5, data, len)) break;
      type_ = uint8_t(header_[0]);
      left_ = 0;
      for (int i = 0; i < 4; i++) left_ |= uint32_t(uint8_t(header_[1 + i])) << (8 * i);
      value_len_ = 0;
      if (type_ == kData && (left_ == 0 || left_ > kMaxData))
        return Status(EPROTO, "bad stream data frame length");
      if ((type_ == kAck || type_ == kPing) && left_ != 8)
        return Status(EPROTO, "bad stream acknowledgement frame");
      if (type_ == kBye) {
        if (left_ != 0) return Status(EPROTO, "bad stream end frame");
        header_len_ = 0;
        if (on_bye) on_bye();
        continue;
      }
      if (type_ < kData || type_ > kBye) return Status(EPROTO, "unknown stream frame type");
      continue;
    }
    if (type_ == kData) {
      size_t n = std::min(len, size_t(left_));
      received_ += n;
      left_ -= uint32_t(n);
      if (left_ == 0) header_len_ = 0;
      on_data(data, n);
      data += n;
      len -= n;
      continue;
    }
    if (!Gather(value_, value_len_, 8, data, len)) break;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= uint64_t(uint8_t(value_[i])) << (8 * i);
    header_len_ = 0;
    MUSCLE_RETURN_IF_ERROR(Acked(v));
    acked = true;
    if (type_ == kPing && attached_) EmitControl(kAck, received_);
  }
  if (attached_ && received_ - ack_sent_ >= kAckEvery) EmitControl(kAck, received_);
  if (acked && on_acked) on_acked();
  return Status::Ok();
}

}  // namespace muscle::transport
