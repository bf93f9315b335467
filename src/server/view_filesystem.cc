#include "server/view_filesystem.h"

#include "server/store_filesystem.h"

namespace muscle::server {

void ViewFileSystem::Submit(p9::FsRequest req, Done done) {
  auto shared = std::make_shared<p9::FsRequest>(std::move(req));
  worker_.Run([state = state_, shared, done = std::move(done)](store::Store& s) -> StoreWorker::Completion {
    auto reply = std::make_shared<p9::FsReply>(StoreFileSystem::Execute(state->On(s), *shared));
    return [done, reply]() { done(std::move(*reply)); };
  });
}

void ViewFileSystem::Unref(uint64_t ino) {
  worker_.Run([state = state_, ino](store::Store& s) -> StoreWorker::Completion {
    (void)state->On(s).Unref(ino);
    return nullptr;
  });
}

}  // namespace muscle::server
