// The FileSystem (9p/filesystem.h) of the read-only views: fids attached
// with aname @snapshots[/...] or @ctl (store/snapshot_view.h). It runs the
// same handlers as the live tree (StoreFileSystem::Execute) on a
// SnapshotView of the worker's store, always on the store writer's thread
// (the views read tree objects and the snapshot catalog there, and a
// control file's command may take or prune a snapshot).
//
// Threading: Submit and Unref are called on an event loop's thread; the
// work runs on the store worker; a reply is delivered on the loop that
// asked. The SnapshotView is made on the worker at first use and touched
// only there.
#pragma once

#include <memory>

#include "9p/filesystem.h"
#include "server/store_worker.h"
#include "store/snapshot_view.h"

namespace muscle::server {

class ViewFileSystem : public p9::FileSystem {
 public:
  ViewFileSystem(StoreWorker& worker, store::SnapshotView::ControlHandler control)
      : worker_(worker), state_(std::make_shared<State>()) {
    state_->control = std::move(control);
  }
  void Submit(p9::FsRequest req, Done done) override;
  void Unref(uint64_t ino) override;

 private:
  // Shared with the jobs in the worker's queue, so that it outlives them.
  struct State {
    store::SnapshotView::ControlHandler control;
    std::unique_ptr<store::SnapshotView> view;  // worker thread only
    store::SnapshotView& On(store::Store& s) {
      if (!view) view = std::make_unique<store::SnapshotView>(s, control);
      return *view;
    }
  };
  StoreWorker& worker_;
  std::shared_ptr<State> state_;
};

}  // namespace muscle::server
