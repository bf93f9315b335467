#include "store/sealed_chunk_store.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/log.h"
#include "crypto/seal.h"

namespace muscle::store {

namespace {

constexpr uint64_t kSeal = crypto::kSealOverhead;
// Chunks kept opened (shared by the writer and its readers): the reads of
// a chunk in pieces, several in flight on several threads.
constexpr size_t kKeep = 16;

// A container as the pack directory and the bucket name it (16 hex digits).
std::string PackName(uint64_t id) {
  char b[20];
  snprintf(b, sizeof b, "%016llx", (unsigned long long)id);
  return b;
}

std::string Le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; i++) s[i] = char(v >> (8 * i));
  return s;
}

}  // namespace

SealedChunkStore::SealedChunkStore(std::unique_ptr<ChunkStore> inner,
                                   std::shared_ptr<const crypto::Keyring> keyring)
    : inner_(std::move(inner)),
      keyring_(std::move(keyring)),
      kept_(std::make_shared<OpenedChunks>(kKeep)) {
  inner_->SetMasterKey(std::make_shared<const crypto::MasterKey>(keyring_->current().key->Clone()));
}

SealedChunkStore::SealedChunkStore(std::unique_ptr<ChunkStore> inner,
                                   std::shared_ptr<const crypto::MasterKey> master)
    : SealedChunkStore(std::move(inner),
                       std::make_shared<const crypto::Keyring>(crypto::Keyring::First(*master))) {}

SealedChunkStore::~SealedChunkStore() = default;

Status SealedChunkStore::Open(const std::string& owner,
                              const std::map<uint64_t, uint64_t>& committed) {
  store_id_ = owner;
  return inner_->Open(owner, committed);
}

Result<const crypto::Key*> SealedChunkStore::KeyOf(uint64_t id) {
  if (!key_ || key_of_ != id) {
    const crypto::Keyring::Generation& g = keyring_->ForContainer(id);
    if (!g.key) {
      std::string what = "pack " + PackName(id) + " in " + Location() + " is sealed under key generation " +
                         std::to_string(g.number) + " (key id " + g.id.Hex() + "), which was retired";
      Log("store: %s: answered EIO", what.c_str());
      return Status(EIO, what);
    }
    key_.emplace(crypto::PackKey(*g.key, store_id_ + Le64(id)));
    key_of_ = id;
  }
  return &*key_;
}

ChunkLocation SealedChunkStore::PlaceOf(size_t length) const {
  return inner_->PlaceOf(length + kSeal);
}

uint64_t SealedChunkStore::RecordOverhead() const { return inner_->RecordOverhead() + kSeal; }

Result<PutResult> SealedChunkStore::Put(std::string_view data, const unsigned char (&hash)[32]) {
  if (data.empty() || data.size() > UINT32_MAX - kSeal)
    return Status(EINVAL, "a chunk of " + std::to_string(data.size()) + " bytes");
  ChunkLocation at = inner_->PlaceOf(data.size() + kSeal);
  auto ad = crypto::AssociatedData::ForRecord(
      crypto::SealKind::kChunk, store_id_, Le64(at.container), at.offset,
      std::string_view(reinterpret_cast<const char*>(hash), 32));
  if (!ad.ok()) return ad.status();
  sealed_.resize(data.size() + kSeal);
  auto key = KeyOf(at.container);
  if (!key.ok()) return key.status();
  MUSCLE_RETURN_IF_ERROR(crypto::Seal(**key, *ad, data, sealed_));
  auto put = inner_->Put(sealed_, hash);
  if (!put.ok()) return put;
  if (put->at.container != at.container || put->at.offset != at.offset)
    // The layer below placed it elsewhere than it said: the record is
    // sealed for another place and would never open. Not indexed, so a
    // roll-back or the next open removes it.
    return Status(EIO, "a sealed record was placed at container " + std::to_string(put->at.container) +
                           " offset " + std::to_string(put->at.offset) + ", not where " +
                           Location() + " said it would go");
  return put;
}

Status SealedChunkStore::OpenRecord(ChunkLocation at, std::string_view sealed,
                                    const unsigned char* name, char* out) {
  auto ad = crypto::AssociatedData::ForRecord(crypto::SealKind::kChunk, store_id_,
                                              Le64(at.container), at.offset,
                                              std::string_view(reinterpret_cast<const char*>(name), 32));
  if (!ad.ok()) return ad.status();
  auto key = KeyOf(at.container);
  if (!key.ok()) return key.status();
  Status s = crypto::Open(**key, *ad, sealed,
                          std::span<char>(out, sealed.size() - kSeal));
  if (s.ok()) {
    opened_++;
    return s;
  }
  if (s.err() != EIO) return s;
  std::string where = "pack " + PackName(at.container) + " in " + Location() +
                      ", record at offset " + std::to_string(at.offset);
  Log("store: %s fails authentication (altered, truncated, moved, or sealed under another key): "
      "answered EIO",
      where.c_str());
  return Status(EIO, where + " fails authentication (altered, truncated, moved, or another key)");
}

Status SealedChunkStore::ReadBatch(std::span<const ChunkRead> reads) {
  for (const ChunkRead& r : reads) MUSCLE_RETURN_IF_ERROR(CheckRange(r));
  for (const ChunkRead& r : reads) {
    ChunkRecord head;
    if (r.from == 0 && r.len == r.size) {
      // All of the chunk: opened straight into the caller's buffer, not kept
      // (a sequential read asks for each chunk whole but the first and last).
      MUSCLE_RETURN_IF_ERROR(ReadSealed(r.at, r.size, &head));
      MUSCLE_RETURN_IF_ERROR(CheckName(r, head.hash));
      MUSCLE_RETURN_IF_ERROR(OpenRecord(r.at, sealed_, head.hash, r.out));
      continue;
    }
    OpenedChunks::Found k = kept_->Find(r.at, r.size);
    if (!k.data) {
      // Ours to open (others wanting it wait): the whole record, header
      // included, since the name in the header is the one it was sealed
      // under (an altered header fails the tag too). A claim must end in
      // Fill or Abandon, or those waiting for the chunk would wait for ever.
      std::shared_ptr<char[]> data;
      try {
        data = std::make_shared_for_overwrite<char[]>(r.size);
      } catch (...) {
        kept_->Abandon(k.claim);
        throw;
      }
      Status s = ReadSealed(r.at, r.size, &head);
      if (s.ok()) s = OpenRecord(r.at, sealed_, head.hash, data.get());
      if (!s.ok()) {
        kept_->Abandon(k.claim);
        return s;
      }
      memcpy(k.name, head.hash, 32);
      k.data = data;
      kept_->Fill(k.claim, head.hash, std::move(data));
    }
    MUSCLE_RETURN_IF_ERROR(CheckName(r, k.name));
    memcpy(r.out, k.data.get() + r.from, r.len);
  }
  return Status::Ok();
}

Status SealedChunkStore::CheckName(const ChunkRead& r, const unsigned char* sealed_under) const {
  if (!r.named || memcmp(r.name, sealed_under, 32) == 0) return Status::Ok();
  // An authentic record of another chunk, put back where the index names
  // this one (a record cut back by a crash and written again).
  std::string where = "pack " + PackName(r.at.container) + " in " + Location() +
                      ", record at offset " + std::to_string(r.at.offset);
  Log("store: %s holds another chunk than the index names: answered EIO", where.c_str());
  return Status(EIO, where + " holds another chunk than the index names");
}

Status SealedChunkStore::ReadSealed(ChunkLocation at, uint64_t size, ChunkRecord* header) {
  MUSCLE_RETURN_IF_ERROR(inner_->ReadRecord(at, size + kSeal, header, sealed_));
  if (header->length != size + kSeal) {
    std::string what = "pack " + PackName(at.container) + " in " + Location() + ", record at offset " +
                       std::to_string(at.offset) + ": its header says " + std::to_string(header->length) +
                       " sealed bytes, the index " + std::to_string(size + kSeal);
    Log("store: %s: answered EIO", what.c_str());
    return Status(EIO, what);
  }
  header->length -= uint32_t(kSeal);
  return Status::Ok();
}

Status SealedChunkStore::ReadRecord(ChunkLocation at, uint64_t size, ChunkRecord* header,
                                    std::string& data) {
  MUSCLE_RETURN_IF_ERROR(ReadSealed(at, size, header));
  data.resize(size);
  return OpenRecord(at, sealed_, header->hash, data.data());
}

Status SealedChunkStore::RollBackTo(const ContainerMark& mark) {
  kept_->Clear();  // places past the mark are reused
  key_.reset();
  return inner_->RollBackTo(mark);
}

Status SealedChunkStore::Punch(ChunkLocation at, uint64_t length) {
  return inner_->Punch(at, length + kSeal);
}

Status SealedChunkStore::Records(uint64_t container, uint64_t size, std::vector<ChunkRecord>& out) {
  MUSCLE_RETURN_IF_ERROR(inner_->Records(container, size, out));
  for (ChunkRecord& r : out) {
    if (r.length <= kSeal)
      return Status(EIO, "pack " + PackName(container) + " in " + Location() +
                             ": the record at offset " + std::to_string(r.offset) +
                             " is too short to be sealed");
    r.length -= uint32_t(kSeal);
  }
  return Status::Ok();
}

Status SealedChunkStore::Remove(uint64_t container) {
  kept_->Clear();
  return inner_->Remove(container);
}

void SealedChunkStore::ForgetCached() {
  // Only the layer below's handles: the kept chunks are shared with the
  // writer and the other readers, and places of committed containers are
  // never reused (the writer's Remove and RollBackTo clear them).
  inner_->ForgetCached();
}

Result<std::unique_ptr<ChunkStore>> SealedChunkStore::NewReader() {
  auto below = inner_->NewReader();
  if (!below.ok()) return below.status();
  auto r = std::make_unique<SealedChunkStore>(std::move(*below), keyring_);
  r->store_id_ = store_id_;
  r->kept_ = kept_;
  return std::unique_ptr<ChunkStore>(std::move(r));
}

std::vector<std::pair<std::string, std::string>> SealedChunkStore::StatusFields() const {
  auto fields = inner_->StatusFields();
  fields.insert(fields.begin() + (fields.empty() ? 0 : 1),
                {"encryption", "xchacha20-poly1305 key " + keyring_->current().id.Hex() + " (generation " +
                                   std::to_string(keyring_->current().number) + ")"});
  return fields;
}

}  // namespace muscle::store
