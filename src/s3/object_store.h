// The seam between a bucket-backed ChunkStore and where its objects live: a
// flat namespace of immutable objects named by keys (an S3 bucket under a
// prefix, or a local directory in tests).
//
// Implementations: s3::S3ObjectStore (s3/s3_client.h: an S3 bucket over
// HTTP(S), SigV4-signed, libcurl) and s3::DirObjectStore (s3/dir_object_store.h:
// one file per object in a directory, with failures that tests inject).
//
// Keys are relative to the store's prefix ("packs/3f9a..."): only the
// characters [A-Za-z0-9._/-] are used. Objects are written whole (Put) and
// never changed afterwards; a Put of an existing key replaces it.
//
// Errors are Status values with an errno: ENOENT (no such object: 404),
// EACCES (refused: 403, the message says why, e.g. SignatureDoesNotMatch),
// EIO (the server failed or the network did, after the implementation's own
// retries), ETIMEDOUT (no answer in time), EINVAL (a bad key or range). The
// message names the operation and the key, never a credential.
//
// Threading: every method may be called from any thread, concurrently
// (an implementation keeps no per-call state shared between threads, or
// guards it).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace muscle::s3 {

struct ObjectInfo {
  std::string key;  // relative to the store's prefix
  uint64_t size = 0;
};

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;
  // Writes the whole object (a multipart upload above the implementation's
  // part size: S3's single PUT stops at 5 GiB and is one long request).
  virtual Status Put(const std::string& key, std::string_view body) = 0;
  // The whole object.
  virtual Result<std::string> Get(const std::string& key) = 0;
  // Exactly `len` bytes at `offset` of the object into `out` (a ranged GET);
  // EIO when the object is shorter.
  virtual Status GetRange(const std::string& key, uint64_t offset, size_t len, char* out) = 0;
  // The object's size; ENOENT when there is none.
  virtual Result<uint64_t> Head(const std::string& key) = 0;
  // Deletes the object; deleting one that is not there is not an error.
  virtual Status Delete(const std::string& key) = 0;
  // Every object whose key starts with `prefix`, in key order.
  virtual Result<std::vector<ObjectInfo>> List(const std::string& prefix) = 0;
  // A name for logs ("s3://bucket/prefix at http://host:port").
  virtual std::string Describe() const = 0;
  // What names these objects for good, whatever the way to them (no
  // endpoint): "s3://BUCKET/PREFIX", "dir:/path".
  virtual std::string Location() const = 0;
};

}  // namespace muscle::s3
