// Keys for encryption at rest: the store's master key, the key files that
// hold it, and the subkeys derived from it. Sealing is in crypto/seal.h.
//
// Libraries. libsodium for Argon2id (crypto_pwhash: not in libcrypto 3.0),
// for HChaCha20 (the X in XChaCha20, see seal.h), for random bytes and for
// the HMAC-SHA256 of the key derivation (small inputs; libsodium's cannot
// fail or allocate, so deriving a key returns a key, not a Result).
// OpenSSL's libcrypto for the bulk: ChaCha20-Poly1305 over chunk data and
// HMAC-SHA256 chunk ids (its AVX-512 and SHA-NI code is 3.3x and 6x
// libsodium's on this machine: about 4 GB/s and 1.6 GB/s on one core).
// Every construction is a standard one, and the tests check each against a
// second implementation (libsodium's XChaCha20-Poly1305, OpenSSL's HKDF).
//
// The master key: 32 random bytes (MasterKey::Generate). Adding or removing
// a passphrase re-encrypts nothing. A store's key can rotate (`musclefs key
// rotate`): the key files then hold the new key, and the store's keyring
// (crypto/keyring.h), sealed under it, holds the older ones; "the master
// key" below is whichever key a key file holds (the current one). It is never written in the clear except in an unattended key
// file (below), which the user asks for.
//
// Subkeys. Derive(master, label, context) is HKDF-Expand (RFC 5869) with
// HMAC-SHA256, PRK = the master key (uniformly random, so the Extract step
// is skipped, RFC 5869 section 3.3), info = "musclefs-kdf-v1" 0x00 label
// 0x00 context. Labels contain no NUL, so (label, context) -> info is
// one-to-one and every label gives keys independent of the others':
//   "key-id"   16 bytes, no context: the key id (KeyIdOf)
//   "chunk-id" 32 bytes: the HMAC-SHA256 key of chunk ids (ChunkIdKey)
//   "gear"     2048 bytes: the chunker's gear table (DeriveGearTable)
//   "pack"     32 bytes, context = the pack's id bytes (PackKey)
//   "index"    32 bytes: index objects and other sealed objects that live
//              outside packs (IndexKey)
//   "keyring"  32 bytes: the key the keyring is sealed under
//              (KeyringKey, crypto/keyring.h)
// The labels and this construction are part of the format: the tests pin
// their outputs for a fixed master key.
//
// KEY FILES (the lead copies this into man/musclefs-store.5). Text, ASCII,
// lines ending in "\n", the lines exactly in this order and nothing else;
// hex is lower case. A file protected by a passphrase:
//   musclefs key file 1
//   kind passphrase
//   key-id <32 hex: the key id of the master key it holds>
//   kdf argon2id13 <opslimit> <memlimit in bytes>
//   salt <32 hex: 16 random bytes>
//   sealed <144 hex: 24-byte nonce, 32-byte encrypted master key, 16-byte tag>
// The key-encryption key is Argon2id v1.3 (libsodium's crypto_pwhash) of
// the passphrase with that salt and those limits, 32 bytes; "sealed" is
// XChaCha20-Poly1305 (seal.h) of the master key under it, with associated
// data AssociatedData::ForKeyFile(every line before "sealed", newlines
// included). A wrong passphrase, or any changed byte, fails authentication:
// EACCES "wrong passphrase". After unwrapping, the master key's key id must
// equal the file's (EINVAL otherwise). Readers accept opslimit 1 to 2^32-1
// and memlimit 8 KiB to 4 GiB. Each passphrase has its own file and salt;
// any number of files may hold one master key.
// An unattended key file (a server that starts without anyone typing):
//   musclefs key file 1
//   kind unattended
//   key-id <32 hex>
//   key <64 hex: the master key itself>
// written mode 0600, and loaded only if it is a regular file (not a
// symlink) owned by this user with no group or other permission bits
// (common/fs_util.h ReadOwnerOnlyFile). Anyone who can read it has the key.
//
// Memory. Key bytes live in Key and MasterKey objects, wiped
// (sodium_memzero) when destroyed or moved from; temporaries in the .cc
// files are wiped too. Nothing here logs, and no Status message contains
// key bytes or a passphrase. Keys are not mlock()ed: swap can hold them
// (use encrypted swap, or none, on servers that need more).
//
// Threading. Everything is a pure function of its arguments or a file
// operation; keys are immutable values, safe to share between threads for
// reading.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/result.h"

namespace muscle::crypto {

inline constexpr size_t kKeyBytes = 32;
inline constexpr size_t kKeyIdBytes = 16;

// A 32-byte symmetric key (a subkey, or a key-encryption key): what
// Seal/Open and ChunkId take. Move-only; the moved-from key is wiped.
class Key {
 public:
  // EINVAL unless `bytes` is kKeyBytes long.
  static Result<Key> FromBytes(std::string_view bytes);
  Key(Key&& other) noexcept;
  Key& operator=(Key&& other) noexcept;
  Key(const Key&) = delete;
  Key& operator=(const Key&) = delete;
  ~Key();
  Key Clone() const { return Key(bytes_); }

  // The raw bytes, to hand to a library (and to tests). Never log them.
  std::span<const unsigned char, kKeyBytes> bytes() const { return std::span(bytes_); }

 private:
  friend class MasterKey;
  explicit Key(const unsigned char* bytes);
  unsigned char bytes_[kKeyBytes];
};

// The identity of a master key: Derive(master, "key-id"), 16 bytes. It
// says which master key a key file unwraps (and, stored beside the data,
// that a key file fits a store) and reveals nothing about the key.
struct KeyId {
  std::array<unsigned char, kKeyIdBytes> bytes{};
  std::string Hex() const;
  bool operator==(const KeyId&) const = default;
};

// The store's master key. Subkeys come from it; it seals nothing itself.
class MasterKey {
 public:
  // 32 bytes from the OS's random generator (getrandom).
  static MasterKey Generate();
  // EINVAL unless `bytes` is kKeyBytes long. For tests and recovery tools.
  static Result<MasterKey> FromBytes(std::string_view bytes);
  MasterKey Clone() const { return MasterKey(key_.bytes_); }
  std::span<const unsigned char, kKeyBytes> bytes() const { return key_.bytes(); }

 private:
  explicit MasterKey(const unsigned char* bytes) : key_(bytes) {}
  Key key_;
};

// HKDF-Expand of the master key (see the top of this file) into `out`,
// 1 to 8160 bytes (255 blocks): the primitive under the functions below.
// A new use of the master key takes a new label, never one of theirs.
void Derive(const MasterKey& master, std::string_view label, std::string_view context,
            std::span<unsigned char> out);

KeyId KeyIdOf(const MasterKey& master);
// The key of chunk ids (seal.h ChunkId): ids are HMAC-SHA256 of the
// plaintext under it, so equal plaintext has equal ids within one store and
// the ids say nothing to whoever does not hold the key.
Key ChunkIdKey(const MasterKey& master);
// The data key of one pack: `pack_id` is the bytes that name the pack for
// good (its random 128-bit id, or the store id and the 64-bit number; at
// most 255 bytes are meaningful, any length is accepted).
Key PackKey(const MasterKey& master, std::string_view pack_id);
// The key of objects sealed outside packs (index objects, uploaded tree
// objects; a tree object inside a pack is sealed with the pack's key and
// SealKind::kTreeObject).
Key IndexKey(const MasterKey& master);
// The key a keyring is sealed under (crypto/keyring.h).
Key KeyringKey(const MasterKey& master);
// The content-defined chunker's gear table (store/chunker.cc's type):
// 2048 bytes of Derive(master, "gear"), little-endian 64-bit entries.
// Deterministic for one key; another key cuts elsewhere, which hides cut
// points from whoever does not hold the key (and defeats deduplication
// across stores, as it must). The table is as secret as the key.
using GearTable = std::array<uint64_t, 256>;
GearTable DeriveGearTable(const MasterKey& master);

// Argon2id limits of a passphrase key file.
struct KdfParams {
  uint64_t opslimit = 3;
  uint64_t memlimit = uint64_t(64) << 20;  // bytes
  // libsodium's minimum (1 pass, 8 KiB): for tests only.
  static KdfParams Minimum() { return {1, 8192}; }
  bool operator==(const KdfParams&) const = default;
};

enum class KeyFileKind { kPassphrase, kUnattended };

// What a key file says about itself, without a passphrase.
struct KeyFileInfo {
  KeyFileKind kind = KeyFileKind::kPassphrase;
  KeyId key_id;
  KdfParams kdf;  // passphrase files only
};

// Passphrase key files as text (for key files kept elsewhere than in a
// file: an object in a bucket). Make: EINVAL for an empty passphrase or
// limits out of range, ENOMEM when Argon2id cannot get its memory. Unlock:
// EACCES "wrong passphrase" when authentication fails, EINVAL for a text
// that is not a passphrase key file (the message says what is wrong).
Result<std::string> MakePassphraseKeyFile(const MasterKey& master, std::string_view passphrase,
                                          const KdfParams& params = {});
Result<MasterKey> UnlockPassphraseKeyFile(std::string_view text, std::string_view passphrase);
// Parses either kind (EINVAL when malformed). Does not unwrap anything.
Result<KeyFileInfo> InspectKeyFile(std::string_view text);

// The same on files. Files are written mode 0600 through a temporary file,
// fsync'ed, and then linked into place, so `path` appears whole or not at
// all and is never overwritten: EEXIST if it exists.
Status CreatePassphraseKeyFile(const std::string& path, const MasterKey& master,
                               std::string_view passphrase, const KdfParams& params = {});
Result<MasterKey> UnlockKeyFile(const std::string& path, std::string_view passphrase);
Result<KeyFileInfo> InspectKeyFileAt(const std::string& path);
// Adds a passphrase: unlocks `existing` with `passphrase` and creates
// `path` holding the same master key under `new_passphrase`.
Status AddPassphrase(const std::string& existing, std::string_view passphrase,
                     const std::string& path, std::string_view new_passphrase,
                     const KdfParams& params = {});
// Removes the key file `path`, but only after `keep` (another file, not a
// link to the same one: EINVAL) unlocks with `keep_passphrase` to the
// master key `path` holds (by key id: EINVAL if it holds another), so the
// last way to the key cannot go by mistake. EACCES if `keep` does not
// unlock. Nothing is re-encrypted: the master key stays.
Status RemovePassphrase(const std::string& path, const std::string& keep,
                        std::string_view keep_passphrase);

// The unattended key file (see the top). Write: create-only as above.
// Load: the ownership and mode checks, then EINVAL if malformed or if the
// key does not match its key id.
Status WriteUnattendedKeyFile(const std::string& path, const MasterKey& master);
Result<MasterKey> LoadUnattendedKeyFile(const std::string& path);

}  // namespace muscle::crypto
