// The FileSystem (9p/filesystem.h) backed by the SQLite store: translates
// decoded 9P requests into Store calls, run on the StoreWorker thread.
//
// Threading: Submit and Release are called on the loop thread; Execute runs
// on the worker thread; replies are delivered on the loop thread.
#pragma once

#include "9p/filesystem.h"
#include "server/store_worker.h"

namespace muscle::server {

class StoreFileSystem : public p9::FileSystem {
 public:
  explicit StoreFileSystem(StoreWorker& worker) : worker_(worker) {}
  void Submit(p9::FsRequest req, Done done) override;
  void Release(uint64_t ino) override;

  // The translation itself; public for tests that drive a Store directly.
  static p9::FsReply Execute(store::Store& s, p9::FsRequest& req);

 private:
  StoreWorker& worker_;
};

p9::Qid QidOf(const store::Attr& a);

}  // namespace muscle::server
