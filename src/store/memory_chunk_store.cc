#include "store/memory_chunk_store.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace muscle::store {

struct MemoryChunkStore::Shared {
  mutable std::mutex mu;
  std::string owner;                        // "" until the first Open
  std::map<uint64_t, std::string> bytes;    // container id -> its bytes
  std::map<uint64_t, uint64_t> synced;      // container id -> length synced
  uint64_t punched = 0;
};

MemoryChunkStore::MemoryChunkStore(uint64_t container_target)
    : MemoryChunkStore(std::make_shared<Shared>(), false, container_target) {}

MemoryChunkStore::MemoryChunkStore(std::shared_ptr<Shared> shared, bool read_only, uint64_t target)
    : shared_(std::move(shared)), read_only_(read_only), target_(target) {}

MemoryChunkStore::~MemoryChunkStore() = default;

std::string MemoryChunkStore::NameOf(uint64_t id) { return "memory container " + std::to_string(id); }

std::unique_ptr<MemoryChunkStore> MemoryChunkStore::Reopen() const {
  auto copy = std::make_shared<Shared>();
  {
    std::lock_guard<std::mutex> g(shared_->mu);
    copy->owner = shared_->owner;
    for (const auto& [id, length] : shared_->synced) {
      auto b = shared_->bytes.find(id);
      if (b == shared_->bytes.end()) continue;
      copy->bytes[id] = b->second.substr(0, length);
      copy->synced[id] = length;
    }
    copy->punched = shared_->punched;
  }
  return std::unique_ptr<MemoryChunkStore>(new MemoryChunkStore(std::move(copy), false, target_));
}

Result<std::unique_ptr<ChunkStore>> MemoryChunkStore::NewReader() {
  return std::unique_ptr<ChunkStore>(new MemoryChunkStore(shared_, true, target_));
}

Status MemoryChunkStore::Open(const std::string& owner,
                              const std::map<uint64_t, uint64_t>& committed) {
  if (read_only_) return Status(EROFS, "a reader's memory containers are read-only");
  std::lock_guard<std::mutex> g(shared_->mu);
  if (shared_->owner.empty() && !shared_->bytes.empty())
    return Status(EEXIST, "memory containers of an unknown store");
  if (!shared_->owner.empty() && shared_->owner != owner)
    return Status(EEXIST, "memory containers belong to another store (" + shared_->owner +
                              ", this one is " + owner + ")");
  shared_->owner = owner;
  for (auto it = shared_->bytes.begin(); it != shared_->bytes.end();) {
    auto c = committed.find(it->first);
    if (c == committed.end()) {  // started but never committed
      shared_->synced.erase(it->first);
      it = shared_->bytes.erase(it);
      continue;
    }
    if (it->second.size() < c->second)
      return Status(EIO, NameOf(it->first) + " is " + std::to_string(it->second.size()) +
                             " bytes, shorter than its committed " + std::to_string(c->second));
    it->second.resize(c->second);
    shared_->synced[it->first] = c->second;
    ++it;
  }
  for (const auto& [id, size] : committed)
    if (!shared_->bytes.count(id)) return Status(ENOENT, NameOf(id) + " is missing");
  open_ = committed.empty() ? ContainerMark{} : ContainerMark{committed.rbegin()->first, committed.rbegin()->second};
  return Status::Ok();
}

bool MemoryChunkStore::StartsContainer(size_t length) const {
  return open_.container == 0 || open_.size + kRecordHeaderSize + length > target_;
}

ChunkLocation MemoryChunkStore::PlaceOf(size_t length) const {
  if (StartsContainer(length)) return {open_.container + 1, kContainerHeaderSize + kRecordHeaderSize};
  return {open_.container, open_.size + kRecordHeaderSize};
}

Result<PutResult> MemoryChunkStore::Put(std::string_view data, const unsigned char (&hash)[32]) {
  if (read_only_) return Status(EROFS, "a reader's memory containers are read-only");
  if (data.empty() || data.size() > UINT32_MAX)
    return Status(EINVAL, "a chunk of " + std::to_string(data.size()) + " bytes");
  std::lock_guard<std::mutex> g(shared_->mu);
  PutResult put;
  if (StartsContainer(data.size())) {
    put.started = true;
    put.sealed = open_;
    uint64_t id = open_.container + 1;
    // The header is durable at once, as a new pack's is.
    shared_->bytes[id].assign(reinterpret_cast<const char*>(kContainerMagic), kContainerHeaderSize);
    shared_->synced[id] = kContainerHeaderSize;
    open_ = {id, kContainerHeaderSize};
  }
  std::string& c = shared_->bytes[open_.container];
  unsigned char head[kRecordHeaderSize];
  EncodeRecordHeader(uint32_t(data.size()), hash, head);
  c.append(reinterpret_cast<const char*>(head), sizeof head);
  c.append(data);
  put.at = {open_.container, open_.size + kRecordHeaderSize};
  open_.size = c.size();
  return put;
}

Status MemoryChunkStore::ReadRaw(uint64_t id, uint64_t offset, size_t len, char* out) {
  std::lock_guard<std::mutex> g(shared_->mu);
  auto it = shared_->bytes.find(id);
  if (it == shared_->bytes.end()) return Status(ENOENT, "no " + NameOf(id));
  if (offset > it->second.size() || len > it->second.size() - offset)
    return Status(EIO, "read " + NameOf(id) + " at " + std::to_string(offset) + ": past its end");
  memcpy(out, it->second.data() + offset, len);
  return Status::Ok();
}

Status MemoryChunkStore::Sync() {
  if (read_only_) return Status::Ok();
  std::lock_guard<std::mutex> g(shared_->mu);
  for (const auto& [id, b] : shared_->bytes) shared_->synced[id] = b.size();
  return Status::Ok();
}

Status MemoryChunkStore::RollBackTo(const ContainerMark& mark) {
  if (read_only_) return Status(EROFS, "a reader's memory containers are read-only");
  std::lock_guard<std::mutex> g(shared_->mu);
  for (auto it = shared_->bytes.upper_bound(mark.container); it != shared_->bytes.end();) {
    shared_->synced.erase(it->first);
    it = shared_->bytes.erase(it);
  }
  if (mark.container != 0) {
    auto it = shared_->bytes.find(mark.container);
    if (it == shared_->bytes.end()) return Status(ENOENT, "no " + NameOf(mark.container));
    if (it->second.size() < mark.size)
      return Status(EINVAL, NameOf(mark.container) + " is shorter than the mark rolled back to");
    it->second.resize(mark.size);
    uint64_t& synced = shared_->synced[mark.container];
    synced = std::min(synced, mark.size);
  }
  open_ = mark;
  return Status::Ok();
}

Status MemoryChunkStore::Punch(ChunkLocation at, uint64_t length) {
  if (read_only_) return Status(EROFS, "a reader's memory containers are read-only");
  uint64_t lo, hi;
  PunchablePages(at.offset, length, &lo, &hi);
  if (lo >= hi) return Status::Ok();
  std::lock_guard<std::mutex> g(shared_->mu);
  auto it = shared_->bytes.find(at.container);
  if (it == shared_->bytes.end()) return Status(ENOENT, "punch: no " + NameOf(at.container));
  std::string& b = it->second;
  if (hi > b.size()) return Status(EINVAL, "punch past the end of " + NameOf(at.container));
  std::fill(b.begin() + lo, b.begin() + hi, '\0');
  shared_->punched += hi - lo;
  return Status::Ok();
}

uint64_t MemoryChunkStore::punched_bytes() const {
  std::lock_guard<std::mutex> g(shared_->mu);
  return shared_->punched;
}

std::vector<uint64_t> MemoryChunkStore::Containers() {
  std::lock_guard<std::mutex> g(shared_->mu);
  std::vector<uint64_t> ids;
  for (const auto& [id, b] : shared_->bytes) ids.push_back(id);
  return ids;
}

Status MemoryChunkStore::Records(uint64_t container, uint64_t size, std::vector<ChunkRecord>& out) {
  out.clear();
  {
    std::lock_guard<std::mutex> g(shared_->mu);
    if (!shared_->bytes.count(container)) return Status(ENOENT, "no " + NameOf(container));
  }
  return WalkRecords(
      [&](void* buf, size_t len, uint64_t at) {
        Status s = ReadRaw(container, at, len, static_cast<char*>(buf));
        return s.ok() ? 0 : s.err();
      },
      size, NameOf(container), out);
}

Status MemoryChunkStore::Remove(uint64_t container) {
  if (read_only_) return Status(EROFS, "a reader's memory containers are read-only");
  std::lock_guard<std::mutex> g(shared_->mu);
  shared_->bytes.erase(container);
  shared_->synced.erase(container);
  return Status::Ok();
}

}  // namespace muscle::store
