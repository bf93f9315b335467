// The keyring of an encrypted store: every data key it has had, so that
// the key can rotate (`musclefs key rotate`) while data sealed under the
// older keys stays readable, and what names and cuts chunks, which must
// not change when the key does.
//
// Generations. A store's first master key is generation 1; each rotation
// adds the next generation, a new random 32-byte key that becomes the
// current one. Every generation seals the containers (packs) numbered from
// its `first` container on, up to the next generation's `first`:
// container numbers only grow (the open container, the highest, is never
// removed, and a rolled-back number is handed out again only above the
// last committed one), so the key of a pack follows from its number alone
// and nothing per pack has to be written or looked up (a reader thread,
// restore-from's index objects and the pack files are unchanged). A
// rotation starts the new generation past the highest committed container,
// and the store then starts a new container at its next write (the open
// one stays under the key it was begun with). Pack keys are PackKey(the
// generation's key, pack id) as before.
//
// Naming. Chunk ids and the chunker's gear table come from generation 1's
// key (ChunkIdKey, DeriveGearTable) and are kept in the keyring as those
// derived values, not as that key: they never change (so deduplication
// and every stored name survive a rotation), and a keyring whose
// generation 1 is retired no longer holds anything that opens its packs.
// So whoever learnt an old key can still compute the ids of chunks whose
// plaintext they know (and recognize cut points): rotation protects data
// written after it, and data rewritten after it, not the names.
//
// Retiring. Once no container of a generation is left (gc rewrote them
// under the current key), the generation may be retired: its key is
// dropped from the keyring, its line stays without the key (so its range
// of container numbers is still known, and a pack found there is refused
// by name rather than opened under the wrong key). The current generation
// cannot be retired.
//
// The wrapping. The keyring is sealed under KeyringKey(current key): the
// key files hold the current key only (keys.h), and from it the keyring
// gives every older one. A key file holding an older key opens nothing:
// the store refuses it (server/store_key.h). Text inside the seal (ASCII,
// lines ending "\n", hex lower case; the format, pinned by the tests):
//   musclefs keyring 1
//   chunk-id <64 hex: ChunkIdKey of generation 1>
//   gear <4096 hex: DeriveGearTable of generation 1, 64-bit little-endian entries>
//   key <generation> <first container> <key id> <64 hex: the key>
//   retired <generation> <first container> <key id>
//   ... one line per generation, in increasing order of both numbers,
//   generations 1, 2, 3, ... without gaps; the last one is a "key" line
//   (the current generation).
// The sealed form, as stored (store.db meta 'keyring', and the bucket's
// "keyring" object):
//   "musclefs keyring 1 <key id of the current key> <its generation>\n"
//   + sealed blob
// where the blob is seal.h's Seal under KeyringKey(current key) with the
// associated data ForRecord(kKeyring, store id, "keyring", current
// generation). Another store's keyring, a keyring relabelled or altered,
// or a keyring opened with another key fails (EIO, EACCES).
//
// Memory: keys live in MasterKey and Key objects (wiped); the text forms
// are wiped in the .cc. Threading: immutable values once made; share them
// (shared_ptr<const Keyring>) between threads for reading.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "crypto/keys.h"

namespace muscle::crypto {

class Keyring {
 public:
  struct Generation {
    uint32_t number = 0;
    uint64_t first = 0;  // the first container sealed under it
    KeyId id;
    std::optional<MasterKey> key;  // empty once retired
  };

  // A store's keyring before any rotation: `master` is generation 1 from
  // container 0 on, and the names come from it.
  static Keyring First(const MasterKey& master);
  // Opens a sealed keyring (the form above) of store `store_id` with
  // `key`: EACCES when it is sealed under another key (the message gives
  // both key ids), EIO when it does not authenticate, EINVAL when it is
  // malformed.
  static Result<Keyring> Open(std::string_view sealed, const MasterKey& key,
                              std::string_view store_id);
  // The sealed form, under the current key.
  Result<std::string> Seal(std::string_view store_id) const;
  // The key id a sealed keyring says it is sealed under (EINVAL when it is
  // not a sealed keyring). Opens nothing.
  static Result<KeyId> SealedUnder(std::string_view sealed);

  Keyring Clone() const;
  // A copy with `key` as generation current().number + 1 from container
  // `first` on (at least the current generation's first; EINVAL below it
  // or for a key the keyring has already).
  Result<Keyring> Rotated(const MasterKey& key, uint64_t first) const;
  // A copy whose current generation starts at container `first` (not
  // below the generation before it: EINVAL).
  Result<Keyring> WithCurrentFirst(uint64_t first) const;
  // A copy with generation `number` retired (its key dropped). EINVAL for
  // the current generation or one that does not exist; retiring one
  // retired already changes nothing.
  Result<Keyring> Retired(uint32_t number) const;

  const Generation& current() const { return gens_.back(); }
  const std::vector<Generation>& generations() const { return gens_; }
  // The generation that sealed container `container` (never null: the
  // first generation starts at 0). Its key is empty when retired.
  const Generation& ForContainer(uint64_t container) const;
  // The generation of key id `id`, or null.
  const Generation* Find(const KeyId& id) const;
  // One past the last container of generation `number` (UINT64_MAX for the current one).
  uint64_t EndOf(uint32_t number) const;

  const Key& chunk_id_key() const { return *chunk_id_; }
  const GearTable& gear() const { return gear_; }

 private:
  Keyring() = default;
  std::optional<Key> chunk_id_;
  GearTable gear_{};
  std::vector<Generation> gens_;
};

}  // namespace muscle::crypto
