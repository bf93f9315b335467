#include "tls/ktls.h"

#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TLS_SET_RECORD_TYPE
#define TLS_SET_RECORD_TYPE 1
#endif
#ifndef TLS_GET_RECORD_TYPE
#define TLS_GET_RECORD_TYPE 2
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

namespace muscle::tls {

namespace {

std::atomic<bool> g_missing{false};

bool DisabledByEnv() {
  static const bool off = [] {
    const char* v = getenv("MUSCLE_KTLS");
    return v && !strcmp(v, "0");
  }();
  return off;
}

void Fill(tls12_crypto_info_chacha20_poly1305* ci, const DirectionKeys& k) {
  memset(ci, 0, sizeof *ci);
  ci->info.version = TLS_1_2_VERSION;
  ci->info.cipher_type = TLS_CIPHER_CHACHA20_POLY1305;
  memcpy(ci->iv, k.iv, sizeof ci->iv);
  memcpy(ci->key, k.key, sizeof ci->key);
  for (int i = 7; i >= 0; i--) ci->rec_seq[7 - i] = uint8_t(k.seq >> (8 * i));
}

}  // namespace

bool KernelTlsMayWork() { return !g_missing.load() && !DisabledByEnv(); }

void DisableKernelTls() { g_missing.store(true); }

Status InstallKernelTls(int fd, const TrafficKeys& keys) {
  if (!KernelTlsMayWork()) return Status(ENOENT, "kernel TLS is not available");
  if (setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof "tls") != 0) {
    int e = errno;
    if (e == ENOENT || e == ENOPROTOOPT || e == EOPNOTSUPP) {
      g_missing.store(true);
      return Status(ENOENT, std::string("this kernel has no TLS (module tls): ") + strerror(e));
    }
    return Status(e, std::string("setsockopt TCP_ULP tls: ") + strerror(e));
  }
  // Receive side first: while only the ULP is attached, the socket still
  // passes bytes through unchanged, so a kernel that cannot take ChaCha20
  // records leaves it usable in userspace.
  tls12_crypto_info_chacha20_poly1305 ci;
  Fill(&ci, keys.rx);
  int rc = setsockopt(fd, SOL_TLS, TLS_RX, &ci, sizeof ci);
  int e = errno;
  explicit_bzero(&ci, sizeof ci);
  if (rc != 0) {
    if (e == ENOENT || e == ENOPROTOOPT || e == EOPNOTSUPP || e == EINVAL) {
      g_missing.store(true);
      return Status(ENOENT, std::string("kernel TLS cannot receive ChaCha20-Poly1305: ") + strerror(e));
    }
    return Status(e, std::string("setsockopt TLS_RX: ") + strerror(e));
  }
  Fill(&ci, keys.tx);
  rc = setsockopt(fd, SOL_TLS, TLS_TX, &ci, sizeof ci);
  e = errno;
  explicit_bzero(&ci, sizeof ci);
  if (rc != 0) return Status(e, std::string("setsockopt TLS_TX: ") + strerror(e));
  return Status::Ok();
}

Result<KernelTlsRead> ReadKernelTls(int fd, char* buf, size_t len) {
  // The kernel puts the record type in a control message; a record other
  // than application data comes alone, whole, and only when there is room
  // for that message (read() gets EIO instead).
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(unsigned char))];
  iovec iov{buf, len};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = recvmsg(fd, &m, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  KernelTlsRead r;
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return r;
    int e = errno;
    return Status(e, std::string("kernel TLS read: ") + strerror(e));
  }
  if (m.msg_flags & MSG_CTRUNC) return Status(EPROTO, "kernel TLS read: record type truncated");
  uint8_t type = kApplicationData;
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
    if (c->cmsg_level == SOL_TLS && c->cmsg_type == TLS_GET_RECORD_TYPE)
      type = *reinterpret_cast<const unsigned char*>(CMSG_DATA(c));
  if (type == kApplicationData) {
    r.kind = n == 0 ? KernelTlsRead::kEnd : KernelTlsRead::kData;
    r.len = size_t(n);
    return r;
  }
  if (type != kAlert)
    return Status(EPROTO, "unexpected TLS record type " + std::to_string(type) +
                              " after the handshake (kernel TLS)");
  if (n != 2) return Status(EPROTO, "malformed TLS alert (kernel TLS)");
  // close_notify (at either level, as the userspace record layer takes it)
  // ends the peer's side only; any other alert ends the connection.
  if (uint8_t(buf[1]) == kCloseNotify) {
    r.kind = KernelTlsRead::kEnd;
    r.close_notify = true;
    return r;
  }
  return Status(EPROTO, std::string("peer sent ") + (buf[0] == 1 ? "warning" : "fatal") +
                            " TLS alert " + std::to_string(uint8_t(buf[1])) + " (kernel TLS)");
}

Status SendKernelCloseNotify(int fd) {
  unsigned char alert[2] = {1, kCloseNotify};  // warning level
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(unsigned char))] = {};
  iovec iov{alert, sizeof alert};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_TLS;
  c->cmsg_type = TLS_SET_RECORD_TYPE;
  c->cmsg_len = CMSG_LEN(sizeof(unsigned char));
  *reinterpret_cast<unsigned char*>(CMSG_DATA(c)) = kAlert;
  m.msg_controllen = c->cmsg_len;
  ssize_t n;
  do {
    n = sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    int e = errno;
    return Status(e, std::string("sending close_notify (kernel TLS): ") + strerror(e));
  }
  if (size_t(n) != sizeof alert) return Status(EIO, "close_notify (kernel TLS) sent in part");
  return Status::Ok();
}

}  // namespace muscle::tls
