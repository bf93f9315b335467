#include "server/chunk_backend.h"

#include <cerrno>
#include <cstdlib>

#include "common/fs_util.h"
#include "s3/s3_client.h"
#include "store/bucket_pack_store.h"

namespace muscle::server {

namespace {
std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
}
}  // namespace

Result<uint64_t> ParseByteSize(const std::string& text) {
  auto bad = [&] {
    return Status(EINVAL, "expected a size in bytes, optionally with K, M, G or T (e.g. 4G), got '" +
                              text + "'");
  };
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') digits++;
  if (digits == 0 || digits > 19) return bad();
  std::string unit = text.substr(digits);
  uint64_t scale = 0;
  if (unit.empty() || unit == "B") scale = 1;
  for (auto [letter, shift] : {std::pair{'K', 10}, {'M', 20}, {'G', 30}, {'T', 40}})
    if (!unit.empty() && (unit[0] == letter || unit[0] == letter + 32) &&
        (unit.size() == 1 || unit.substr(1) == "B" || unit.substr(1) == "iB"))
      scale = 1ull << shift;
  if (scale == 0) return bad();
  uint64_t v = strtoull(text.substr(0, digits).c_str(), nullptr, 10);
  if (v > ~0ull / scale) return bad();
  return v * scale;
}

Status CheckChunkOptions(const ChunkOptions& o, const std::string& store_path) {
  if (o.url.empty()) return Status::Ok();
  auto url = s3::ParseBucketUrl(o.url);
  if (!url.ok()) return Status(EINVAL, "chunks: " + url.status().message());
  if (store_path == ":memory:")
    return Status(EINVAL, "chunks " + o.url +
                              " needs a store file (the index of what is in the bucket), not :memory:");
  if (o.addressing != "auto" && o.addressing != "path" && o.addressing != "virtual-host")
    return Status(EINVAL, "s3-addressing must be auto, path or virtual-host, got '" + o.addressing + "'");
  if (o.cache_size < (64ull << 20))
    return Status(EINVAL, "cache-size must be at least 64M (two packs), got " +
                              std::to_string(o.cache_size));
  s3::S3Config c;
  c.endpoint = o.endpoint;
  c.region = o.region;
  c.bucket = url->bucket;
  auto target = s3::TargetFor(c, "");
  if (!target.ok()) return Status(EINVAL, "s3-endpoint: " + target.status().message());
  return Status::Ok();
}

Result<std::shared_ptr<s3::ObjectStore>> OpenBucket(const ChunkOptions& o, const std::string& store_path) {
  if (o.url.empty()) return Status(EINVAL, "no bucket: give --chunks s3://BUCKET[/PREFIX]");
  MUSCLE_RETURN_IF_ERROR(CheckChunkOptions(o, store_path));
  auto url = s3::ParseBucketUrl(o.url);
  if (!url.ok()) return url.status();
  auto credentials = s3::LoadCredentials(o.credentials);
  if (!credentials.ok()) return credentials.status();
  s3::S3Config c;
  c.endpoint = o.endpoint;
  c.region = o.region;
  c.bucket = url->bucket;
  c.prefix = url->prefix;
  c.addressing = o.addressing == "path"           ? s3::Addressing::kPath
                 : o.addressing == "virtual-host" ? s3::Addressing::kVirtualHost
                                                  : s3::Addressing::kAuto;
  c.credentials = std::move(*credentials);
  auto bucket = s3::S3ObjectStore::Open(std::move(c));
  if (!bucket.ok()) return bucket.status();
  return std::shared_ptr<s3::ObjectStore>(std::move(*bucket));
}

std::string CacheDirOf(const std::string& store_path) { return DirOf(store_path) + "/pack-cache"; }

store::BucketPackStore::Options BucketOptionsOf(const ChunkOptions& o) {
  store::BucketPackStore::Options options;
  options.cache_limit = o.cache_size;  // the rest: BucketPackStore's defaults
  return options;
}

Result<std::unique_ptr<store::ChunkStore>> OpenChunkBackend(const ChunkOptions& o,
                                                            const std::string& store_path) {
  if (o.url.empty()) return std::unique_ptr<store::ChunkStore>();
  auto bucket = OpenBucket(o, store_path);
  if (!bucket.ok()) return bucket.status();
  std::string cache = CacheDirOf(store_path);
  MakeDirs(cache, 0700);
  return std::unique_ptr<store::ChunkStore>(
      std::make_unique<store::BucketPackStore>(std::move(*bucket), cache, BucketOptionsOf(o)));
}

}  // namespace muscle::server
