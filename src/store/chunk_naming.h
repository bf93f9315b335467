// How a store cuts file data into chunks and names them: one place that
// knows whether a store is encrypted when it cuts and hashes.
//
// A plain store cuts with the chunker's fixed gear table and names each
// chunk (and each tree object) by the SHA-256 of its bytes. An encrypted
// store (one made with a master key: crypto/keys.h) cuts with a gear table
// derived from its key and names chunks by HMAC-SHA256 of their bytes
// under a key derived from it (crypto/seal.h ChunkId), so neither the
// names nor the cut points reveal known content to whoever lacks the key.
// The names are 32 bytes either way: the index, the record headers and
// the tree objects hold them unchanged.
//
// Threading: immutable once made; shared (shared_ptr) by the store thread
// and the helpers that cut ahead of it (precut.h, the flush's cutting
// threads). Name never fails: libcrypto's HMAC falls back to libsodium's
// (the same function) when libcrypto cannot allocate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include "crypto/keyring.h"
#include "crypto/keys.h"

namespace muscle::store {

class ChunkNaming {
 public:
  // A plain store's: the fixed gear table, SHA-256.
  static std::shared_ptr<const ChunkNaming> Plain();
  // An encrypted store's, derived from its master key.
  static std::shared_ptr<const ChunkNaming> Keyed(const crypto::MasterKey& master);
  // An encrypted store's whose key has rotated: from its keyring's naming
  // keys (generation 1's, crypto/keyring.h), the same as Keyed(first key).
  static std::shared_ptr<const ChunkNaming> Keyed(const crypto::Keyring& keyring);

  bool keyed() const { return id_key_.has_value(); }
  // store/chunker.h FindChunkEnd with this store's gear table.
  size_t CutEnd(const uint8_t* data, size_t len, bool at_end) const;
  // The name of `len` bytes at `data`: 32 bytes into `out`.
  void Name(const void* data, size_t len, uint8_t* out) const;

 private:
  ChunkNaming() = default;
  std::optional<crypto::Key> id_key_;
  const uint64_t* gear_ = nullptr;  // null: the chunker's own table
  crypto::GearTable keyed_gear_{};
};

}  // namespace muscle::store
