#include "server/view_filesystem.h"

#include <cerrno>

#include "server/store_filesystem.h"

namespace muscle::server {

void ViewFileSystem::Submit(p9::FsRequest req, Done done) {
  auto shared = std::make_shared<p9::FsRequest>(std::move(req));
  worker_.Run([state = state_, shared, done = std::move(done)](store::Store& s) -> StoreWorker::Completion {
    // A request naming a node of each tree (a link, rename or 9P2000.u
    // link between a snapshot and the live tree) would change one from
    // the other: refused as a change to a snapshot is. (Their rows take
    // or move no reference when they fail.)
    bool across = shared->ino2 && store::SnapshotView::Owns(shared->ino) !=
                                      store::SnapshotView::Owns(shared->ino2);
    auto reply = std::make_shared<p9::FsReply>(
        across ? p9::FsReply{p9::Rlerror{EROFS}, {}}
               : StoreFileSystem::Execute(state->On(s), *shared));
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
