// TLS 1.2 with pre-shared keys on mbedTLS 2.28, over memory buffers so
// that libuv owns the socket.
//
// A TlsContext holds the configuration shared by many connections (suites,
// curves, random generator, and for servers the PSK lookup). A TlsEngine is
// one connection's TLS state: the transport hands it received ciphertext
// (Feed) and plaintext to send (Write); the engine reports decrypted bytes
// through on_plaintext and bytes for the wire through on_ciphertext.
//
// Suites: ECDHE-PSK with ChaCha20-Poly1305 first (forward secrecy), then
// plain PSK AEAD suites for older peers; never a suite without encryption.
// Curves X25519 and P-256. For an unknown identity the server continues
// with a random key, so it fails exactly like a wrong key (RFC 4279 2).
//
// Resumption: a server context issues session tickets (session_tickets.h)
// so reconnecting clients skip the key exchange; a client context given a
// SessionCache offers the last session and keeps the new one.
//
// Threading: a context and its engines are used on one thread (the loop);
// only a client's SessionCache may be shared across threads.
// Lifetime: a context must outlive its engines. Key material inside
// mbedTLS is zeroized when an engine is freed.
#pragma once

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/ssl.h>

#include <functional>
#include <memory>
#include <string>

#include "auth/keys.h"
#include "tls/record_layer.h"
#include "tls/session_tickets.h"
#include "common/result.h"

namespace muscle::tls {

class TlsEngine;

class TlsContext {
 public:
  // Looks up the key for an identity; nullptr when unknown.
  using KeyLookup = std::function<const auth::Secret*(const std::string& identity)>;

  // ticket_lifetime_seconds 0 turns session tickets off.
  static Result<std::unique_ptr<TlsContext>> ForServer(
      KeyLookup lookup,
      uint32_t ticket_lifetime_seconds = TicketSealer::kDefaultLifetimeSeconds);
  // A server context issuing and accepting tickets with `tickets` (null:
  // no resumption), shared with other contexts: one per event loop.
  static Result<std::unique_ptr<TlsContext>> ForServer(KeyLookup lookup,
                                                       std::shared_ptr<TicketSealer> tickets);
  // With a cache, handshakes resume the cached session when the server
  // accepts it, and store the session they end with.
  static Result<std::unique_ptr<TlsContext>> ForClient(
      const std::string& identity, const auth::Secret& key,
      std::shared_ptr<SessionCache> cache = nullptr);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  mbedtls_ssl_config* config() { return &conf_; }
  bool is_server() const { return server_; }
  // Whether connections move to the fast record layer (record_layer.h)
  // after a ChaCha20-Poly1305 handshake (default); off, mbedTLS seals and
  // opens every record (the tests use that as the reference peer).
  void set_record_offload(bool on) { offload_ = on; }
  TicketSealer* tickets() { return tickets_.get(); }
  std::shared_ptr<TicketSealer> shared_tickets() const { return tickets_; }

 private:
  friend class TlsEngine;
  TlsContext() = default;
  Status Init(bool server);
  static int PskCallback(void* ctx, mbedtls_ssl_context* ssl, const unsigned char* id,
                         size_t len);
  static int TicketWrite(void* ctx, const mbedtls_ssl_session* session, unsigned char* start,
                         const unsigned char* end, size_t* tlen, uint32_t* lifetime);
  static int TicketParse(void* ctx, mbedtls_ssl_session* session, unsigned char* buf,
                         size_t len);
  static int ExportKeys(void* ctx, const unsigned char* ms, const unsigned char* kb, size_t maclen,
                        size_t keylen, size_t ivlen, const unsigned char client_random[32],
                        const unsigned char server_random[32], mbedtls_tls_prf_types prf);

  bool server_ = false;
  bool offload_ = true;
  bool initialised_ = false;
  KeyLookup lookup_;
  std::shared_ptr<TicketSealer> tickets_;
  std::shared_ptr<SessionCache> sessions_;
  // The engine inside mbedtls_ssl_handshake, for the ticket callbacks
  // (which mbedTLS gives no connection argument).
  TlsEngine* handshaking_ = nullptr;
  mbedtls_ssl_config conf_;
  mbedtls_entropy_context entropy_;
  mbedtls_ctr_drbg_context drbg_;
};

class TlsEngine {
 public:
  explicit TlsEngine(TlsContext& ctx);
  ~TlsEngine();
  TlsEngine(const TlsEngine&) = delete;
  TlsEngine& operator=(const TlsEngine&) = delete;

  // Client side: sends the ClientHello.
  Status Start();
  // Received ciphertext. A non-OK status is fatal for the connection; its
  // message says why (e.g. a bad key).
  Status Feed(const char* data, size_t len);
  // Plaintext to send; buffered until the handshake completes.
  Status Write(const char* data, size_t len);
  // Sends close_notify (skipped when called back from inside mbedTLS).
  void Close();

  bool ready() const { return ready_; }
  // The PSK identity the peer presented (server) or we used (client).
  const std::string& identity() const { return identity_; }
  // Whether the server side found the identity in its keys.
  bool identity_known() const { return identity_known_; }
  // Server side: the client resumed a session from a ticket (no key exchange).
  bool resumed() const { return resumed_; }
  std::string suite() const;
  // Which code seals and opens records after the handshake: mbedTLS, the
  // record layer on libcrypto, or the kernel (after DetachForKernel).
  enum class Records { kMbedTls, kUserspace, kKernel };
  Records records() const { return mode_; }
  // For a socket about to be switched to kernel TLS (ktls.h): the traffic
  // keys with the sequence numbers of the next records. Only possible when
  // the record layer is in use and no received ciphertext is left over
  // (EAGAIN otherwise: the caller keeps the userspace layer). The caller
  // wipes the keys, installs them, and calls MovedToKernel on success.
  Result<TrafficKeys> KeysForKernel() const;
  // The kernel has the keys: from now on the engine passes bytes through
  // unchanged both ways (the kernel does the crypto) and Close sends
  // nothing (the transport owns the socket and sends close_notify itself,
  // ktls.h SendKernelCloseNotify).
  void MovedToKernel();
  // "kernel", "userspace" or "mbedtls", for logs.
  const char* records_name() const;

  std::function<void(const char* data, size_t len)> on_plaintext;
  std::function<void(std::string bytes)> on_ciphertext;
  std::function<void()> on_ready;

 private:
  friend class TlsContext;
  static int BioSend(void* ctx, const unsigned char* buf, size_t len);
  static int BioRecv(void* ctx, unsigned char* buf, size_t len);
  Status Pump();
  Status WriteNow(const char* data, size_t len);
  void FlushOut();
  Status Fail(const char* what, int rc);
  Status StartRecordLayer();
  Status ReadRecords(const char* data, size_t len);

  TlsContext& ctx_;
  mbedtls_ssl_context ssl_;
  std::string in_;
  size_t in_pos_ = 0;
  std::string out_;
  std::string pending_plain_;
  bool ready_ = false;
  bool failed_ = false;
  std::string identity_;
  bool identity_known_ = false;
  bool resumed_ = false;
  bool in_bio_ = false;  // inside BioSend, called from mbedTLS
  bool in_flush_ = false;  // inside on_ciphertext
  auth::Secret dummy_key_;
  Records mode_ = Records::kMbedTls;
  // Keys exported during the handshake (ChaCha20-Poly1305 only), until the
  // record layer takes them.
  std::unique_ptr<TrafficKeys> exported_;
  std::unique_ptr<RecordLayer> record_;
  std::string plain_;  // scratch for opened records
  bool ssl_freed_ = false;  // mbedTLS's context freed once the record layer took over
  std::string suite_;       // its suite, kept
};

// Human-readable mbedTLS error.
std::string TlsError(int rc);

}  // namespace muscle::tls
