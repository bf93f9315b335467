#include "transport/connection.h"

#include <cstring>

#include "common/log.h"

namespace muscle::transport {

namespace {
struct WriteReq {
  uv_write_t req;
  std::string data;
  Connection* conn;
};
}  // namespace

Connection::Connection(uv_stream_t* stream, std::string peer, p9::FileSystem& fs,
                       p9::LockTable& locks, p9::SessionOptions options)
    : stream_(stream), peer_(std::move(peer)) {
  stream_->data = this;
  options.peer = peer_;
  session_ = std::make_shared<p9::Session>(
      fs, locks, std::move(options), [this](std::string f) { Send(std::move(f)); },
      [this](const char* why) { Close(why); });
  session_->on_reply = [this] {
    UpdateReading();
    MaybeFinishDrain();
  };
}

Connection::~Connection() {
  if (stream_->type == UV_TCP)
    delete reinterpret_cast<uv_tcp_t*>(stream_);
  else
    delete reinterpret_cast<uv_pipe_t*>(stream_);
}

void Connection::Start() { UpdateReading(); }

void Connection::UpdateReading() {
  if (closing_) return;
  bool want = !draining_ && session_->in_flight() < kMaxInFlight &&
              uv_stream_get_write_queue_size(stream_) < kMaxQueuedBytes;
  if (want == reading_) return;
  reading_ = want;
  if (!want) {
    uv_read_stop(stream_);
    return;
  }
  uv_read_start(
      stream_,
      [](uv_handle_t* h, size_t, uv_buf_t* buf) {
        auto* c = static_cast<Connection*>(h->data);
        // Read straight into the frame buffer: at least 64 KiB free.
        size_t want = c->in_used_ + 65536;
        if (c->in_.size() < want) c->in_.resize(std::max(want, c->in_.size() * 2));
        buf->base = c->in_.data() + c->in_used_;
        buf->len = c->in_.size() - c->in_used_;
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t*) {
        static_cast<Connection*>(s->data)->OnRead(n);
      });
}

void Connection::OnRead(ssize_t n) {
  if (n == 0) return;
  if (n < 0) {
    Close(n == UV_EOF ? nullptr : uv_strerror(int(n)));
    return;
  }
  in_used_ += size_t(n);
  ProcessFrames();
}

void Connection::ProcessFrames() {
  size_t pos = 0;
  while (!closing_ && in_used_ - pos >= 4) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(in_.data()) + pos;
    uint32_t size = uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 |
                    uint32_t(p[3]) << 24;
    if (size < p9::kHeaderSize) {
      Close("frame size below 9P header size");
      return;
    }
    if (size > session_->max_frame()) {
      Close("frame larger than msize");
      return;
    }
    if (in_used_ - pos < size) {
      // Make room for the whole frame so the next read can complete it.
      if (in_.size() < pos + size) in_.resize(pos + size);
      break;
    }
    session_->OnFrame(p, size);
    pos += size;
  }
  if (closing_) return;
  if (pos) {
    memmove(in_.data(), in_.data() + pos, in_used_ - pos);
    in_used_ -= pos;
  }
  // Do not keep a 1 MiB buffer around for an idle connection.
  if (in_used_ == 0 && in_.size() > (256u << 10)) std::string().swap(in_);
  UpdateReading();
}

void Connection::Send(std::string frame) {
  if (closing_) return;
  auto* w = new WriteReq;
  w->data = std::move(frame);
  w->conn = this;
  uv_buf_t buf = uv_buf_init(w->data.data(), unsigned(w->data.size()));
  writes_pending_++;
  int rc = uv_write(&w->req, stream_, &buf, 1, [](uv_write_t* req, int status) {
    auto* w = reinterpret_cast<WriteReq*>(req);
    Connection* c = w->conn;
    delete w;
    c->writes_pending_--;
    if (status < 0 && status != UV_ECANCELED) c->Close(uv_strerror(status));
    c->UpdateReading();
    c->MaybeFinishDrain();
  });
  if (rc < 0) {
    writes_pending_--;
    delete w;
    Close(uv_strerror(rc));
  }
}

void Connection::Drain() {
  draining_ = true;
  if (reading_) {
    uv_read_stop(stream_);
    reading_ = false;
  }
  MaybeFinishDrain();
}

void Connection::MaybeFinishDrain() {
  if (draining_ && !closing_ && session_->in_flight() == 0 && writes_pending_ == 0)
    Close(nullptr);
}

void Connection::Close(const char* why) {
  if (!closing_) {
    closing_ = true;
    if (why) Log("%s: closing connection: %s", peer_.c_str(), why);
    else if (TraceEnabled()) Log("%s: disconnected", peer_.c_str());
    session_->Shutdown();
    if (reading_) uv_read_stop(stream_);
    reading_ = false;
  }
  auto* h = reinterpret_cast<uv_handle_t*>(stream_);
  if (uv_is_closing(h)) return;
  uv_close(h, [](uv_handle_t* h) {
    auto* c = static_cast<Connection*>(h->data);
    if (c->on_closed) c->on_closed(c);
    delete c;
  });
}

}  // namespace muscle::transport
