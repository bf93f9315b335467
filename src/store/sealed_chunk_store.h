// Encryption at rest: a ChunkStore that seals every record it hands to the
// store below it (the pack directory, or a bucket with its cache) and
// opens and authenticates every record it reads back. An encrypted store
// (Store::Open with a master key) puts one in front of its chunk store;
// the layers below see only sealed records and never a plaintext byte.
//
// A record's data in the container is crypto/seal.h's sealed blob: a
// 24-byte random nonce, the XChaCha20-Poly1305 ciphertext, a 16-byte tag
// (kSealOverhead = 40 bytes more than the chunk). Its key is the pack key
// of its container (crypto::PackKey of the store id and the container's
// 64-bit number) under the key of the container's generation in the
// store's keyring (crypto/keyring.h: the container's number says which;
// a container of a retired generation is refused, EIO, naming its key
// id), its associated data binds it to its place: kind chunk,
// the store id, the container number, the offset of its data in the
// container and its name (the chunk id the index gives it, itself keyed:
// store/chunk_naming.h). So a record flipped, truncated, extended, moved to
// another offset or container or store, swapped with another, or an older
// record of another chunk put back in its place, fails to open or (when
// its name is not the one the index gives: ChunkRead::name) is refused:
// the read is EIO and a log line names the container and offset. Nothing
// unauthenticated is ever returned. The record header (length, name) stays
// in the clear so that containers can be walked (Records, check, gc); its
// length counts the sealed bytes, and this layer reports chunk sizes.
//
// The index keeps chunk sizes (plaintext), as for a plain store; only the
// record footprint differs (RecordOverhead), and Punch and Records are
// translated here. Everything else is passed through.
//
// Reads. A sealed record authenticates only whole, so a read of part of a
// chunk opens all of it; the last chunks opened that way are kept
// (plaintext, in this process's memory: store/opened_chunks.h), shared by
// the writer and its readers, so that the reads of one chunk in msize
// pieces open it once whichever threads answer them. A read of a whole
// chunk is opened straight into the caller's buffer (no copy, not kept). A
// location names the same committed bytes for as long as its container
// lives (container numbers of committed containers are never reused), and
// the kept chunks are dropped at RollBackTo and Remove (the writer's).
//
// Ownership and threading: as any ChunkStore (chunk_store.h): owned by one
// Store, used on its thread; NewReader makes an instance for a reader
// thread, sharing only the kept chunks (thread-safe) and the master key
// (read-only).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "crypto/keyring.h"
#include "crypto/keys.h"
#include "store/chunk_store.h"
#include "store/opened_chunks.h"

namespace muscle::store {

class SealedChunkStore final : public ChunkStore {
 public:
  SealedChunkStore(std::unique_ptr<ChunkStore> inner,
                   std::shared_ptr<const crypto::Keyring> keyring);
  // A store whose keyring is this one key (crypto::Keyring::First).
  SealedChunkStore(std::unique_ptr<ChunkStore> inner,
                   std::shared_ptr<const crypto::MasterKey> master);
  ~SealedChunkStore() override;

  Status Open(const std::string& owner, const std::map<uint64_t, uint64_t>& committed) override;
  Result<PutResult> Put(std::string_view data, const unsigned char (&hash)[32]) override;
  ChunkLocation PlaceOf(size_t length) const override;
  uint64_t RecordOverhead() const override;
  Status ReadBatch(std::span<const ChunkRead> reads) override;
  Status ReadRecord(ChunkLocation at, uint64_t size, ChunkRecord* header,
                    std::string& data) override;
  Status Sync() override { return inner_->Sync(); }
  ContainerMark mark() const override { return inner_->mark(); }
  Status RollBackTo(const ContainerMark& mark) override;
  Status Punch(ChunkLocation at, uint64_t length) override;
  Status WaitIdle() override { return inner_->WaitIdle(); }
  std::vector<uint64_t> Containers() override { return inner_->Containers(); }
  Status Records(uint64_t container, uint64_t size, std::vector<ChunkRecord>& out) override;
  Status Remove(uint64_t container) override;
  void ForgetCached() override;
  Result<std::unique_ptr<ChunkStore>> NewReader() override;
  std::string Location() const override { return inner_->Location(); }
  void Idle() override { inner_->Idle(); }
  void SealOpen() override { inner_->SealOpen(); }
  void PublishCatalog(std::string text) override { inner_->PublishCatalog(std::move(text)); }
  // The inner store's, and "encryption: xchacha20-poly1305 key <key id>".
  std::vector<std::pair<std::string, std::string>> StatusFields() const override;

  // Conversion of an open plain store (Store::ConvertToEncrypted): the
  // store below is open already; this one seals for store `owner`.
  void Adopt(const std::string& owner) { store_id_ = owner; }
  ChunkStore& inner() { return *inner_; }
  // How many chunks the reads opened (not served from the kept ones); for tests.
  uint64_t opened() const { return opened_; }

 private:
  // The key of container `id` (the last one asked for is kept); EIO when
  // its generation is retired.
  Result<const crypto::Key*> KeyOf(uint64_t id);
  // Opens `sealed`, the record at `at` named `name` (its header's), into
  // `out` (sealed.size() - kSealOverhead bytes); EIO, logged, when it does
  // not authenticate.
  Status OpenRecord(ChunkLocation at, std::string_view sealed, const unsigned char* name,
                    char* out);
  // Reads the sealed record at `at` (a chunk of `size` bytes) into sealed_
  // and its header, whose length it checks and gives as the chunk's.
  Status ReadSealed(ChunkLocation at, uint64_t size, ChunkRecord* header);
  // EIO (logged) when `r` names another chunk than the one sealed there.
  Status CheckName(const ChunkRead& r, const unsigned char* sealed_under) const;
  std::unique_ptr<ChunkStore> inner_;
  std::shared_ptr<const crypto::Keyring> keyring_;
  std::string store_id_;
  uint64_t key_of_ = 0;  // the container whose key key_ is (0: none)
  std::optional<crypto::Key> key_;
  std::string sealed_;        // Put's and ReadRecord's sealed bytes
  std::shared_ptr<OpenedChunks> kept_;  // the chunks opened last, shared with readers
  uint64_t opened_ = 0;
};

}  // namespace muscle::store
