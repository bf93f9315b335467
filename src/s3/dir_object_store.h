// An ObjectStore (s3/object_store.h) in a local directory, one file per
// object (a key's '/' are subdirectories): for tests of what runs on a
// bucket, without a network, and with failures they inject.
//
// Put writes KEY.tmp-N and renames it into place, so an object is whole or
// absent, as on S3. Faults: `SetDown(errno)` makes every call fail with that
// errno (0: up again) — the bucket unreachable; `SetFault(fn)` asks fn(op,
// key) before each call ("put", "get", "range", "head", "delete", "list")
// and fails the call with the errno it returns (0: go on).
//
// Threading: every method may be called from any thread; the fault state is
// under a mutex, the directory is the file system's.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "common/mutex.h"
#include "common/thread_annotations.h"
#include "s3/object_store.h"

namespace muscle::s3 {

class DirObjectStore final : public ObjectStore {
 public:
  explicit DirObjectStore(std::string dir);

  Status Put(const std::string& key, std::string_view body) override;
  Result<std::string> Get(const std::string& key) override;
  Status GetRange(const std::string& key, uint64_t offset, size_t len, char* out) override;
  Result<uint64_t> Head(const std::string& key) override;
  Status Delete(const std::string& key) override;
  Result<std::vector<ObjectInfo>> List(const std::string& prefix) override;
  std::string Describe() const override { return "directory " + dir_; }
  std::string Location() const override { return "dir:" + dir_; }

  void SetDown(int err) { down_ = err; }
  void SetFault(std::function<int(std::string_view op, const std::string& key)> fn) EXCLUDES(mu_);
  // Calls made so far, by kind (for tests that count GETs).
  uint64_t calls(std::string_view op) const;

 private:
  Status Check(std::string_view op, const std::string& key) EXCLUDES(mu_);
  std::string PathOf(const std::string& key) const { return dir_ + "/" + key; }

  std::string dir_;
  std::atomic<int> down_{0};
  mutable Mutex mu_;
  std::function<int(std::string_view, const std::string&)> fault_ GUARDED_BY(mu_);
  std::atomic<uint64_t> puts_{0}, gets_{0}, ranges_{0}, heads_{0}, deletes_{0}, lists_{0};
  std::atomic<uint64_t> tmp_seq_{0};
};

}  // namespace muscle::s3
