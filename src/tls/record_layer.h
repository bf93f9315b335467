// The TLS 1.2 record layer for ChaCha20-Poly1305 (RFC 7905), on OpenSSL's
// libcrypto, used once mbedTLS has completed the handshake.
//
// mbedTLS 2.28 seals records at ~300 MB/s per core; libcrypto's
// ChaCha20-Poly1305 does ~1.5-3 GB/s on the same CPU (libsodium ~0.5-1.1:
// tools/bench/aead_bench.cc measures both). So mbedTLS keeps the handshake
// (ECDHE-PSK, PSK callbacks, tickets) and hands the traffic keys and the
// sequence numbers over to a RecordLayer, which then does what the TLS 1.2
// record protocol asks after the handshake:
//   - application data in records of at most 16 KiB of plaintext, each
//     sealed with nonce = IV xor sequence number and additional data
//     seq || type || version || length (RFC 5246 6.2.3.3, RFC 7905);
//   - records received must be 0x0303, at most 16 KiB + 256 bytes of
//     ciphertext and open under the next sequence number: a tampered,
//     truncated, replayed or reordered record fails (bad_record_mac);
//   - close_notify ends the stream; any other alert is fatal; handshake
//     records (renegotiation) and ChangeCipherSpec after the handshake are
//     refused (unexpected_message), as mbedTLS is configured to do.
// On a fatal error the record layer queues the alert it owes the peer and
// reports the error; nothing is accepted after that.
//
// The same keys and sequence numbers can instead be installed in the
// kernel (ktls.h), which then seals and opens records on the socket.
//
// Threading: one RecordLayer belongs to one connection and is used on one
// thread. Key material is wiped when it is destroyed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/result.h"

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;

namespace muscle::tls {

constexpr size_t kMaxRecordPlaintext = 16384;
constexpr size_t kRecordHeader = 5;
constexpr size_t kAeadTag = 16;
constexpr size_t kMaxRecordCiphertext = kMaxRecordPlaintext + 256;

enum ContentType : uint8_t {
  kChangeCipherSpec = 20,
  kAlert = 21,
  kHandshake = 22,
  kApplicationData = 23,
};

enum AlertCode : uint8_t {
  kCloseNotify = 0,
  kUnexpectedMessage = 10,
  kBadRecordMac = 20,
  kRecordOverflow = 22,
  kDecodeError = 50,
  kInternalError = 80,
};

// One direction's traffic secrets, as the handshake left them.
struct DirectionKeys {
  unsigned char key[32];
  unsigned char iv[12];
  uint64_t seq = 0;  // sequence number of the next record
  void Wipe();
};

struct TrafficKeys {
  DirectionKeys tx;  // what this side sends
  DirectionKeys rx;  // what this side receives
  void Wipe() {
    tx.Wipe();
    rx.Wipe();
  }
};

// Seals records for one direction.
class RecordSealer {
 public:
  explicit RecordSealer(const DirectionKeys& keys);
  ~RecordSealer();
  RecordSealer(const RecordSealer&) = delete;
  RecordSealer& operator=(const RecordSealer&) = delete;

  // Appends to `out` the records carrying `len` bytes of `type`, at most
  // 16 KiB of plaintext each (one empty record when len is 0).
  Status Seal(uint8_t type, const char* data, size_t len, std::string* out);
  uint64_t seq() const { return keys_.seq; }
  const DirectionKeys& keys() const { return keys_; }

 private:
  Status SealOne(uint8_t type, const unsigned char* data, size_t len, unsigned char* out);
  DirectionKeys keys_;
  EVP_CIPHER_CTX* ctx_ = nullptr;
};

// Opens records for one direction.
class RecordOpener {
 public:
  explicit RecordOpener(const DirectionKeys& keys);
  ~RecordOpener();
  RecordOpener(const RecordOpener&) = delete;
  RecordOpener& operator=(const RecordOpener&) = delete;

  // Looks at the record starting at `data`. Returns 0 when fewer than a
  // whole record's bytes are there (nothing consumed); otherwise opens it
  // (plaintext to `plain`, its content type to `type`) and returns the
  // bytes it took. An error is fatal; `alert` then holds the alert owed to
  // the peer (or stays -1 when none is: the peer's own alert).
  Result<size_t> Open(const char* data, size_t len, uint8_t* type, std::string* plain,
                      int* alert);
  uint64_t seq() const { return keys_.seq; }
  const DirectionKeys& keys() const { return keys_; }

 private:
  DirectionKeys keys_;
  EVP_CIPHER_CTX* ctx_ = nullptr;
};

// A connection's record layer after the handshake: seals what this side
// sends, opens what it receives, and interprets alerts and stray
// handshake records.
class RecordLayer {
 public:
  explicit RecordLayer(const TrafficKeys& keys) : sealer_(keys.tx), opener_(keys.rx) {}

  // Seals application data into `out`.
  Status Write(const char* data, size_t len, std::string* out) {
    if (failed_) return Status(EPROTO, "TLS connection failed");
    return sealer_.Seal(kApplicationData, data, len, out);
  }
  // Opens every whole record in [data, data+len) and appends their
  // application data to `plain`; returns the bytes consumed (a partial
  // record at the end is left for the next call). A close_notify from the
  // peer is ECONNRESET; every other failure EPROTO, with the alert owed to
  // the peer sealed into `out`.
  Result<size_t> Read(const char* data, size_t len, std::string* plain, std::string* out);
  // Seals a close_notify into `out` (once).
  void CloseNotify(std::string* out);

  // The keys and next sequence numbers, to hand the connection to the
  // kernel (ktls.h); the caller wipes them.
  TrafficKeys Export() const { return TrafficKeys{sealer_.keys(), opener_.keys()}; }
  bool failed() const { return failed_; }
  uint64_t tx_seq() const { return sealer_.seq(); }
  uint64_t rx_seq() const { return opener_.seq(); }

 private:
  void SendAlert(uint8_t level, uint8_t code, std::string* out);
  RecordSealer sealer_;
  RecordOpener opener_;
  bool failed_ = false;
  bool closed_ = false;
  bool peer_closed_ = false;  // its close_notify came: nothing more is read
};

}  // namespace muscle::tls
