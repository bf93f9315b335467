#include "tls/ktls.h"

#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#ifndef SOL_TLS
#define SOL_TLS 282
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

}  // namespace muscle::tls
