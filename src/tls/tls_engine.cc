#include "tls/tls_engine.h"

extern "C" {
#include <mbedtls/constant_time.h>  // this header lacks C++ guards in 2.28
}
#include <mbedtls/error.h>
#include <mbedtls/platform_util.h>
#include <sys/random.h>

#include <cstring>

namespace muscle::tls {

namespace {

const int kSuites[] = {
    MBEDTLS_TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_PSK_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_PSK_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_PSK_WITH_AES_128_GCM_SHA256,
    0,
};

// Ciphertext handed to the transport at least this often.
constexpr size_t kSendBatch = 64 * 1024;

const mbedtls_ecp_group_id kCurves[] = {
    MBEDTLS_ECP_DP_CURVE25519,
    MBEDTLS_ECP_DP_SECP256R1,
    MBEDTLS_ECP_DP_NONE,
};

}  // namespace

std::string TlsError(int rc) {
  char buf[256];
  mbedtls_strerror(rc, buf, sizeof buf);
  char code[32];
  snprintf(code, sizeof code, " (-0x%04x)", unsigned(-rc));
  return std::string(buf) + code;
}

TlsContext::~TlsContext() {
  if (!initialised_) return;
  mbedtls_ssl_config_free(&conf_);
  mbedtls_ctr_drbg_free(&drbg_);
  mbedtls_entropy_free(&entropy_);
}

Status TlsContext::Init(bool server) {
  server_ = server;
  mbedtls_ssl_config_init(&conf_);
  mbedtls_entropy_init(&entropy_);
  mbedtls_ctr_drbg_init(&drbg_);
  initialised_ = true;
  static const char pers[] = "musclefs";
  int rc = mbedtls_ctr_drbg_seed(&drbg_, mbedtls_entropy_func, &entropy_,
                                 reinterpret_cast<const unsigned char*>(pers), sizeof pers);
  if (rc) return Status(EIO, "random generator: " + TlsError(rc));
  rc = mbedtls_ssl_config_defaults(&conf_, server ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
                                   MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
  if (rc) return Status(EIO, "TLS config: " + TlsError(rc));
  mbedtls_ssl_conf_rng(&conf_, mbedtls_ctr_drbg_random, &drbg_);
  mbedtls_ssl_conf_min_version(&conf_, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_max_version(&conf_, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_ciphersuites(&conf_, kSuites);
  mbedtls_ssl_conf_curves(&conf_, kCurves);
  mbedtls_ssl_conf_renegotiation(&conf_, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
  mbedtls_ssl_conf_export_keys_ext_cb(&conf_, ExportKeys, this);
  return Status::Ok();
}

Result<std::unique_ptr<TlsContext>> TlsContext::ForServer(KeyLookup lookup,
                                                         uint32_t ticket_lifetime_seconds) {
  return ForServer(std::move(lookup), ticket_lifetime_seconds > 0
                                          ? std::make_shared<TicketSealer>(ticket_lifetime_seconds)
                                          : nullptr);
}

Result<std::unique_ptr<TlsContext>> TlsContext::ForServer(KeyLookup lookup,
                                                         std::shared_ptr<TicketSealer> tickets) {
  std::unique_ptr<TlsContext> c(new TlsContext());
  MUSCLE_RETURN_IF_ERROR(c->Init(true));
  c->lookup_ = std::move(lookup);
  mbedtls_ssl_conf_psk_cb(&c->conf_, PskCallback, c.get());
  if (tickets) {
    c->tickets_ = std::move(tickets);
    mbedtls_ssl_conf_session_tickets_cb(&c->conf_, TicketWrite, TicketParse, c.get());
  }
  return c;
}

Result<std::unique_ptr<TlsContext>> TlsContext::ForClient(const std::string& identity,
                                                         const auth::Secret& key,
                                                         std::shared_ptr<SessionCache> cache) {
  std::unique_ptr<TlsContext> c(new TlsContext());
  MUSCLE_RETURN_IF_ERROR(c->Init(false));
  c->sessions_ = std::move(cache);
  mbedtls_ssl_conf_session_tickets(&c->conf_, c->sessions_ ? MBEDTLS_SSL_SESSION_TICKETS_ENABLED
                                                            : MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
  const std::string& k = key.bytes();
  int rc = mbedtls_ssl_conf_psk(&c->conf_, reinterpret_cast<const unsigned char*>(k.data()),
                                k.size(), reinterpret_cast<const unsigned char*>(identity.data()),
                                identity.size());
  if (rc) return Status(EINVAL, "PSK for " + identity + ": " + TlsError(rc));
  return c;
}

int TlsContext::PskCallback(void* ctx, mbedtls_ssl_context* ssl, const unsigned char* id,
                            size_t len) {
  auto* self = static_cast<TlsContext*>(ctx);
  auto* engine = static_cast<TlsEngine*>(ssl->p_bio);
  engine->identity_.assign(reinterpret_cast<const char*>(id), len);
  const auth::Secret* key = self->lookup_ ? self->lookup_(engine->identity_) : nullptr;
  engine->identity_known_ = key != nullptr;
  if (!key) {
    // Continue with a random key so that an unknown identity fails the
    // same way, at the same point, as a wrong key.
    std::string r(32, '\0');
    if (getrandom(r.data(), r.size(), 0) != 32) return -1;
    engine->dummy_key_ = auth::Secret(std::move(r));
    key = &engine->dummy_key_;
  }
  const std::string& k = key->bytes();
  return mbedtls_ssl_set_hs_psk(ssl, reinterpret_cast<const unsigned char*>(k.data()), k.size());
}

int TlsContext::TicketWrite(void* ctx, const mbedtls_ssl_session* session, unsigned char* start,
                            const unsigned char* end, size_t* tlen, uint32_t* lifetime) {
  auto* self = static_cast<TlsContext*>(ctx);
  TlsEngine* engine = self->handshaking_;
  // Only a known identity gets a ticket (an unknown one never reaches
  // this point anyway: its Finished message fails).
  const auth::Secret* key = engine && engine->identity_known_ && self->lookup_
                                ? self->lookup_(engine->identity_)
                                : nullptr;
  if (!key) return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
  TicketSealer::Owner owner{engine->identity_, KeyDigest(key->bytes())};
  if (!self->tickets_->Seal(owner, *session, start, end, tlen).ok())
    return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
  *lifetime = self->tickets_->lifetime_seconds();
  return 0;
}

int TlsContext::TicketParse(void* ctx, mbedtls_ssl_session* session, unsigned char* buf,
                            size_t len) {
  auto* self = static_cast<TlsContext*>(ctx);
  TlsEngine* engine = self->handshaking_;
  if (!engine) return MBEDTLS_ERR_SSL_INVALID_MAC;
  TicketSealer::Owner owner;
  if (!self->tickets_->Open(buf, len, session, &owner).ok()) return MBEDTLS_ERR_SSL_INVALID_MAC;
  // The identity must still hold the same key: removal or rotation in the
  // keys file ends resumption too.
  const auth::Secret* key = self->lookup_ ? self->lookup_(owner.identity) : nullptr;
  if (!key || mbedtls_ct_memcmp(KeyDigest(key->bytes()).data(), owner.key_digest.data(),
                                owner.key_digest.size()) != 0) {
    mbedtls_ssl_session_free(session);
    return MBEDTLS_ERR_SSL_SESSION_TICKET_EXPIRED;
  }
  engine->identity_ = owner.identity;
  engine->identity_known_ = true;
  engine->resumed_ = true;
  return 0;
}

int TlsContext::ExportKeys(void* ctx, const unsigned char*, const unsigned char* kb,
                           size_t maclen, size_t keylen, size_t ivlen, const unsigned char*,
                           const unsigned char*, mbedtls_tls_prf_types) {
  auto* self = static_cast<TlsContext*>(ctx);
  TlsEngine* engine = self->handshaking_;
  // The key block of an AEAD suite is client key, server key, client IV,
  // server IV; ChaCha20-Poly1305 is the one with 32-byte keys and a
  // 12-byte IV (AES-GCM has a 4-byte implicit IV).
  if (!engine || !self->offload_ || maclen != 0 || keylen != 32 || ivlen != 12) return 0;
  auto keys = std::make_unique<TrafficKeys>();
  const unsigned char* ck = kb;
  const unsigned char* sk = kb + 32;
  const unsigned char* civ = kb + 64;
  const unsigned char* siv = kb + 76;
  bool server = self->server_;
  memcpy(keys->tx.key, server ? sk : ck, 32);
  memcpy(keys->tx.iv, server ? siv : civ, 12);
  memcpy(keys->rx.key, server ? ck : sk, 32);
  memcpy(keys->rx.iv, server ? civ : siv, 12);
  if (engine->exported_) engine->exported_->Wipe();
  engine->exported_ = std::move(keys);
  return 0;
}

TlsEngine::TlsEngine(TlsContext& ctx) : ctx_(ctx) {
  mbedtls_ssl_init(&ssl_);
  mbedtls_ssl_setup(&ssl_, ctx.config());
  mbedtls_ssl_set_bio(&ssl_, this, BioSend, BioRecv, nullptr);
  if (ctx.sessions_) ctx.sessions_->Offer(&ssl_);
}

TlsEngine::~TlsEngine() {
  if (exported_) exported_->Wipe();
  if (!ssl_freed_) mbedtls_ssl_free(&ssl_);
  mbedtls_platform_zeroize(pending_plain_.data(), pending_plain_.size());
}

int TlsEngine::BioSend(void* ctx, const unsigned char* buf, size_t len) {
  auto* e = static_cast<TlsEngine*>(ctx);
  e->out_.append(reinterpret_cast<const char*>(buf), len);
  // Records go to the socket as they are sealed (a few at a time), so the
  // peer decrypts the start of a large reply while the rest is encrypted.
  if (e->out_.size() >= kSendBatch) {
    // The transport may react by closing; Close() must not re-enter
    // mbedTLS from inside this callback.
    e->in_bio_ = true;
    e->FlushOut();
    e->in_bio_ = false;
  }
  return int(len);
}

int TlsEngine::BioRecv(void* ctx, unsigned char* buf, size_t len) {
  auto* e = static_cast<TlsEngine*>(ctx);
  size_t avail = e->in_.size() - e->in_pos_;
  if (avail == 0) return MBEDTLS_ERR_SSL_WANT_READ;
  size_t n = std::min(avail, len);
  memcpy(buf, e->in_.data() + e->in_pos_, n);
  e->in_pos_ += n;
  if (e->in_pos_ == e->in_.size()) {
    e->in_.clear();
    e->in_pos_ = 0;
  }
  return int(n);
}

void TlsEngine::FlushOut() {
  if (out_.empty() || !on_ciphertext || in_flush_) return;
  std::string b;
  b.swap(out_);
  // The transport may close the connection from here; Close() must then
  // neither re-enter mbedTLS nor flush again.
  in_flush_ = true;
  on_ciphertext(std::move(b));
  in_flush_ = false;
}

namespace {
uint64_t GetU64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  return v;
}
}  // namespace

Status TlsEngine::StartRecordLayer() {
  std::unique_ptr<TrafficKeys> keys = std::move(exported_);
  if (!keys || suite().find("CHACHA20-POLY1305") == std::string::npos) {
    if (keys) keys->Wipe();
    return Status::Ok();  // mbedTLS keeps the records
  }
  // The handshake's Finished messages were the first records under these
  // keys; mbedTLS counted them.
  keys->tx.seq = GetU64(ssl_.cur_out_ctr);
  keys->rx.seq = GetU64(ssl_.in_ctr);
  record_ = std::make_unique<RecordLayer>(*keys);
  keys->Wipe();
  mode_ = Records::kUserspace;
  // mbedTLS has nothing left to do: its record buffers (~33 KiB per
  // connection) and key material go now.
  suite_ = suite();
  mbedtls_ssl_free(&ssl_);
  ssl_freed_ = true;
  return Status::Ok();
}

Status TlsEngine::ReadRecords(const char* data, size_t len) {
  plain_.clear();
  Result<size_t> r = record_->Read(data, len, &plain_, &out_);
  // Records opened before a failure were genuine: deliver them.
  if (!plain_.empty() && on_plaintext) on_plaintext(plain_.data(), plain_.size());
  if (plain_.capacity() > 4 * kMaxRecordPlaintext) std::string().swap(plain_);
  if (!r.ok()) {
    // The peer's close_notify (ECONNRESET) ends its side only: replies to
    // what it sent may still be written.
    if (r.status().err() != ECONNRESET) failed_ = true;
    FlushOut();  // the alert
    return r.status();
  }
  FlushOut();
  size_t used = *r;
  if (data == in_.data() + in_pos_) {
    in_pos_ += used;
    if (in_pos_ == in_.size()) {
      in_.clear();
      in_pos_ = 0;
    } else if (in_pos_ > kMaxRecordCiphertext) {
      in_.erase(0, in_pos_);
      in_pos_ = 0;
    }
  } else {
    in_.append(data + used, len - used);  // a partial record waits for the rest
  }
  return Status::Ok();
}

Result<TrafficKeys> TlsEngine::KeysForKernel() const {
  if (mode_ != Records::kUserspace || failed_)
    return Status(EINVAL, "the connection is not on the userspace record layer");
  if (in_.size() != in_pos_ || !out_.empty())
    return Status(EAGAIN, "TLS records are in flight; the kernel cannot take over mid-stream");
  return record_->Export();
}

void TlsEngine::MovedToKernel() {
  record_.reset();
  mode_ = Records::kKernel;
}

const char* TlsEngine::records_name() const {
  switch (mode_) {
    case Records::kKernel: return "kernel";
    case Records::kUserspace: return "userspace";
    default: return "mbedtls";
  }
}

Status TlsEngine::Fail(const char* what, int rc) {
  failed_ = true;
  FlushOut();  // deliver any alert
  return Status(EPROTO, std::string(what) + ": " + TlsError(rc));
}

Status TlsEngine::Start() { return Pump(); }

Status TlsEngine::Feed(const char* data, size_t len) {
  if (failed_) return Status(EPROTO, "TLS connection already failed");
  if (mode_ == Records::kKernel) {
    if (on_plaintext) on_plaintext(data, len);
    return Status::Ok();
  }
  if (mode_ == Records::kUserspace) {
    if (in_.size() == in_pos_) return ReadRecords(data, len);
    in_.append(data, len);
    return ReadRecords(in_.data() + in_pos_, in_.size() - in_pos_);
  }
  in_.append(data, len);
  return Pump();
}

Status TlsEngine::Pump() {
  if (!ready_) {
    ctx_.handshaking_ = this;
    int rc = mbedtls_ssl_handshake(&ssl_);
    ctx_.handshaking_ = nullptr;
    FlushOut();
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) return Status::Ok();
    if (rc != 0) {
      // A session the server no longer accepts is not offered again.
      if (ctx_.sessions_) ctx_.sessions_->Clear();
      return Fail("TLS handshake failed", rc);
    }
    ready_ = true;
    if (ctx_.sessions_) ctx_.sessions_->Save(ssl_);
    MUSCLE_RETURN_IF_ERROR(StartRecordLayer());
    if (on_ready) on_ready();
    if (!pending_plain_.empty()) {
      std::string p;
      p.swap(pending_plain_);
      MUSCLE_RETURN_IF_ERROR(WriteNow(p.data(), p.size()));
    }
    if (mode_ == Records::kKernel) return Status::Ok();  // nothing was left over
    if (mode_ == Records::kUserspace) {
      if (in_.size() == in_pos_) return Status::Ok();
      return ReadRecords(in_.data() + in_pos_, in_.size() - in_pos_);
    }
  }
  unsigned char buf[16384];
  for (;;) {
    int rc = mbedtls_ssl_read(&ssl_, buf, sizeof buf);
    if (rc > 0) {
      if (on_plaintext) on_plaintext(reinterpret_cast<const char*>(buf), size_t(rc));
      continue;
    }
    FlushOut();
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) return Status::Ok();
    if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
      return Status(ECONNRESET, "peer closed the TLS session");
    return Fail("TLS read failed", rc);
  }
}

Status TlsEngine::Write(const char* data, size_t len) {
  if (failed_) return Status(EPROTO, "TLS connection failed");
  if (!ready_) {
    pending_plain_.append(data, len);
    return Status::Ok();
  }
  return WriteNow(data, len);
}

Status TlsEngine::WriteNow(const char* data, size_t len) {
  if (mode_ == Records::kKernel) {
    if (on_ciphertext) on_ciphertext(std::string(data, len));
    return Status::Ok();
  }
  if (mode_ == Records::kUserspace) {
    // A batch at a time, so the peer opens the first records of a large
    // reply while the rest is sealed.
    for (size_t off = 0; off < len;) {
      size_t n = std::min(kSendBatch, len - off);
      Status s = record_->Write(data + off, n, &out_);
      if (!s.ok()) {
        failed_ = true;
        return s;
      }
      FlushOut();
      off += n;
    }
    return Status::Ok();
  }
  size_t off = 0;
  while (off < len) {
    int rc = mbedtls_ssl_write(&ssl_, reinterpret_cast<const unsigned char*>(data) + off,
                               len - off);
    if (rc > 0) {
      off += size_t(rc);
      continue;
    }
    if (rc == MBEDTLS_ERR_SSL_WANT_WRITE || rc == MBEDTLS_ERR_SSL_WANT_READ) continue;
    return Fail("TLS write failed", rc);
  }
  FlushOut();
  return Status::Ok();
}

void TlsEngine::Close() {
  if (mode_ == Records::kKernel) return;
  if (mode_ == Records::kUserspace) {
    if (ready_ && !failed_ && !in_flush_) {
      record_->CloseNotify(&out_);
      FlushOut();
    }
    return;
  }
  if (ready_ && !failed_ && !in_bio_) {
    mbedtls_ssl_close_notify(&ssl_);
    FlushOut();
  }
}

std::string TlsEngine::suite() const {
  if (ssl_freed_) return suite_;
  const char* s = mbedtls_ssl_get_ciphersuite(&ssl_);
  return s ? s : "none";
}

}  // namespace muscle::tls
