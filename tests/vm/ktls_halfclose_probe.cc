// The TLS half-close as a client sees it, run in the qemu guest against a
// musclefs server there on kernel TLS (guest-init.sh): completes a TLS-PSK
// handshake (userspace records on this side), pipelines 9P requests in one
// go, then ends its side, with close_notify ("close-notify") or with a
// bare TCP FIN ("fin"), and reads until the end. It must get every reply,
// then the server's close_notify, then EOF.
//
// usage: ktls_halfclose_probe PORT IDENTITY KEYS_FILE close-notify|fin
// Prints MUSCLE-KTLS-HALFCLOSE-OK and exits 0, or says what went wrong and
// exits 1.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "9p/codec.h"
#include "auth/keys.h"
#include "tls/tls_engine.h"

using namespace muscle;
using namespace muscle::p9;

namespace {

int Fail(const std::string& why) {
  fprintf(stderr, "ktls_halfclose_probe: %s\n", why.c_str());
  printf("MUSCLE-KTLS-HALFCLOSE-FAIL %s\n", why.c_str());
  return 1;
}

bool SendAll(int fd, const std::string& b) {
  for (size_t off = 0; off < b.size();) {
    ssize_t n = send(fd, b.data() + off, b.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += size_t(n);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5 || (strcmp(argv[4], "close-notify") && strcmp(argv[4], "fin"))) {
    fprintf(stderr, "usage: %s PORT IDENTITY KEYS_FILE close-notify|fin\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[4];
  auto keys = auth::KeyTable::Load(argv[3]);
  if (!keys.ok()) return Fail(keys.status().message());
  const auth::Secret* key = (*keys)->Find(argv[2]);
  if (!key) return Fail(std::string("no key for ") + argv[2]);
  auto ctx = tls::TlsContext::ForClient(argv[2], *key);
  if (!ctx.ok()) return Fail(ctx.status().message());

  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(atoi(argv[1])));
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return Fail(std::string("connect: ") + strerror(errno));

  tls::TlsEngine engine(**ctx);
  bool send_failed = false;
  std::string plain;
  engine.on_ciphertext = [&](std::string b) { send_failed |= !SendAll(fd, b); };
  engine.on_plaintext = [&](const char* d, size_t n) { plain.append(d, n); };

  // Reads once (10 s at most): 0 at EOF, -1 on a timeout or error.
  char buf[65536];
  auto read_some = [&]() -> ssize_t {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 10000) <= 0) return -1;
    return recv(fd, buf, sizeof buf, 0);
  };
  if (Status s = engine.Start(); !s.ok()) return Fail("handshake: " + s.message());
  while (!engine.ready()) {
    ssize_t n = read_some();
    if (n <= 0) return Fail("handshake: the server closed or went silent");
    if (Status s = engine.Feed(buf, size_t(n)); !s.ok()) return Fail("handshake: " + s.message());
  }

  const uint32_t kReadCount = 65000;  // under msize 65536
  // Replies: complete frames taken from `plain`, each the reply its tag's
  // request wants. Empty on success, or what is wrong.
  std::map<uint16_t, uint8_t> want;  // tag -> reply type
  auto take_replies = [&]() -> std::string {
    size_t pos = 0;
    while (plain.size() - pos >= 4) {
      uint32_t size;
      memcpy(&size, plain.data() + pos, 4);
      if (size < 7) return "a reply shorter than a 9P header";
      if (plain.size() - pos < size) break;
      Decoded d = Decode(reinterpret_cast<const uint8_t*>(plain.data()) + pos, size);
      pos += size;
      if (d.status != DecodeStatus::kOk) return "a malformed reply";
      auto it = want.find(d.tag);
      if (it == want.end()) return "a reply with unexpected tag " + std::to_string(d.tag);
      if (d.type != it->second) {
        std::string e = d.type == Rlerror::kType
                            ? " (errno " + std::to_string(std::get<Rlerror>(d.msg).ecode) + ")"
                            : "";
        return "tag " + std::to_string(d.tag) + ": reply type " + std::to_string(d.type) + e +
               ", want " + std::to_string(it->second);
      }
      if (auto* r = std::get_if<Rread>(&d.msg); r && r->data.bytes.size() != kReadCount)
        return "tag " + std::to_string(d.tag) + ": a short read";
      want.erase(it);
    }
    plain.erase(0, pos);
    return "";
  };
  std::string out;
  auto add = [&](uint16_t tag, const Message& m) {
    Encode(tag, m, out);
    want[tag] = uint8_t(TypeOf(m) + 1);
  };

  // Sends `out` and waits until every request in `want` is answered.
  auto exchange = [&](const char* what) -> std::string {
    if (Status st = engine.Write(out.data(), out.size()); !st.ok()) return "write: " + st.message();
    out.clear();
    while (!want.empty()) {
      ssize_t n = read_some();
      if (n <= 0) return std::string("no reply to ") + what;
      if (Status st = engine.Feed(buf, size_t(n)); !st.ok()) return what + (": " + st.message());
      if (std::string e = take_replies(); !e.empty()) return what + (": " + e);
    }
    return "";
  };

  // Setup, answered step by step (the server runs the requests of a batch
  // concurrently): version, attach, a file of 256 KiB.
  add(kNoTag, Tversion{65536, "9P2000.L"});
  add(1, Tattach{0, kNoFid, "root", "", 0});
  if (std::string e = exchange("version and attach"); !e.empty()) return Fail(e);
  add(2, Twalk{0, 1, {}});
  if (std::string e = exchange("walk"); !e.empty()) return Fail(e);
  add(3, Tlcreate{1, "halfclose-" + mode, 0102 /* O_RDWR | O_CREAT */, 0644, 0});
  if (std::string e = exchange("create"); !e.empty()) return Fail(e);
  const uint32_t kChunk = 32768;
  for (uint16_t i = 0; i < 8; i++)
    add(uint16_t(4 + i), Twrite{1, uint64_t(i) * kChunk, Data{std::string(kChunk, char('a' + i))}});
  if (std::string e = exchange("writes"); !e.empty()) return Fail(e);

  // Then many requests at once and the end of this side: reads whose
  // replies (13 MiB) outgrow the socket buffers and the server's queue
  // limit, so that the server meets the end with replies still queued
  // and requests not yet read; and getattrs in between.
  for (uint16_t i = 0; i < 200; i++) {
    add(uint16_t(100 + i), Tread{1, uint64_t(i % 4) * 65536, kReadCount});
    if (i % 10 == 0) add(uint16_t(1000 + i), Tgetattr{0, kGetattrBasic});
  }
  const size_t pipelined = want.size();
  if (Status s = engine.Write(out.data(), out.size()); !s.ok()) return Fail("write: " + s.message());
  if (mode == "close-notify") {
    engine.Close();
  } else if (shutdown(fd, SHUT_WR) != 0) {
    return Fail(std::string("shutdown: ") + strerror(errno));
  }
  if (send_failed) return Fail("sending the requests failed");

  bool close_notify = false;
  for (;;) {
    ssize_t n = read_some();
    if (n < 0) return Fail(std::string("no EOF from the server: ") + strerror(errno));
    if (n == 0) break;
    if (close_notify) return Fail("bytes after the server's close_notify");
    Status s = engine.Feed(buf, size_t(n));
    if (!s.ok() && s.err() == ECONNRESET) {
      close_notify = true;
    } else if (!s.ok()) {
      return Fail("reading replies: " + s.message());
    }
    if (std::string e = take_replies(); !e.empty()) return Fail(e);
  }
  if (!plain.empty()) return Fail("a partial reply at the end");
  if (!want.empty())
    return Fail(std::to_string(pipelined - want.size()) + " of " + std::to_string(pipelined) +
                " replies (first missing tag " + std::to_string(want.begin()->first) + ")" +
                (close_notify ? "" : ", and no close_notify"));
  if (!close_notify) return Fail("every reply, but EOF without the server's close_notify");
  printf("MUSCLE-KTLS-HALFCLOSE-OK %s: %zu pipelined requests answered, then close_notify, then EOF\n",
         mode.c_str(), pipelined);
  close(fd);
  return 0;
}
