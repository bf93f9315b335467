// Where a server keeps its chunk data: the pack directory next to the
// database (the default), or an S3 bucket with the pack directory as its
// write-back cache (store/bucket_pack_store.h on s3/s3_client.h).
//
// `chunks = s3://BUCKET/PREFIX` with `s3-endpoint` (empty: AWS), `s3-region`,
// `s3-addressing` (auto, path, virtual-host), `s3-credentials` (a file in
// the AWS shared-credentials format, mode 0600 and ours; empty: the
// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN
// environment) and `cache-size` (bytes the cache may hold of uploaded packs
// before the least recently read are evicted). Nothing here logs a
// credential. The cache is DIR/pack-cache beside the database (DIR/store.db).
//
// Threading: called on the thread that then opens the store.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"
#include "s3/object_store.h"
#include "store/bucket_pack_store.h"
#include "store/chunk_store.h"

namespace muscle::server {

struct ChunkOptions {
  std::string url;  // "" for local pack files; "s3://BUCKET" or "s3://BUCKET/PREFIX"
  std::string endpoint;
  std::string region = "us-east-1";
  std::string addressing = "auto";
  std::string credentials;
  uint64_t cache_size = 4ull << 30;
};

// Checks the options without opening anything (config checks, start-up):
// EINVAL naming the setting at fault.
Status CheckChunkOptions(const ChunkOptions& options, const std::string& store_path);
// The chunk store for Store::Open: null for local pack files (the store
// makes its own), else a bucket store (credentials read here; nothing is
// sent before the store opens it).
Result<std::unique_ptr<store::ChunkStore>> OpenChunkBackend(const ChunkOptions& options,
                                                            const std::string& store_path);
// The bucket alone (restore-from reads it before there is a store), the
// cache directory beside a store, and the bucket store's options.
Result<std::shared_ptr<s3::ObjectStore>> OpenBucket(const ChunkOptions& options,
                                                    const std::string& store_path);
std::string CacheDirOf(const std::string& store_path);
store::BucketPackStore::Options BucketOptionsOf(const ChunkOptions& options);
// "1073741824", "512M", "4G", "1T" (K, M, G, T: powers of 1024) -> bytes;
// EINVAL otherwise.
Result<uint64_t> ParseByteSize(const std::string& text);

}  // namespace muscle::server
