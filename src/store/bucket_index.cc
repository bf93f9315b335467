#include "store/bucket_index.h"

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "crypto/seal.h"

namespace muscle::store {

namespace {

const char kPlain[] = "musclefs plain 1\n";
const char kSealed[] = "musclefs sealed 1 ";

std::string HexBytes(const unsigned char* p, size_t n) {
  static const char d[] = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; i++) {
    s += d[p[i] >> 4];
    s += d[p[i] & 15];
  }
  return s;
}

bool FromHex(std::string_view hex, unsigned char* out, size_t n) {
  if (hex.size() != 2 * n) return false;
  auto v = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < n; i++) {
    int hi = v(hex[2 * i]), lo = v(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = uint8_t(hi << 4 | lo);
  }
  return true;
}

// The lines of `text` (each ended by '\n').
std::vector<std::string_view> Lines(std::string_view text) {
  std::vector<std::string_view> out;
  size_t at = 0;
  while (at < text.size()) {
    size_t nl = text.find('\n', at);
    if (nl == std::string_view::npos) nl = text.size();
    out.push_back(text.substr(at, nl - at));
    at = nl + 1;
  }
  return out;
}

std::vector<std::string> Words(std::string_view line) {
  std::vector<std::string> w;
  size_t at = 0;
  while (at < line.size()) {
    size_t sp = line.find(' ', at);
    if (sp == std::string_view::npos) sp = line.size();
    w.emplace_back(line.substr(at, sp - at));
    at = sp + 1;
  }
  return w;
}

bool Number(const std::string& s, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    uint64_t next = v * 10 + uint64_t(c - '0');
    if (next / 10 != v) return false;
    v = next;
  }
  *out = v;
  return true;
}

bool Signed(const std::string& s, int64_t* out) {
  uint64_t v;
  if (!s.empty() && s[0] == '-') {
    if (!Number(s.substr(1), &v) || v > uint64_t(INT64_MAX)) return false;
    *out = -int64_t(v);
    return true;
  }
  if (!Number(s, &v) || v > uint64_t(INT64_MAX)) return false;
  *out = int64_t(v);
  return true;
}

Status Bad(const std::string& what) { return Status(EINVAL, "malformed " + what); }

}  // namespace

std::string EncodePackIndex(const PackIndex& p) {
  std::string s = "musclefs pack index 1\ncontainer " + std::to_string(p.container) + " size " +
                  std::to_string(p.size) + " records " + std::to_string(p.records.size()) + "\n";
  for (const ChunkRecord& r : p.records)
    s += std::to_string(r.offset) + " " + std::to_string(r.length) + " " + HexBytes(r.hash, 32) + "\n";
  return s;
}

Result<PackIndex> DecodePackIndex(std::string_view text) {
  auto lines = Lines(text);
  if (lines.size() < 2 || lines[0] != "musclefs pack index 1") return Bad("pack index (header)");
  auto h = Words(lines[1]);
  PackIndex p;
  uint64_t n = 0;
  if (h.size() != 6 || h[0] != "container" || h[2] != "size" || h[4] != "records" ||
      !Number(h[1], &p.container) || !Number(h[3], &p.size) || !Number(h[5], &n) ||
      n != lines.size() - 2 || p.container == 0)
    return Bad("pack index (counts)");
  uint64_t end = kContainerHeaderSize;
  for (size_t i = 2; i < lines.size(); i++) {
    auto w = Words(lines[i]);
    ChunkRecord r;
    uint64_t len = 0;
    if (w.size() != 3 || !Number(w[0], &r.offset) || !Number(w[1], &len) || len == 0 ||
        len > UINT32_MAX || !FromHex(w[2], r.hash, 32))
      return Bad("pack index (record " + std::to_string(i - 2) + ")");
    r.length = uint32_t(len);
    // Records follow each other from the container header on, inside it.
    if (r.offset != end + kRecordHeaderSize || r.offset + r.length > p.size)
      return Bad("pack index (record " + std::to_string(i - 2) + " out of place)");
    end = r.offset + r.length;
    p.records.push_back(r);
  }
  if (end != p.size) return Bad("pack index (records do not fill the pack)");
  return p;
}

std::string EncodeCatalog(const std::vector<CatalogEntry>& entries) {
  std::string s = "musclefs catalog 1\n";
  for (const CatalogEntry& e : entries) {
    char head[256];
    snprintf(head, sizeof head, "snapshot %" PRId64 " %u %u %u %" PRId64 " %" PRId64 " %" PRId64 " ",
             e.created_ns, e.mode, e.uid, e.gid, e.mtime_ns, e.ctime_ns, e.btime_ns);
    s += head + HexBytes(e.root, 32) + " " +
         HexBytes(reinterpret_cast<const unsigned char*>(e.name.data()), e.name.size()) + "\n";
  }
  return s;
}

Result<std::vector<CatalogEntry>> DecodeCatalog(std::string_view text) {
  auto lines = Lines(text);
  if (lines.empty() || lines[0] != "musclefs catalog 1") return Bad("catalog (header)");
  std::vector<CatalogEntry> out;
  for (size_t i = 1; i < lines.size(); i++) {
    auto w = Words(lines[i]);
    CatalogEntry e;
    uint64_t mode, uid, gid;
    if (w.size() != 10 || w[0] != "snapshot" || !Signed(w[1], &e.created_ns) || !Number(w[2], &mode) ||
        !Number(w[3], &uid) || !Number(w[4], &gid) || mode > UINT32_MAX || uid > UINT32_MAX ||
        gid > UINT32_MAX || !Signed(w[5], &e.mtime_ns) || !Signed(w[6], &e.ctime_ns) ||
        !Signed(w[7], &e.btime_ns) || !FromHex(w[8], e.root, 32) || w[9].empty() ||
        w[9].size() % 2 || w[9].size() > 2 * 255)
      return Bad("catalog (line " + std::to_string(i + 1) + ")");
    e.mode = uint32_t(mode), e.uid = uint32_t(uid), e.gid = uint32_t(gid);
    e.name.resize(w[9].size() / 2);
    if (!FromHex(w[9], reinterpret_cast<unsigned char*>(e.name.data()), e.name.size()))
      return Bad("catalog (line " + std::to_string(i + 1) + ")");
    out.push_back(std::move(e));
  }
  return out;
}

Result<std::string> SealBucketObject(const crypto::MasterKey* key, const std::string& store_id,
                                     const std::string& object_key, std::string_view text) {
  if (!key) return std::string(kPlain) + std::string(text);
  auto ad = crypto::AssociatedData::ForRecord(crypto::SealKind::kIndexObject, store_id,
                                              object_key.substr(0, crypto::AssociatedData::kMaxField), 0);
  if (!ad.ok()) return ad.status();
  std::string head = std::string(kSealed) + crypto::KeyIdOf(*key).Hex() + "\n";
  std::string out(head.size() + text.size() + crypto::kSealOverhead, '\0');
  memcpy(out.data(), head.data(), head.size());
  MUSCLE_RETURN_IF_ERROR(crypto::Seal(crypto::IndexKey(*key), *ad, text,
                                      std::span<char>(out.data() + head.size(), out.size() - head.size())));
  return out;
}

Result<std::string> OpenBucketObject(const crypto::MasterKey* key, const std::string& store_id,
                                     const std::string& object_key, std::string_view body) {
  if (body.substr(0, sizeof kPlain - 1) == kPlain) {
    if (key) return Status(EIO, object_key + " is not sealed, and this store is encrypted");
    return std::string(body.substr(sizeof kPlain - 1));
  }
  if (body.substr(0, sizeof kSealed - 1) != kSealed) return Status(EINVAL, object_key + " is not a musclefs object");
  size_t nl = body.find('\n');
  if (nl == std::string_view::npos) return Status(EINVAL, object_key + " is not a musclefs object");
  std::string id(body.substr(sizeof kSealed - 1, nl - (sizeof kSealed - 1)));
  if (!key) return Status(EACCES, object_key + " is encrypted (key id " + id + "): give the key file");
  if (id != crypto::KeyIdOf(*key).Hex())
    return Status(EACCES, object_key + " is sealed under key " + id + ", not the key given (" +
                              crypto::KeyIdOf(*key).Hex() + ")");
  std::string_view sealed = body.substr(nl + 1);
  if (sealed.size() < crypto::kSealOverhead) return Status(EIO, object_key + " is truncated");
  auto ad = crypto::AssociatedData::ForRecord(crypto::SealKind::kIndexObject, store_id,
                                              object_key.substr(0, crypto::AssociatedData::kMaxField), 0);
  if (!ad.ok()) return ad.status();
  std::string out(sealed.size() - crypto::kSealOverhead, '\0');
  Status s = crypto::Open(crypto::IndexKey(*key), *ad, sealed, out);
  if (!s.ok()) return Status(EIO, object_key + " fails authentication (altered, moved, or from another store)");
  return out;
}

}  // namespace muscle::store
