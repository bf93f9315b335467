// What a bucket holds beside the packs so that a store can be rebuilt from
// the bucket and its key alone (`musclefs restore-from`, store/rebuild.cc):
//
//   index/<pack object name>  one per uploaded pack: its container number,
//                             committed size and every record in it (data
//                             offset, length, chunk id), written by the
//                             uploader after the pack and before the
//                             manifest records the upload, deleted with it;
//   catalog                   the snapshots (name, time, root object id,
//                             root attributes), written once every pack
//                             holding their tree objects is uploaded.
//
// Both are text inside an envelope: "musclefs plain 1\n" + text for a
// plain store, "musclefs sealed 1 <key id>\n" + a sealed blob
// (crypto/seal.h under IndexKey, associated data: kind index object, the
// store id, the object's key as the pack id field, position 0) for an
// encrypted one. An index object moved to another name, or one from
// another store or key, fails to open (EIO). man/musclefs-store.5 has the
// formats. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "crypto/keys.h"
#include "store/chunk_store.h"

namespace muscle::store {

struct PackIndex {
  uint64_t container = 0;
  uint64_t size = 0;  // committed bytes (the object's size)
  std::vector<ChunkRecord> records;
};

struct CatalogEntry {
  std::string name;
  int64_t created_ns = 0;
  unsigned char root[32] = {};
  uint32_t mode = 0, uid = 0, gid = 0;
  int64_t mtime_ns = 0, ctime_ns = 0, btime_ns = 0;
};

std::string EncodePackIndex(const PackIndex& p);
Result<PackIndex> DecodePackIndex(std::string_view text);
std::string EncodeCatalog(const std::vector<CatalogEntry>& entries);
Result<std::vector<CatalogEntry>> DecodeCatalog(std::string_view text);

// The envelope. `key` null: plain. `object_key` is the object's key in the
// bucket (bound into the seal).
Result<std::string> SealBucketObject(const crypto::MasterKey* key, const std::string& store_id,
                                     const std::string& object_key, std::string_view text);
// EACCES when the object is sealed and no key, or another key, is given;
// EIO when it does not authenticate; EINVAL when it is no envelope.
Result<std::string> OpenBucketObject(const crypto::MasterKey* key, const std::string& store_id,
                                     const std::string& object_key, std::string_view body);

}  // namespace muscle::store
