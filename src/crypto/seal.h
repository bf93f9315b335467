// Sealing data at rest: XChaCha20-Poly1305 with a random nonce per seal,
// associated data that binds a sealed blob to its place, and keyed chunk
// ids. Keys come from crypto/keys.h (which also says why these libraries).
//
// The AEAD is XChaCha20-Poly1305-IETF (draft-irtf-cfrg-xchacha, libsodium's
// crypto_aead_xchacha20poly1305_ietf), computed as the draft defines it:
// HChaCha20 (libsodium) of the key and the nonce's first 16 bytes gives a
// subkey, and libcrypto's ChaCha20-Poly1305 (RFC 8439) seals under it with
// the nonce 0x00000000 || the nonce's last 8 bytes. The bytes are
// libsodium's; the tests check it both ways.
//
// A sealed blob is nonce (24 bytes) || ciphertext (as long as the
// plaintext) || tag (16 bytes): kSealOverhead = 40 bytes more than the
// plaintext, the nonce stored beside the ciphertext.
//
// NONCES: never reused under one key, also after a crash. Every Seal draws
// a fresh 192-bit nonce from the OS (libsodium's randombytes_buf, which on
// Linux calls getrandom(2) each time and keeps no user-space state that a
// fork could duplicate). Nothing about the nonce comes from where the blob
// goes. That is the point: a counter nonce (pack id, record number) is
// exactly what recovery rewinds. A pack is cut back to its committed length
// at open and appended to again, and a rolled-back pack's id is handed out
// again, so the same (pack, position) then seals DIFFERENT plaintext: with
// a counter nonce that is a reused nonce (the XOR of two plaintexts leaks,
// and Poly1305 forgeries follow). With random nonces the re-append draws
// new ones; two seals under one key collide only with probability about
// q^2 / 2^193 for q seals: for 2^40 seals under one key, 2^-113. Per-pack
// keys (PackKey) split the seals between keys further; they are not what
// makes the nonces safe. The associated data (below) repeats after such a
// re-append, which is harmless: it need not be unique, only authentic.
//
// Associated data binds a blob to its place: the kind (chunk, tree object,
// index object, key file), the store id, the pack id, the record's
// position in the pack and the name the index gives it (its chunk id).
// Open with the associated data rebuilt from where the blob was found (the
// index row: pack, offset, chunk id) fails (EIO) for a blob swapped with
// another, moved to another position or pack or store, or relabelled as
// another kind; truncated, extended or altered bytes fail the tag (EIO).
// A record moved on purpose (compaction) is opened and sealed again at its
// new place. An older blob put back at the same place (one sealed there
// before a crash-cut) authenticates only if it bears the same name, that
// is the same chunk id and so the same plaintext; a blob without a name
// (an index object) should take a generation number as its position, so
// that an older one does not open as the current one.
//
// Zero copy. Seal and Open write into a caller's buffer, and work in place:
// Seal's plaintext may already sit where the ciphertext goes (out.data() +
// kNonceBytes), Open's output may be where the ciphertext is (sealed.data()
// + kNonceBytes). Any other overlap is EINVAL.
//
// Threading: pure functions of their arguments; any number of threads may
// seal and open under one Key at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "common/result.h"
#include "crypto/keys.h"

namespace muscle::crypto {

inline constexpr size_t kNonceBytes = 24;
inline constexpr size_t kTagBytes = 16;
inline constexpr size_t kSealOverhead = kNonceBytes + kTagBytes;
// ChaCha20's 32-bit block counter (block 0 keys Poly1305): 256 GiB - 64.
inline constexpr uint64_t kMaxSealPlaintext = (uint64_t(1) << 38) - 64;
inline constexpr size_t kChunkIdBytes = 32;

// What a sealed blob is. Part of the format: values never change.
enum class SealKind : uint8_t {
  kChunk = 1,        // file data, in a pack
  kTreeObject = 2,   // a snapshot's tree object, in a pack
  kIndexObject = 3,  // an index object (outside packs, under IndexKey)
  kKeyFile = 4,      // the master key in a passphrase key file
  kKeyring = 5,      // a store's keyring (crypto/keyring.h, under KeyringKey)
};

// The associated data of one seal, built here so that every caller binds
// the same fields the same way. Encoding (format, pinned by the tests):
//   "musclefs-ad" (11 bytes), version 0x01, the kind byte, then
//   for records: u8 length + store id, u8 length + pack id, u64
//     little-endian position, u8 length + name;
//   for a key file: u16 little-endian length + the header text.
// Lengths make the encoding one-to-one. A plain value (no allocation).
class AssociatedData {
 public:
  static constexpr size_t kMaxField = 64;     // store id, pack id, name
  static constexpr size_t kMaxHeader = 512;   // key-file header text
  // A record (chunk, tree object, index object or keyring). `position` is the
  // record's place in its pack; use its data offset, which the index keeps,
  // so a reader rebuilds this from the index row (an ordinal works too if
  // the reader knows it). `name` is the chunk id the index gives the record
  // (may be empty: an index object has none). EINVAL when a field is longer
  // than kMaxField or kind is kKeyFile.
  static Result<AssociatedData> ForRecord(SealKind kind, std::string_view store_id,
                                          std::string_view pack_id, uint64_t position,
                                          std::string_view name = {});
  // A passphrase key file: binds the lines before "sealed" (keys.h).
  // EINVAL when longer than kMaxHeader.
  static Result<AssociatedData> ForKeyFile(std::string_view header);

  std::span<const unsigned char> bytes() const { return {buf_, len_}; }

 private:
  AssociatedData() = default;
  unsigned char buf_[16 + kMaxHeader] = {};
  size_t len_ = 0;
};

// Seals `plaintext` (at most kMaxSealPlaintext bytes; empty is allowed)
// into `out`, exactly plaintext.size() + kSealOverhead bytes: a fresh
// random nonce, the ciphertext, the tag. `plaintext` is either exactly
// out's ciphertext part (in place) or disjoint from `out`. EINVAL for a
// wrong size or overlap, ENOMEM if libcrypto fails (its only failure mode
// is allocation).
Status Seal(const Key& key, const AssociatedData& ad, std::string_view plaintext,
            std::span<char> out);

// Opens `sealed` into `out`, exactly sealed.size() - kSealOverhead bytes,
// either exactly sealed's ciphertext part (in place) or disjoint. EIO when
// the blob does not authenticate under `key` and `ad`: altered, truncated
// (shorter than kSealOverhead included), extended, moved, or the wrong key;
// `out` is then zeroed (no unauthenticated plaintext is left behind).
// EINVAL for a wrong `out` size or overlap, ENOMEM if libcrypto fails.
// Nothing but a failed authentication is EIO.
Status Open(const Key& key, const AssociatedData& ad, std::string_view sealed,
            std::span<char> out);

// The id of a chunk: HMAC-SHA256 of its plaintext under ChunkIdKey(master).
// It replaces the plaintext SHA-256 everywhere (index, record headers, tree
// objects). ENOMEM if libcrypto fails.
Status ChunkId(const Key& chunk_id_key, std::string_view data,
               unsigned char (&out)[kChunkIdBytes]);

}  // namespace muscle::crypto
