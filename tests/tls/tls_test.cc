// TLS-PSK listener: handshakes that must succeed and fail, the handshake
// timeout, rate limiting, key reloads and per-identity access rules, with
// a blocking test client on top of the project's TlsEngine.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <thread>

#include "9p/client.h"
#include "9p/codec.h"
#include "auth/keys.h"
#include "tests/server/server_harness.h"
#include "tls/tls_engine.h"
#include "transport/relay.h"

using namespace muscle;
using namespace muscle::p9;
using namespace muscle::test;

namespace {

const std::string kGoodHex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const std::string kOtherHex = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

// A blocking TLS-PSK client socket.
class TlsTestClient {
 public:
  ~TlsTestClient() {
    engine_.reset();
    if (fd_ >= 0) close(fd_);
  }
  // Connects (optionally from `source`) and completes the handshake.
  Status Connect(int port, const std::string& identity, const std::string& key_hex,
                 const std::string& source = "") {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    if (!source.empty()) {
      sockaddr_in src{};
      src.sin_family = AF_INET;
      inet_pton(AF_INET, source.c_str(), &src.sin_addr);
      if (bind(fd_, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0)
        return Status(errno, "bind");
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return Status(errno, "connect");
    auto ctx = tls::TlsContext::ForClient(identity, auth::Secret(auth::DecodeSecret(key_hex)));
    if (!ctx.ok()) return ctx.status();
    ctx_ = std::move(*ctx);
    engine_ = std::make_unique<tls::TlsEngine>(*ctx_);
    engine_->on_ciphertext = [this](std::string b) {
      if (send(fd_, b.data(), b.size(), MSG_NOSIGNAL) < 0) send_failed_ = true;
    };
    engine_->on_plaintext = [this](const char* d, size_t n) { plain_.append(d, n); };
    MUSCLE_RETURN_IF_ERROR(engine_->Start());
    while (!engine_->ready()) MUSCLE_RETURN_IF_ERROR(Pump(5000));
    return Status::Ok();
  }
  Status Pump(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return Status(ETIMEDOUT, "no data");
    char buf[65536];
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return Status(ECONNRESET, "server closed the connection");
    return engine_->Feed(buf, size_t(n));
  }
  // Sends one 9P message and waits for the reply.
  Result<Message> Rpc(uint16_t tag, const Message& m) {
    std::string f;
    Encode(tag, m, f);
    MUSCLE_RETURN_IF_ERROR(engine_->Write(f.data(), f.size()));
    for (;;) {
      if (plain_.size() >= 4) {
        uint32_t size;
        memcpy(&size, plain_.data(), 4);
        if (plain_.size() >= size) {
          Decoded d = Decode(reinterpret_cast<const uint8_t*>(plain_.data()), size, dialect);
          plain_.erase(0, size);
          if (d.status != DecodeStatus::kOk) return Status(EPROTO, "bad reply");
          if (auto* e = std::get_if<Rlerror>(&d.msg)) return Status(int(e->ecode));
          if (auto* e = std::get_if<RerrorU>(&d.msg)) return Status(int(e->errnum), e->ename);
          if (auto* e = std::get_if<Rerror>(&d.msg)) return Status(EIO, e->ename);
          return d.msg;
        }
      }
      MUSCLE_RETURN_IF_ERROR(Pump(5000));
    }
  }
  // Sends `frames`, then ends this side (its close_notify, a FIN, or
  // both), and reads everything until the server closes; the 9P types of
  // the replies received, in order.
  Result<std::vector<uint8_t>> SendThenEnd(const std::string& frames, bool close_notify, bool fin) {
    MUSCLE_RETURN_IF_ERROR(engine_->Write(frames.data(), frames.size()));
    if (close_notify) engine_->Close();
    if (fin && shutdown(fd_, SHUT_WR) != 0) return Status(errno, "shutdown");
    for (;;) {
      Status s = Pump(5000);
      if (s.err() == ECONNRESET) break;  // the server's close_notify, or its FIN
      if (!s.ok()) return s;
    }
    std::vector<uint8_t> types;
    while (plain_.size() >= 7) {
      uint32_t size;
      memcpy(&size, plain_.data(), 4);
      if (size > plain_.size()) break;
      types.push_back(uint8_t(plain_[4]));
      plain_.erase(0, size);
    }
    return types;
  }
  bool Ready() const { return engine_ && engine_->ready(); }
  int fd() const { return fd_; }
  Dialect dialect = k9P2000L;  // replies are decoded in it

 private:
  int fd_ = -1;
  std::unique_ptr<tls::TlsContext> ctx_;
  std::unique_ptr<tls::TlsEngine> engine_;
  std::string plain_;
  bool send_failed_ = false;
};

void WriteKeys(const std::string& path, const std::string& text, mode_t mode = 0600) {
  std::ofstream(path) << text;
  chmod(path.c_str(), mode);
}

server::ServerOptions TlsOptions(const std::string& dir) {
  server::ServerOptions o;
  o.store_path = ":memory:";
  o.listen = {"tls://127.0.0.1:0", "unix:" + dir + "/sock"};
  o.keys_path = dir + "/keys";
  o.handshake_timeout = std::chrono::milliseconds(400);
  o.max_failed_handshakes = 5;
  return o;
}

void Version(TlsTestClient& c) {
  auto r = c.Rpc(kNoTag, Tversion{65536, "9P2000.L"});
  REQUIRE(r.ok());
  CHECK(std::get<Rversion>(*r).version == "9P2000.L");
}

}  // namespace

TEST_CASE("keys file: stunnel format, validation with file:line") {
  auto t = auth::KeyTable::Parse("# comment\n\nalice:" + kGoodHex +
                                     "\nbob:a raw text secret of 24b\n",
                                 "k");
  REQUIRE(t.ok());
  CHECK((*t)->size() == 2);
  CHECK((*t)->Find("alice")->bytes().size() == 32);
  CHECK((*t)->Find("bob")->bytes() == "a raw text secret of 24b");
  auto dup = auth::KeyTable::Parse("a:" + kGoodHex + "\na:" + kOtherHex + "\n", "keys");
  REQUIRE(!dup.ok());
  CHECK(dup.status().message().find("keys:2: duplicate identity 'a'") != std::string::npos);
  auto bad = auth::KeyTable::Parse("a:" + kGoodHex + "\nno colon here\n", "keys");
  REQUIRE(!bad.ok());
  CHECK(bad.status().message().find("keys:2") != std::string::npos);
  auto short_key = auth::KeyTable::Parse("a:abcd\n", "keys");
  REQUIRE(!short_key.ok());
  CHECK(short_key.status().message().find("16 to 32 bytes") != std::string::npos);
  CHECK(!auth::KeyTable::Parse(":" + kGoodHex + "\n", "keys").ok());
  CHECK(auth::DecodeSecret("0a0B") == std::string("\x0a\x0b", 2));
  CHECK(auth::DecodeSecret("0a0") == "0a0");  // odd length: raw text
  CHECK(auth::DecodeSecret("zz") == "zz");

  TempDir dir;
  WriteKeys(dir.path + "/keys", "a:" + kGoodHex + "\n", 0644);
  auto open = auth::KeyTable::Load(dir.path + "/keys");
  REQUIRE(!open.ok());
  CHECK(open.status().message().find("chmod 600 " + dir.path + "/keys") != std::string::npos);
  chmod((dir.path + "/keys").c_str(), 0600);
  CHECK(auth::KeyTable::Load(dir.path + "/keys").ok());
}

TEST_CASE("TLS handshakes: good, wrong key, unknown identity, plain bytes, idle") {
  TempDir dir;
  WriteKeys(dir.path + "/keys", "client-a:" + kGoodHex + "\n");
  InProcessServer srv(TlsOptions(dir.path));
  int port = srv.endpoints()[0].port;
  std::string good_ep = "unix:" + srv.endpoints()[1].path;

  SECTION("the right key completes and carries 9P") {
    TlsTestClient c;
    REQUIRE(c.Connect(port, "client-a", kGoodHex).ok());
    Version(c);
    auto a = c.Rpc(1, Tattach{0, kNoFid, "", "", 0});
    REQUIRE(a.ok());
    CHECK(c.Rpc(2, Tauth{1, "", "", 0}).err() == ENOENT);
  }
  SECTION("a wrong key and an unknown identity fail the same way") {
    TlsTestClient wrong, unknown;
    Status w = wrong.Connect(port, "client-a", kOtherHex);
    Status u = unknown.Connect(port, "nobody-here", kGoodHex);
    CHECK(!w.ok());
    CHECK(!u.ok());
    INFO(w.message() << " / " << u.message());
    // Neither reveals whether the identity exists: same alert for both.
    CHECK(w.message() == u.message());
  }
  SECTION("plain 9P bytes to the TLS port get the connection closed") {
    Client plain;
    REQUIRE(plain.Connect("tcp://127.0.0.1:" + std::to_string(port)).ok());
    auto r = plain.Rpc(Tversion{8192, "9P2000.L"});
    CHECK(!r.ok());
  }
  SECTION("a half-finished handshake left idle is timed out") {
    Client idle;
    REQUIRE(idle.Connect("tcp://127.0.0.1:" + std::to_string(port)).ok());
    pollfd p{idle.fd(), POLLIN, 0};
    REQUIRE(poll(&p, 1, 3000) == 1);  // the server closes it
    char b;
    CHECK(recv(idle.fd(), &b, 1, 0) <= 0);
  }
  // Whatever happened, a good client still works.
  Client native;
  REQUIRE(native.Connect(good_ep).ok());
  REQUIRE(native.Version().ok());
  TlsTestClient again;
  REQUIRE(again.Connect(port, "client-a", kGoodHex).ok());
  Version(again);
}

TEST_CASE("TLS half-close: requests followed by close_notify or FIN are answered, then closed") {
  TempDir dir;
  WriteKeys(dir.path + "/keys", "client-a:" + kGoodHex + "\n");
  InProcessServer srv(TlsOptions(dir.path));
  int port = srv.endpoints()[0].port;
  struct Way {
    const char* name;
    bool close_notify, fin;
  };
  for (Way way : {Way{"close_notify", true, false}, Way{"close_notify and FIN", true, true},
                  Way{"FIN alone", false, true}}) {
    INFO(way.name);
    TlsTestClient c;
    REQUIRE(c.Connect(port, "client-a", kGoodHex).ok());
    std::string out;
    Encode(kNoTag, Tversion{65536, "9P2000.L"}, out);
    for (uint16_t tag = 1; tag <= 3; tag++) Encode(tag, Tattach{tag, kNoFid, "u", "", 0}, out);
    auto types = c.SendThenEnd(out, way.close_notify, way.fin);
    REQUIRE(types.ok());
    std::sort(types->begin() + (types->empty() ? 0 : 1), types->end());
    CHECK(*types ==
          std::vector<uint8_t>{Rversion::kType, Rattach::kType, Rattach::kType, Rattach::kType});
  }
}

TEST_CASE("9P2000 and 9P2000.u over TLS, with the identity's access rules") {
  TempDir dir;
  std::string reader_hex(64, 'a');
  WriteKeys(dir.path + "/keys", "client-a:" + kGoodHex + "\nreader:" + reader_hex + "\n");
  server::ServerOptions o = TlsOptions(dir.path);
  o.access["reader"] = server::AccessRule{"", true};
  InProcessServer srv(o);
  int port = srv.endpoints()[0].port;
  for (std::string version : {"9P2000", "9P2000.u"}) {
    INFO(version);
    bool u = version == "9P2000.u";
    TlsTestClient c;
    REQUIRE(c.Connect(port, "client-a", kGoodHex).ok());
    auto v = c.Rpc(kNoTag, Tversion{65536, version});
    REQUIRE(v.ok());
    REQUIRE(std::get<Rversion>(*v).version == version);
    c.dialect = u ? k9P2000u : k9P2000;
    REQUIRE((u ? c.Rpc(1, Tattach{0, kNoFid, "", "", 0}) : c.Rpc(1, Tattach2000{0, kNoFid, "0", ""})).ok());
    REQUIRE(c.Rpc(2, Twalk{0, 1, {}}).ok());
    std::string name = "over-tls-" + version;
    REQUIRE((u ? c.Rpc(3, TcreateU{1, name, 0644, kORdwr, ""}) : c.Rpc(3, Tcreate{1, name, 0644, kORdwr})).ok());
    REQUIRE(c.Rpc(4, Twrite{1, 0, Data{"secret"}}).ok());
    auto r = c.Rpc(5, Tread{1, 0, 100});
    REQUIRE(r.ok());
    CHECK(std::get<Rread>(*r).data.bytes == "secret");
    REQUIRE(c.Rpc(6, Tclunk{1}).ok());
    CHECK(c.Rpc(7, Twalk{0, 2, {"missing"}}).status().message() == strerror(ENOENT));
    // The read-only identity reads it and changes nothing, in the dialect.
    TlsTestClient ro;
    REQUIRE(ro.Connect(port, "reader", reader_hex).ok());
    REQUIRE(ro.Rpc(kNoTag, Tversion{65536, version}).ok());
    ro.dialect = c.dialect;
    REQUIRE((u ? ro.Rpc(1, Tattach{0, kNoFid, "", "", 0}) : ro.Rpc(1, Tattach2000{0, kNoFid, "0", ""})).ok());
    REQUIRE(ro.Rpc(2, Twalk{0, 1, {name}}).ok());
    auto w = ro.Rpc(3, Topen{1, kOWrite});
    REQUIRE(!w.ok());
    CHECK(w.status().message() == strerror(EROFS));
    if (u) CHECK(w.status().err() == EROFS);
    REQUIRE(ro.Rpc(4, Topen{1, kORead}).ok());
    auto back = ro.Rpc(5, Tread{1, 0, 100});
    REQUIRE(back.ok());
    CHECK(std::get<Rread>(*back).data.bytes == "secret");
  }
}

TEST_CASE("a flood of failed handshakes from one address is rate limited") {
  TempDir dir;
  WriteKeys(dir.path + "/keys", "client-a:" + kGoodHex + "\n");
  InProcessServer srv(TlsOptions(dir.path));
  int port = srv.endpoints()[0].port;
  for (int i = 0; i < 5; i++) {
    TlsTestClient bad;
    CHECK(!bad.Connect(port, "client-a", kOtherHex, "127.0.0.2").ok());
  }
  // Now even the right key from that address is refused...
  TlsTestClient blocked;
  Status s = blocked.Connect(port, "client-a", kGoodHex, "127.0.0.2");
  CHECK(!s.ok());
  // ...while other addresses keep working.
  TlsTestClient good;
  REQUIRE(good.Connect(port, "client-a", kGoodHex, "127.0.0.1").ok());
  Version(good);
}

TEST_CASE("SIGHUP reload: broken file keeps old keys; removed identity is cut off") {
  TempDir dir;
  std::string keys = dir.path + "/keys";
  WriteKeys(keys, "a:" + kGoodHex + "\nb:" + kOtherHex + "\n");
  InProcessServer srv(TlsOptions(dir.path));
  int port = srv.endpoints()[0].port;
  TlsTestClient a, b;
  REQUIRE(a.Connect(port, "a", kGoodHex).ok());
  REQUIRE(b.Connect(port, "b", kOtherHex).ok());
  Version(a);
  Version(b);

  WriteKeys(keys, "a:" + kGoodHex + "\nthis line is broken\n");
  Status reload;
  srv.OnLoop([&](server::Server& s) { reload = s.ReloadKeys(); });
  CHECK(!reload.ok());
  CHECK(reload.message().find(":2") != std::string::npos);
  // Old table still in force: both identities work.
  Version(b);
  TlsTestClient b2;
  CHECK(b2.Connect(port, "b", kOtherHex).ok());

  WriteKeys(keys, "a:" + kGoodHex + "\n");
  srv.OnLoop([&](server::Server& s) { reload = s.ReloadKeys(); });
  CHECK(reload.ok());
  // b's live connection is closed; a's stays.
  CHECK(!b.Rpc(3, Tversion{65536, "9P2000.L"}).ok());
  Version(a);
  TlsTestClient b3;
  CHECK(!b3.Connect(port, "b", kOtherHex).ok());
}

TEST_CASE("access rules: confined to a subtree, read-only") {
  TempDir dir;
  WriteKeys(dir.path + "/keys",
            "admin:" + kGoodHex + "\nconfined:" + kOtherHex + "\nreader:" +
                std::string(64, 'a') + "\n");
  auto o = TlsOptions(dir.path);
  o.access["confined"] = server::AccessRule{"/projects/x", false};
  o.access["reader"] = server::AccessRule{"", true};
  InProcessServer srv(o);
  int port = srv.endpoints()[0].port;
  {
    // Lay out the tree through the native socket.
    Client c;
    REQUIRE(c.Connect("unix:" + srv.endpoints()[1].path).ok());
    REQUIRE(c.Version().ok());
    REQUIRE(c.Attach(0).ok());
    REQUIRE(c.Mkdir(0, "projects", 0755).ok());
    REQUIRE(c.WalkPath(0, 1, "projects").ok());
    REQUIRE(c.Mkdir(1, "x", 0755).ok());
    REQUIRE(c.Walk(0, 2, {}).ok());
    REQUIRE(c.Create(2, "secret", O_WRONLY, 0600).ok());
  }
  TlsTestClient conf;
  REQUIRE(conf.Connect(port, "confined", kOtherHex).ok());
  Version(conf);
  auto root = conf.Rpc(1, Tattach{0, kNoFid, "", "", 0});
  REQUIRE(root.ok());
  // ".." at the attach root stays there; the outside is unreachable.
  auto up = conf.Rpc(2, Twalk{0, 1, {"..", "..", ".."}});
  REQUIRE(up.ok());
  CHECK(std::get<Rwalk>(*up).wqids.back().path == std::get<Rattach>(*root).qid.path);
  auto escape = conf.Rpc(3, Twalk{0, 2, {"..", "secret"}});
  REQUIRE(escape.ok());
  CHECK(std::get<Rwalk>(*escape).wqids.size() == 1);  // stopped: no "secret" inside
  CHECK(conf.Rpc(6, Twalk{0, 2, {"secret"}}).err() == ENOENT);
  CHECK(conf.Rpc(4, Tattach{5, kNoFid, "", "../..", 0}).err() == EACCES);
  CHECK(conf.Rpc(5, Tlcreate{1, "mine", O_WRONLY, 0644, 0}).ok());  // writable inside

  std::string reader_hex(64, 'a');
  TlsTestClient ro;
  REQUIRE(ro.Connect(port, "reader", reader_hex).ok());
  Version(ro);
  REQUIRE(ro.Rpc(1, Tattach{0, kNoFid, "", "", 0}).ok());
  CHECK(ro.Rpc(2, Tmkdir{0, "nope", 0755, 0}).err() == EROFS);
  REQUIRE(ro.Rpc(3, Twalk{0, 1, {"secret"}}).ok());
  CHECK(ro.Rpc(4, Tlopen{1, O_WRONLY}).err() == EROFS);
  CHECK(ro.Rpc(5, Tlopen{1, O_RDONLY}).ok());
  CHECK(ro.Rpc(6, Tunlinkat{0, "secret", 0}).err() == EROFS);
  CHECK(ro.Rpc(7, Tsetattr{1, kSetMode, 0777}).err() == EROFS);
}

TEST_CASE("a TLS identity without an access line has its root squashed and makes no devices") {
  TempDir dir;
  WriteKeys(dir.path + "/keys", "plain:" + kGoodHex + "\nroot:" + kOtherHex + "\n");
  auto o = TlsOptions(dir.path);
  server::AccessRule root;  // as musclefs.conf's "access = root no-root-squash devices setid"
  o.access["root"] = root;
  InProcessServer srv(o);
  int port = srv.endpoints()[0].port;
  TlsTestClient c;
  REQUIRE(c.Connect(port, "plain", kGoodHex).ok());
  Version(c);
  REQUIRE(c.Rpc(1, Tattach{0, kNoFid, "", "", 0}).ok());
  REQUIRE(c.Rpc(2, Twalk{0, 1, {}}).ok());
  REQUIRE(c.Rpc(3, Tlcreate{1, "f", O_WRONLY, 0644, 0}).ok());
  auto a = c.Rpc(4, Tgetattr{1, kGetattrAll});
  REQUIRE(a.ok());
  CHECK(std::get<Rgetattr>(*a).uid == auth::kNobody);
  CHECK(std::get<Rgetattr>(*a).gid == auth::kNoGroup);
  CHECK(c.Rpc(5, Tmknod{0, "mem", S_IFCHR | 0600, 1, 1, 0}).err() == EPERM);
  CHECK(c.Rpc(6, Tmkdir{0, "d", 04755, 0}).ok());  // set-uid on a directory means nothing
  CHECK(c.Rpc(7, Tmknod{0, "x", S_IFREG | 04755, 0, 0, 0}).err() == EPERM);

  TlsTestClient r;
  REQUIRE(r.Connect(port, "root", kOtherHex).ok());
  Version(r);
  REQUIRE(r.Rpc(1, Tattach{0, kNoFid, "", "", 0}).ok());
  CHECK(r.Rpc(2, Tmknod{0, "mem", S_IFCHR | 0600, 1, 1, 0}).ok());
}

TEST_CASE("the relay carries the native client over TLS and explains failures") {
  TempDir dir;
  WriteKeys(dir.path + "/keys", "client-a:" + kGoodHex + "\n");
  InProcessServer srv(TlsOptions(dir.path));
  int port = srv.endpoints()[0].port;
  auto run_relay = [&](const std::string& hex, const std::string& listen) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    Status s;
    {
      transport::Relay relay(&loop);
      transport::RelayOptions ro{"127.0.0.1", port, "client-a",
                                 auth::Secret(auth::DecodeSecret(hex))};
      s = relay.Init(ro);
      if (s.ok()) s = relay.Probe();
      if (s.ok() && !listen.empty()) {
        s = relay.Listen(*transport::ParseEndpoint(listen), false);
        std::thread t([&] {
          Client c;
          bool ok = c.Connect(listen).ok() && c.Version().ok() && c.Attach(0).ok();
          CHECK(ok);
          uv_async_t* a = nullptr;
          (void)a;
        });
        // Serve the client for a while on this thread.
        for (int i = 0; i < 200 && relay.pairs() == 0; i++) uv_run(&loop, UV_RUN_NOWAIT), usleep(5000);
        for (int i = 0; i < 100; i++) uv_run(&loop, UV_RUN_NOWAIT), usleep(2000);
        t.join();
      }
      relay.Stop();
      uv_run(&loop, UV_RUN_DEFAULT);
    }
    CHECK(uv_loop_close(&loop) == 0);
    return s;
  };
  CHECK(run_relay(kGoodHex, "unix:" + dir.path + "/relay.sock").ok());
  Status bad = run_relay(kOtherHex, "");
  CHECK(!bad.ok());
  CHECK(bad.message().find("did not accept identity 'client-a'") != std::string::npos);
  transport::Endpoint open_ep = *transport::ParseEndpoint("tcp://0.0.0.0:0");
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    transport::Relay r(&loop);
    Status s = r.Listen(open_ep, false);
    CHECK(!s.ok());
    CHECK(s.message().find("must stay on this machine") != std::string::npos);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("silent connections neither lock an address out nor count as failed logins") {
  TempDir dir;
  WriteKeys(dir.path + "/keys", "client-a:" + kGoodHex + "\n");
  server::ServerOptions o = TlsOptions(dir.path);
  o.max_concurrent_handshakes = 8;
  InProcessServer srv(o);
  int port = srv.endpoints()[0].port;
  // 20 connections from 127.0.0.3 that never send a byte.
  std::vector<int> silent;
  for (int i = 0; i < 20; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.3", &src.sin_addr);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) == 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    silent.push_back(fd);
  }
  // While they hold the address's handshake slots, more are refused...
  usleep(100000);
  TlsTestClient during;
  CHECK_FALSE(during.Connect(port, "client-a", kGoodHex, "127.0.0.3").ok());
  // ...once they time out (400 ms here), the legitimate client gets in:
  // timeouts are not failed authentications.
  usleep(900000);
  TlsTestClient after;
  REQUIRE(after.Connect(port, "client-a", kGoodHex, "127.0.0.3").ok());
  Version(after);
  for (int fd : silent) close(fd);
}

TEST_CASE("muscle relay listens on a private unix socket unless told otherwise") {
  TempDir dir;
  WriteKeys(dir.path + "/keys", "client-a:" + kGoodHex + "\n");
  InProcessServer srv(TlsOptions(dir.path));
  int port = srv.endpoints()[0].port;
  std::string client = dir.path + "/client";
  mkdir(client.c_str(), 0700);
  WriteKeys(client + "/keys", "client-a:" + kGoodHex + "\n");
  std::string muscle = std::string(MUSCLEFS_BINARY);
  muscle = muscle.substr(0, muscle.rfind('/')) + "/muscle";
  std::string connect = "127.0.0.1:" + std::to_string(port);
  pid_t pid = fork();
  if (pid == 0) {
    // Nothing of the test's output is held by the relay (a relay left
    // running would keep ctest waiting for the end of its output).
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    execl(muscle.c_str(), "muscle", "relay", "--base", client.c_str(), "--connect",
          connect.c_str(), "--identity", "client-a", (char*)nullptr);
    _exit(127);
  }
  // Stopped whatever the checks below say.
  struct Stop {
    pid_t pid;
    ~Stop() {
      kill(pid, SIGTERM);
      int status;
      waitpid(pid, &status, 0);
    }
  } stop{pid};
  // The socket appears at bind and accepts from listen, a moment later
  // (long under the sanitizers): connect until it does, for 10 s at most.
  std::string sock = client + "/relay.sock";
  struct stat st {};
  for (int i = 0; i < 1000 && stat(sock.c_str(), &st) != 0; i++) usleep(10000);
  REQUIRE(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600);
  Client c;
  Status connected = c.Connect("unix:" + sock);
  for (int i = 0; i < 1000 && !connected.ok(); i++) {
    usleep(10000);
    connected = c.Connect("unix:" + sock);
  }
  REQUIRE(connected.ok());
  REQUIRE(c.Version(65536).ok());
  CHECK(c.Attach(0).ok());
}

TEST_CASE("TLS connections dealt to several event loops: each works, reloads and shutdown reach all") {
  TempDir dir;
  std::string keys = dir.path + "/keys";
  WriteKeys(keys, "a:" + kGoodHex + "\nb:" + kOtherHex + "\n");
  auto o = TlsOptions(dir.path);
  o.loops = 3;
  o.store_path = dir.path + "/store.db";
  auto srv = std::make_unique<InProcessServer>(o);
  int port = srv->endpoints()[0].port;
  // Six connections: two on each loop, a and b on every loop.
  std::vector<std::unique_ptr<TlsTestClient>> as, bs;
  for (int i = 0; i < 3; i++) {
    as.push_back(std::make_unique<TlsTestClient>());
    bs.push_back(std::make_unique<TlsTestClient>());
    REQUIRE(as.back()->Connect(port, "a", kGoodHex).ok());
    REQUIRE(bs.back()->Connect(port, "b", kOtherHex).ok());
  }
  size_t n = 0;
  srv->OnLoop([&](server::Server& s) { n = s.connections(); });
  CHECK(n == 6);
  // Each session reaches the one store: a file made through one
  // connection is seen through all the others.
  for (size_t i = 0; i < as.size(); i++) {
    auto* c = as[i].get();
    Version(*c);
    REQUIRE(c->Rpc(1, Tattach{1, kNoFid, "", "", 0}).ok());
    auto made = c->Rpc(2, Tlcreate{1, "f" + std::to_string(i), O_RDWR, 0644, 0});
    REQUIRE(made.ok());
    REQUIRE(c->Rpc(3, Twrite{1, 0, Data{"from " + std::to_string(i)}}).ok());
    REQUIRE(c->Rpc(4, Tclunk{1}).ok());
  }
  for (auto& c : bs) {
    Version(*c);
    REQUIRE(c->Rpc(1, Tattach{1, kNoFid, "", "", 0}).ok());
    for (size_t i = 0; i < as.size(); i++) {
      REQUIRE(c->Rpc(2, Twalk{1, 2, {"f" + std::to_string(i)}}).ok());
      REQUIRE(c->Rpc(3, Tlopen{2, O_RDONLY}).ok());
      auto r = c->Rpc(4, Tread{2, 0, 100});
      REQUIRE(r.ok());
      CHECK(std::get<Rread>(*r).data.bytes == "from " + std::to_string(i));
      REQUIRE(c->Rpc(5, Tclunk{2}).ok());
    }
  }
  // One connection writes while the others read on every loop: with a
  // store on disk, reads then go to the reader threads (and back to the
  // asking loop; debug builds assert that each reply runs on its loop).
  {
    bool wrote = true;  // Catch's macros stay on this thread
    std::atomic<bool> writing{true};
    std::thread writer([&] {
      auto* c = as[0].get();
      wrote = c->Rpc(10, Tattach{7, kNoFid, "", "", 0}).ok() &&
              c->Rpc(11, Tlcreate{7, "busy", O_RDWR, 0644, 0}).ok();
      std::string chunk(60000, 'w');
      // 30 MB: the writer flushes chunks to packs several times meanwhile.
      for (int i = 0; i < 500 && wrote; i++)
        wrote = c->Rpc(12, Twrite{7, uint64_t(i) * 60000, Data{chunk}}).ok();
      wrote = wrote && c->Rpc(13, Tclunk{7}).ok();
      writing = false;
    });
    for (int round = 0; round < 40 || writing; round++)
      for (auto& c : bs) {
        REQUIRE(c->Rpc(20, Twalk{1, 8, {"f1"}}).ok());
        REQUIRE(c->Rpc(21, Tgetattr{8, kGetattrBasic}).ok());
        REQUIRE(c->Rpc(22, Tclunk{8}).ok());
      }
    writer.join();
    CHECK(wrote);
  }
  // Removing b cuts its connections on every loop; a's stay.
  WriteKeys(keys, "a:" + kGoodHex + "\n");
  Status reload;
  srv->OnLoop([&](server::Server& s) { reload = s.ReloadKeys(); });
  REQUIRE(reload.ok());
  for (auto& c : bs) CHECK(!c->Rpc(9, Tversion{65536, "9P2000.L"}).ok());
  for (auto& c : as) Version(*c);
  TlsTestClient late;
  CHECK(!late.Connect(port, "b", kOtherHex).ok());
  // Shutdown with connections still open on the other loops ends cleanly
  // (the harness fails on a loop that does not close).
  srv.reset();
  for (auto& c : as) CHECK(!c->Rpc(9, Tversion{65536, "9P2000.L"}).ok());
}
