// Test rigs for the relay's reconnect tests: a loopback proxy that cuts,
// refuses or stalls connections on demand, and `muscle relay --reconnect`
// (the Relay class) on a loop thread of its own.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <mutex>
#include <thread>

#include "auth/keys.h"
#include "transport/relay.h"

namespace muscle::test {

const std::string kHex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

// A TCP socket bound to 127.0.0.1 on a port the system picks (*port).
inline int BindLoopback(int* port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

// A loopback TCP proxy to `port`. Cut() resets every connection it
// carries; SetRefusing(true) makes it close new connections at once;
// SetStalled(true) stops it forwarding anything (a path that went dead
// without a reset).
class CutProxy {
 public:
  explicit CutProxy(int to_port) : to_port_(to_port) {
    lfd_ = BindLoopback(&port_);
    listen(lfd_, 16);
    thread_ = std::thread([this] { Run(); });
  }
  ~CutProxy() {
    stop_ = true;
    thread_.join();
    Cut();
    close(lfd_);
  }
  int port() const { return port_; }
  void Cut() {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [a, b] : pairs_) {
      linger lg{1, 0};  // a reset, as a dropped route ends in
      setsockopt(a, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      setsockopt(b, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      close(a);
      close(b);
    }
    pairs_.clear();
    cuts_++;
  }
  void SetRefusing(bool on) { refusing_ = on; }
  // New connections go to `port` from now on.
  void SetTarget(int port) { to_port_ = port; }
  // Forwards nothing from the server (requests still go through).
  void SetRepliesStalled(bool on) { replies_stalled_ = on; }
  void SetStalled(bool on) { stalled_ = on; }
  int connections() const { return accepted_; }

 private:
  void Run() {
    while (!stop_) {
      std::vector<pollfd> fds{{lfd_, POLLIN, 0}};
      {
        std::lock_guard<std::mutex> l(mu_);
        for (auto& [a, b] : pairs_) {
          if (stalled_) break;
          fds.push_back({a, POLLIN, 0});
          fds.push_back({b, short(replies_stalled_ ? 0 : POLLIN), 0});
        }
      }
      int cuts = cuts_;
      poll(fds.data(), fds.size(), 20);
      std::lock_guard<std::mutex> l(mu_);
      if (cuts != cuts_) continue;  // the descriptors polled are gone
      if (fds[0].revents & POLLIN) {
        int c = accept(lfd_, nullptr, nullptr);
        if (c >= 0 && refusing_) {
          close(c);
        } else if (c >= 0) {
          int s = socket(AF_INET, SOCK_STREAM, 0);
          sockaddr_in a{};
          a.sin_family = AF_INET;
          a.sin_port = htons(uint16_t(to_port_));
          inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
          if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
            // As the relay and the server do: without it, two small
            // frames in a row wait for a delayed ACK (40 ms) here.
            int one = 1;
            setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            pairs_.push_back({c, s});
            accepted_++;
          } else {
            close(c);
            close(s);
          }
        }
      }
      for (size_t i = 1; i < fds.size(); i++) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        size_t k = (i - 1) / 2;
        if (k >= pairs_.size()) break;
        int from = fds[i].fd, to = from == pairs_[k].first ? pairs_[k].second : pairs_[k].first;
        char buf[65536];
        ssize_t n = read(from, buf, sizeof buf);
        bool dead = n <= 0;
        for (ssize_t off = 0; !dead && off < n;) {
          ssize_t w = send(to, buf + off, size_t(n - off), MSG_NOSIGNAL);
          if (w <= 0) dead = true;
          else off += w;
        }
        if (dead) {
          close(pairs_[k].first);
          close(pairs_[k].second);
          pairs_.erase(pairs_.begin() + long(k));
          break;  // indices moved: poll again
        }
      }
    }
  }
  int lfd_, port_;
  std::atomic<int> to_port_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::pair<int, int>> pairs_;
  std::atomic<bool> stop_{false}, refusing_{false}, stalled_{false}, replies_stalled_{false};
  std::atomic<int> cuts_{0}, accepted_{0};
};

// transport::Relay with --reconnect on a loop thread of its own,
// listening on a unix socket.
class RelayThread {
 public:
  RelayThread(int port, const std::string& identity, const std::string& sock,
              std::chrono::milliseconds keepalive = std::chrono::milliseconds(300),
              std::chrono::seconds soft = std::chrono::seconds(0)) {
    uv_loop_init(&loop_);
    uv_async_init(&loop_, &stop_, [](uv_async_t* a) {
      auto* self = static_cast<RelayThread*>(a->data);
      self->relay_->Stop();
      uv_close(reinterpret_cast<uv_handle_t*>(a), nullptr);
    });
    stop_.data = this;
    relay_ = std::make_unique<transport::Relay>(&loop_);
    transport::RelayOptions o{"127.0.0.1", port, identity, auth::Secret(auth::DecodeSecret(kHex))};
    o.reconnect = true;
    o.keepalive = keepalive;
    o.soft = soft;
    REQUIRE(relay_->Init(o).ok());
    REQUIRE(relay_->Listen(*transport::ParseEndpoint("unix:" + sock), false).ok());
    relay_->on_pair_closed = [this](const std::string& e) {
      std::lock_guard<std::mutex> l(mu_);
      errors_.push_back(e);
    };
    thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
  }
  ~RelayThread() {
    uv_async_send(&stop_);
    thread_.join();
    relay_.reset();
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }
  uint64_t restores() const { return relay_->restores(); }
  uint64_t deferred_fids() const { return relay_->deferred_fids(); }
  std::vector<std::string> errors() {
    std::lock_guard<std::mutex> l(mu_);
    return errors_;
  }

 private:
  uv_loop_t loop_;
  uv_async_t stop_;
  std::unique_ptr<transport::Relay> relay_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> errors_;
};

}  // namespace muscle::test
