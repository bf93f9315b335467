// The container layout shared by the ChunkStore implementations.
#include "store/chunk_store.h"

#include <cerrno>
#include <cstring>

namespace muscle::store {

Status ContainerChunkStore::ReadBatch(std::span<const ChunkRead> reads) {
  for (const ChunkRead& r : reads) {
    MUSCLE_RETURN_IF_ERROR(CheckRange(r));
    MUSCLE_RETURN_IF_ERROR(ReadRaw(r.at.container, r.at.offset + r.from, r.len, r.out));
  }
  return Status::Ok();
}

Status ContainerChunkStore::ReadRecord(ChunkLocation at, uint64_t size, ChunkRecord* header,
                                       std::string& data) {
  if (at.offset < kRecordHeaderSize) return Status(EIO, "offset inside the pack header");
  // The header and the data read apart: one more read call, but no move
  // of the whole record down by the header's size.
  unsigned char head[kRecordHeaderSize];
  MUSCLE_RETURN_IF_ERROR(ReadRaw(at.container, at.offset - kRecordHeaderSize, kRecordHeaderSize,
                                 reinterpret_cast<char*>(head)));
  *header = DecodeRecordHeader(head, at.offset);
  data.resize(size);
  return ReadRaw(at.container, at.offset, size, data.data());
}

Status ErrnoStatus(int e, const std::string& what) { return Status(e, what + ": " + strerror(e)); }

void EncodeRecordHeader(uint32_t length, const unsigned char (&hash)[32],
                        unsigned char (&out)[kRecordHeaderSize]) {
  for (int i = 0; i < 4; i++) out[i] = uint8_t(length >> (8 * i));
  memcpy(out + 4, hash, 32);
}

ChunkRecord DecodeRecordHeader(const unsigned char (&head)[kRecordHeaderSize],
                               uint64_t data_offset) {
  ChunkRecord r;
  r.length = uint32_t(head[0]) | uint32_t(head[1]) << 8 | uint32_t(head[2]) << 16 |
             uint32_t(head[3]) << 24;
  memcpy(r.hash, head + 4, 32);
  r.offset = data_offset;
  return r;
}

Status CheckRange(const ChunkRead& r) {
  if (r.from > r.size || r.len > r.size - r.from)
    return Status(EINVAL, "read of " + std::to_string(r.len) + " bytes at " + std::to_string(r.from) +
                              " of a " + std::to_string(r.size) + "-byte chunk in container " +
                              std::to_string(r.at.container));
  return Status::Ok();
}

void PunchablePages(uint64_t offset, uint64_t length, uint64_t* lo, uint64_t* hi) {
  constexpr uint64_t kPage = 4096;
  *lo = (offset + kPage - 1) / kPage * kPage;
  *hi = (offset + length) / kPage * kPage;
}

Status WalkRecords(const std::function<int(void*, size_t, uint64_t)>& read, uint64_t size,
                   const std::string& name, std::vector<ChunkRecord>& out) {
  out.clear();
  unsigned char magic[kContainerHeaderSize];
  if (int e = read(magic, sizeof magic, 0)) return ErrnoStatus(e, "read " + name);
  if (memcmp(magic, kContainerMagic, sizeof magic) != 0)
    return Status(EIO, name + ": not a musclefs pack");
  uint64_t at = kContainerHeaderSize;
  while (at < size) {
    unsigned char head[kRecordHeaderSize];
    if (at + kRecordHeaderSize > size) return Status(EIO, name + ": torn record at " + std::to_string(at));
    if (int e = read(head, sizeof head, at)) return ErrnoStatus(e, "read " + name);
    ChunkRecord r = DecodeRecordHeader(head, at + kRecordHeaderSize);
    if (r.length == 0 || r.offset + r.length > size)
      return Status(EIO, name + ": bad record at " + std::to_string(at));
    out.push_back(r);
    at = r.offset + r.length;
  }
  return Status::Ok();
}

}  // namespace muscle::store
