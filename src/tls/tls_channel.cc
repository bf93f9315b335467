#include "tls/tls_channel.h"

#include <sys/socket.h>

#include <cstring>

#include "tls/tls_engine.h"

namespace muscle::tls {

namespace {

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
    size_t off = 0;
    while (off < b.size() && send_error_.ok()) {
      ssize_t n = send(fd_, b.data() + off, b.size() - off, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        send_error_ = Status(errno, "send");
        return;
      }
      off += size_t(n);
    }
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

Result<std::unique_ptr<p9::Channel>> StartTlsChannel(int fd, TlsContext& ctx) {
  auto ch = std::make_unique<TlsChannel>(fd, ctx);
  MUSCLE_RETURN_IF_ERROR(ch->Handshake());
  return std::unique_ptr<p9::Channel>(std::move(ch));
}

}  // namespace muscle::tls
