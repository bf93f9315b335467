// A byte stream that outlives the connection under it (after Plan 9's
// aan(8)): the relay and the server number the bytes each sends, keep
// what the other has not acknowledged, and after a redial resend exactly
// what the other did not receive. Nothing is lost and nothing arrives
// twice, so the 9P conversation above it never knows the network dropped.
//
// The wire, inside TLS, after the handshake:
//   relay:  "muscle-resumable new\n"  or
//           "muscle-resumable resume ID RECEIVED\n"
//   server: "ok ID RECEIVED[ FEATURES]\n"  or  "error TEXT\n" (then it closes)
// ID is 32 hex digits, RECEIVED the count of stream bytes that side has
// received so far (0 for a new session). A 9P frame can never begin so:
// its first four bytes would give a size of 1.6 GB. Then frames, both
// ways: a type byte, a 4-byte little-endian length, the payload:
//   DATA (1)  the next bytes of the stream (at most kMaxData)
//   ACK  (2)  8 bytes: how many stream bytes the sender has received
//   PING (3)  8 bytes, as ACK; the receiver answers with an ACK
//   BYE  (4)  no payload: the stream ends here (not a network drop)
//
// A ResumableStream is one side's state machine, with no I/O: bytes for
// the wire go out through on_wire while attached; received payload comes
// out through on_data, in order. Threading: one thread (its loop).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/result.h"

namespace muscle::transport {

constexpr const char kResumablePrefix[] = "muscle-resumable ";
constexpr size_t kMaxHelloLine = 128;
// What this server offers beyond the stream, in its "ok" answers
// (musclefs(8) PROTOCOL): "once", it answers Tonce; "locks", it keeps a
// grace period after a restart in which relays reclaim their locks.
constexpr char kServerFeatures[] = "once locks";

struct ResumableHello {
  bool resume = false;   // false: a new session
  std::string id;        // resume only
  uint64_t received = 0;  // resume only
};
std::string FormatHello(const ResumableHello& h);
// The line without its newline.
Result<ResumableHello> ParseHello(const std::string& line);
// "ok ID RECEIVED[ FEATURE...]" -> id, received, the features (words
// after RECEIVED, space-separated; "once": the server answers Tonce,
// musclefs(8) PROTOCOL).
Status ParseHelloAnswer(const std::string& line, std::string* id, uint64_t* received,
                        std::string* features = nullptr);
// 32 hex digits from the system's random source.
std::string NewSessionId();

class ResumableStream {
 public:
  static constexpr size_t kMaxData = 256 * 1024;
  // An ACK goes out once this much arrived since the last one.
  static constexpr uint64_t kAckEvery = 256 * 1024;

  std::function<void(std::string wire)> on_wire;
  std::function<void(const char* data, size_t len)> on_data;
  // The peer acknowledged bytes: room in the unacknowledged buffer.
  std::function<void()> on_acked;
  // The peer said BYE.
  std::function<void()> on_bye;

  // Keeps the bytes until acknowledged; sends them now if attached.
  void Send(const char* data, size_t len);
  // Received bytes of frames. An error (a malformed frame, an ACK beyond
  // what was sent) is fatal for the stream.
  Status Feed(const char* data, size_t len);
  // Sends PING (attached only).
  void Ping();
  // Sends BYE (attached only).
  void Bye();
  // The connection is gone: nothing goes out until Attach; a frame
  // half received is forgotten (the peer resends from `received`).
  void Detach();
  // A new connection: the peer has received `peer_received` bytes; resends
  // the rest. EINVAL when that is outside what is kept.
  Status Attach(uint64_t peer_received);

  bool attached() const { return attached_; }
  uint64_t received() const { return received_; }
  uint64_t sent() const { return sent_; }
  // Bytes sent (or waiting to be) and not yet acknowledged.
  size_t unacked() const { return size_t(sent_ - acked_); }

 private:
  void EmitData(const char* data, size_t len);
  void EmitControl(uint8_t type, uint64_t value);
  Status Acked(uint64_t n);
  static bool Gather(char* field, size_t& have, size_t size, const char*& data, size_t& len);

  bool attached_ = false;
  uint64_t sent_ = 0;      // stream bytes given to Send
  uint64_t acked_ = 0;     // acknowledged by the peer
  uint64_t received_ = 0;  // stream bytes handed to on_data
  uint64_t ack_sent_ = 0;  // the last count we acknowledged
  // Bytes [acked_, sent_) of the stream, from keep_[keep_pos_].
  std::string keep_;
  size_t keep_pos_ = 0;
  // The frame being received.
  char header_[5];
  size_t header_len_ = 0;
  uint8_t type_ = 0;
  uint32_t left_ = 0;  // payload bytes of the current frame still to come
  char value_[8];
  size_t value_len_ = 0;
};

}  // namespace muscle::transport
