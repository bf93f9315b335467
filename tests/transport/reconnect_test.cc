// Resumable sessions end to end: a 9P client talks to `muscle relay
// --reconnect` (the Relay class, on its own loop) which reaches the
// server's TLS listener through a proxy of ours that cuts every
// connection on demand. Writes and reads in flight across the cuts all
// succeed and every byte is right; a session whose lease ended closes
// the client's stream instead of hanging.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <fstream>
#include <mutex>
#include <thread>

#include "9p/client.h"
#include "auth/keys.h"
#include "tests/server/server_harness.h"
#include "transport/relay.h"

using namespace muscle;
using namespace muscle::test;

namespace {

const std::string kHex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

// A loopback TCP proxy to `port`. Cut() resets every connection it
// carries; SetRefusing(true) makes it close new connections at once;
// SetStalled(true) stops it forwarding anything (a path that went dead
// without a reset).
class CutProxy {
 public:
  explicit CutProxy(int to_port) : to_port_(to_port) {
    lfd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    REQUIRE(bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
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
          fds.push_back({b, POLLIN, 0});
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
  int lfd_, port_, to_port_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::pair<int, int>> pairs_;
  std::atomic<bool> stop_{false}, refusing_{false}, stalled_{false};
  std::atomic<int> cuts_{0}, accepted_{0};
};

// transport::Relay with --reconnect on a loop thread of its own,
// listening on a unix socket.
class RelayThread {
 public:
  RelayThread(int port, const std::string& identity, const std::string& sock) {
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
    o.keepalive = std::chrono::milliseconds(300);
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

server::ServerOptions Options(const std::string& dir, int lease_seconds, int loops,
                              int silence_ms = 30000) {
  std::ofstream(dir + "/keys") << "site-a:" << kHex << "\nsite-b:" << kHex << "\n";
  chmod((dir + "/keys").c_str(), 0600);
  server::ServerOptions o;
  o.store_path = ":memory:";
  o.listen = {"tls://127.0.0.1:0", "unix:" + dir + "/sock"};
  o.keys_path = dir + "/keys";
  o.session_lease = std::chrono::seconds(lease_seconds);
  o.loops = loops;
  o.session_silence = std::chrono::milliseconds(silence_ms);
  return o;
}

}  // namespace

TEST_CASE("a relay with --reconnect carries writes and reads across network cuts") {
  // Several loops: a redial usually lands on another loop than its session.
  int loops = GENERATE(1, 3);
  TempDir dir;
  InProcessServer srv(Options(dir.path, 60, loops));
  CutProxy proxy(srv.endpoints()[0].port);
  RelayThread relay(proxy.port(), "site-a", dir.path + "/relay.sock");
  p9::Client c;
  Connect(c, "unix:" + dir.path + "/relay.sock", 65536 + 24);
  REQUIRE(c.Walk(0, 1, {}).ok());
  REQUIRE(c.Create(1, "f", 0x2 /* O_RDWR */, 0644).ok());

  std::atomic<bool> done{false};
  std::thread cutter([&] {
    while (!done) {
      usleep(150000);
      proxy.Cut();
    }
  });
  // Passes over the file, each with new bytes, until the proxy has cut
  // the connection several times (a fast machine writes 3 MiB between
  // two cuts).
  std::string data;
  Status failed;
  for (uint32_t pass = 0; failed.ok() && pass < 40 && (pass == 0 || proxy.connections() <= 5);
       pass++) {
    data = RandomBytes(3 << 20, 42 + pass);
    size_t off = 0;
    while (off < data.size() && failed.ok()) {
      auto w = c.Write(1, off, data.substr(off, 65536));
      if (!w.ok()) failed = w.status();
      else off += *w;
      // Reads in between: replies cross the cuts too.
      if (failed.ok() && off % (1 << 20) == 0) {
        auto r = c.Read(1, off - 4096, 4096);
        if (!r.ok()) failed = r.status();
        else CHECK(*r == data.substr(off - 4096, 4096));
      }
    }
  }
  done = true;
  cutter.join();
  REQUIRE(failed.ok());
  CHECK(proxy.connections() > 5);  // it did redial, many times
  std::string back;
  for (size_t o = 0; o < data.size(); o += 65536) {
    auto r = c.Read(1, o, 65536);
    REQUIRE(r.ok());
    back += *r;
  }
  CHECK(back == data);
  CHECK(relay.errors().empty());
}

TEST_CASE("a resumable session whose lease ended closes the relay's stream") {
  TempDir dir;
  InProcessServer srv(Options(dir.path, 1, 1));
  CutProxy proxy(srv.endpoints()[0].port);
  RelayThread relay(proxy.port(), "site-a", dir.path + "/relay.sock");
  p9::Client c;
  Connect(c, "unix:" + dir.path + "/relay.sock", 65536 + 24);
  // Away for longer than the lease: the server forgets the session, and
  // the redial is told so.
  proxy.SetRefusing(true);
  proxy.Cut();
  sleep(3);
  proxy.SetRefusing(false);
  auto r = c.GetAttr(0);
  CHECK(!r.ok());
  for (int i = 0; i < 100 && relay.errors().empty(); i++) usleep(50000);
  auto errors = relay.errors();
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("no longer has this session") != std::string::npos);
}

TEST_CASE("a resumable session that hears nothing detaches, and its lease then ends it") {
  // The path goes dead without a reset: the server's socket stays open.
  // Only its silence watch lets the lease run (without it the session
  // would be resumed when the path comes back).
  TempDir dir;
  InProcessServer srv(Options(dir.path, 1, 1, 600));
  CutProxy proxy(srv.endpoints()[0].port);
  RelayThread relay(proxy.port(), "site-a", dir.path + "/relay.sock");
  p9::Client c;
  Connect(c, "unix:" + dir.path + "/relay.sock", 65536 + 24);
  proxy.SetStalled(true);
  sleep(3);
  proxy.SetStalled(false);
  CHECK(!c.GetAttr(0).ok());
  for (int i = 0; i < 100 && relay.errors().empty(); i++) usleep(50000);
  auto errors = relay.errors();
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("no longer has this session") != std::string::npos);
}

TEST_CASE("a resumable session ends with its client (BYE), and with its identity's removal") {
  TempDir dir;
  InProcessServer srv(Options(dir.path, 60, 2));
  CutProxy proxy(srv.endpoints()[0].port);
  RelayThread relay(proxy.port(), "site-a", dir.path + "/relay.sock");
  auto sessions = [&] {
    size_t n = 0;
    srv.OnLoop([&](server::Server& s) { n = s.resumable_sessions(); });
    return n;
  };
  auto wait_for = [&](size_t want) {
    for (int i = 0; i < 100 && sessions() != want; i++) usleep(20000);
    return sessions();
  };
  {
    p9::Client c;
    Connect(c, "unix:" + dir.path + "/relay.sock", 65536 + 24);
    CHECK(sessions() == 1);
  }
  // The client went away: the relay said BYE, nothing is kept for a lease.
  CHECK(wait_for(0) == 0);

  p9::Client c;
  Connect(c, "unix:" + dir.path + "/relay.sock", 65536 + 24);
  REQUIRE(sessions() == 1);
  // Detached (the network is away), then the identity is removed: the
  // session goes at once, not when its lease ends.
  proxy.SetRefusing(true);
  proxy.Cut();
  usleep(300000);
  std::ofstream(dir.path + "/keys") << "site-b:" << kHex << "\n";
  Status reload;
  srv.OnLoop([&](server::Server& s) { reload = s.ReloadKeys(); });
  REQUIRE(reload.ok());
  CHECK(wait_for(0) == 0);
}
