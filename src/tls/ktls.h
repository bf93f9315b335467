// Kernel TLS (Linux net/tls): once the handshake is done in userspace, the
// socket's traffic keys and sequence numbers are installed in the kernel
// (setsockopt TCP_ULP "tls", then TLS_RX and TLS_TX with
// TLS_CIPHER_CHACHA20_POLY1305), and from then on the socket carries
// plaintext for its owner while the kernel seals and opens the records.
// This is what lets `muscle mount` hand the socket itself to the kernel's
// 9p client (trans=fd), the way NFS's tlshd does.
//
// A socket on kernel TLS delivers only application data to read(): any
// other record (an alert, a handshake message) makes read() fail with EIO.
// So its owner reads it with ReadKernelTls (recvmsg, the record type in a
// TLS_GET_RECORD_TYPE control message), which tells the peer's
// close_notify from data and from errors, and ends its own side with
// SendKernelCloseNotify (sendmsg, TLS_SET_RECORD_TYPE). A musclefs server
// sends nothing but application data after the handshake (TLS 1.2 has no
// KeyUpdate, tickets go out inside the handshake, renegotiation is
// refused), then close_notify.
//
// Thread-safe; the functions only touch the socket they are given.
#pragma once

#include <string>

#include "common/result.h"
#include "tls/record_layer.h"

namespace muscle::tls {

// Installs `keys` on the TCP socket `fd` for both directions. ENOENT or
// ENOPROTOOPT: this kernel has no TLS (module tls not loaded or not built),
// and the socket is unchanged, so the caller keeps the userspace record
// layer. Any other error leaves the socket unusable. Once the kernel said
// it has no TLS, later calls fail at once with ENOENT (no module load
// attempt per connection).
Status InstallKernelTls(int fd, const TrafficKeys& keys);

// Whether this kernel may have TLS (no earlier call found it missing).
bool KernelTlsMayWork();

// Disables kernel TLS for this process (MUSCLE_KTLS=0 does the same).
void DisableKernelTls();

// One read from a socket on kernel TLS.
struct KernelTlsRead {
  enum Kind {
    kData,   // `len` bytes of application data (plaintext) in the buffer
    kEnd,    // the peer ended its side: TCP FIN, or its close_notify alert
    kAgain,  // nothing to read now
  };
  Kind kind = kAgain;
  size_t len = 0;
  bool close_notify = false;  // kEnd by close_notify (not a bare FIN)
};

// Reads from the non-blocking kernel-TLS socket `fd` into `buf` (`len`
// bytes, at least 16 KiB so that a whole record fits). An error is a
// socket error, a fatal alert or one this side does not expect, or a
// record that is neither application data nor an alert; its message says
// which, for the log. The buffer's contents past `len` of kData are
// scratch.
Result<KernelTlsRead> ReadKernelTls(int fd, char* buf, size_t len);

// Sends a close_notify alert (warning level) on kernel-TLS socket `fd`,
// after whatever the socket already carries. Non-blocking.
Status SendKernelCloseNotify(int fd);

}  // namespace muscle::tls
