#include "tls/tls_channel.h"

#include <sys/socket.h>

#include <cstring>

#include "tls/ktls.h"
#include "tls/tls_engine.h"

namespace muscle::tls {

namespace {

Status SendAll(int fd, const std::string& b) {
  size_t off = 0;
  while (off < b.size()) {
    ssize_t n = send(fd, b.data() + off, b.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status(errno, std::string("send: ") + strerror(errno));
    }
    off += size_t(n);
  }
  return Status::Ok();
}

class TlsChannel : public p9::Channel {
 public:
  TlsChannel(int fd, TlsContext& ctx) : fd_(fd) {
    engine_ = std::make_unique<TlsEngine>(ctx);
    engine_->on_ciphertext = [this](std::string b) { Flush(b); };
    engine_->on_plaintext = [this](const char* d, size_t n) { plain_.append(d, n); };
  }

  Status Handshake() {
    MUSCLE_RETURN_IF_ERROR(engine_->Start());
    while (!engine_->ready()) MUSCLE_RETURN_IF_ERROR(Pump());
    return send_error_;
  }
  Status Write(const char* data, size_t len) override {
    MUSCLE_RETURN_IF_ERROR(engine_->Write(data, len));
    return send_error_;
  }
  Status Read(char* data, size_t len) override {
    while (plain_.size() - pos_ < len) MUSCLE_RETURN_IF_ERROR(Pump());
    memcpy(data, plain_.data() + pos_, len);
    pos_ += len;
    if (pos_ == plain_.size()) {
      plain_.clear();
      pos_ = 0;
    } else if (pos_ > (1u << 20)) {
      plain_.erase(0, pos_);
      pos_ = 0;
    }
    return Status::Ok();
  }

 private:
  void Flush(const std::string& b) {
    if (send_error_.ok()) send_error_ = SendAll(fd_, b);
  }
  Status Pump() {
    char buf[65536];
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n == 0) return Status(ECONNRESET, "server closed the connection");
    if (n < 0) return errno == EINTR ? Status::Ok() : Status(errno, "recv");
    return engine_->Feed(buf, size_t(n));
  }

  int fd_;
  std::unique_ptr<TlsEngine> engine_;
  std::string plain_;
  size_t pos_ = 0;
  Status send_error_;
};

}  // namespace

namespace {

Status RecvExactly(int fd, char* p, size_t len) {
  while (len > 0) {
    ssize_t n = recv(fd, p, len, 0);
    if (n == 0) return Status(ECONNRESET, "server closed the connection during the TLS handshake");
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status(errno, std::string("recv: ") + strerror(errno));
    }
    p += n;
    len -= size_t(n);
  }
  return Status::Ok();
}

}  // namespace

Status HandshakeForKernel(int fd, TlsContext& ctx, std::string* suite) {
  TlsEngine engine(ctx);
  Status send_error;
  engine.on_ciphertext = [&](std::string b) {
    if (send_error.ok()) send_error = SendAll(fd, b);
  };
  engine.on_plaintext = [](const char*, size_t) {};
  MUSCLE_RETURN_IF_ERROR(engine.Start());
  char rec[kRecordHeader + kMaxRecordCiphertext];
  while (!engine.ready()) {
    MUSCLE_RETURN_IF_ERROR(send_error);
    MUSCLE_RETURN_IF_ERROR(RecvExactly(fd, rec, kRecordHeader));
    size_t n = size_t(uint8_t(rec[3])) << 8 | uint8_t(rec[4]);
    if (n > kMaxRecordCiphertext) return Status(EPROTO, "TLS record too long during the handshake");
    MUSCLE_RETURN_IF_ERROR(RecvExactly(fd, rec + kRecordHeader, n));
    MUSCLE_RETURN_IF_ERROR(engine.Feed(rec, kRecordHeader + n));
  }
  MUSCLE_RETURN_IF_ERROR(send_error);
  if (suite) *suite = engine.suite();
  if (engine.records() != TlsEngine::Records::kUserspace)
    return Status(ENOENT, "the server chose " + engine.suite() +
                              ", which kernel TLS does not take over here");
  auto keys = engine.KeysForKernel();
  if (!keys.ok()) return keys.status();
  Status s = InstallKernelTls(fd, *keys);
  keys->Wipe();
  if (s.ok()) engine.MovedToKernel();
  return s;
}

Result<std::unique_ptr<p9::Channel>> StartTlsChannel(int fd, TlsContext& ctx) {
  auto ch = std::make_unique<TlsChannel>(fd, ctx);
  MUSCLE_RETURN_IF_ERROR(ch->Handshake());
  return std::unique_ptr<p9::Channel>(std::move(ch));
}

}  // namespace muscle::tls
