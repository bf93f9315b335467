#include "store/chunk_naming.h"

#include <sodium.h>

#include <cstring>

#include "crypto/seal.h"
#include "store/chunker.h"
#include "store/sha256.h"

namespace muscle::store {

std::shared_ptr<const ChunkNaming> ChunkNaming::Plain() {
  static const std::shared_ptr<const ChunkNaming> plain(new ChunkNaming());
  return plain;
}

std::shared_ptr<const ChunkNaming> ChunkNaming::Keyed(const crypto::MasterKey& master) {
  std::shared_ptr<ChunkNaming> n(new ChunkNaming());
  n->id_key_.emplace(crypto::ChunkIdKey(master));
  n->keyed_gear_ = crypto::DeriveGearTable(master);
  n->gear_ = n->keyed_gear_.data();
  return n;
}

std::shared_ptr<const ChunkNaming> ChunkNaming::Keyed(const crypto::Keyring& keyring) {
  std::shared_ptr<ChunkNaming> n(new ChunkNaming());
  n->id_key_.emplace(keyring.chunk_id_key().Clone());
  n->keyed_gear_ = keyring.gear();
  n->gear_ = n->keyed_gear_.data();
  return n;
}

size_t ChunkNaming::CutEnd(const uint8_t* data, size_t len, bool at_end) const {
  return gear_ ? FindChunkEnd(data, len, at_end, gear_) : FindChunkEnd(data, len, at_end);
}

void ChunkNaming::Name(const void* data, size_t len, uint8_t* out) const {
  if (!id_key_) {
    Sha256(data, len, out);
    return;
  }
  std::string_view bytes(static_cast<const char*>(data), len);
  unsigned char id[crypto::kChunkIdBytes];
  if (crypto::ChunkId(*id_key_, bytes, id).ok()) {
    memcpy(out, id, sizeof id);
    return;
  }
  // libcrypto could not allocate its context: libsodium computes the same
  // HMAC-SHA256 without allocating.
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, id_key_->bytes().data(), crypto::kKeyBytes);
  crypto_auth_hmacsha256_update(&st, static_cast<const unsigned char*>(data), len);
  crypto_auth_hmacsha256_final(&st, out);
  sodium_memzero(&st, sizeof st);
}

}  // namespace muscle::store
