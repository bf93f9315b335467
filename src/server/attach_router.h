// The file system the sessions see: the live tree (StoreFileSystem) and,
// for fids attached with aname @snapshots[/...] or @ctl, the read-only
// views (ViewFileSystem). Which of the two answers a fid is chosen at its
// attach: the session marks an attach to a view with the identity's rule
// (FsRequest::rule), and the views' inode numbers carry
// SnapshotView::kInoBit, which the live tree's never do, so every later
// request on such a fid goes to the views, and so does one that names a
// view in its second fid (a link or rename across the two, which the
// views refuse with EROFS).
//
// Threading: as the two file systems' (Submit and Unref on an event loop).
#pragma once

#include "9p/filesystem.h"
#include "store/snapshot_view.h"

namespace muscle::server {

class AttachRouter : public p9::FileSystem {
 public:
  AttachRouter(p9::FileSystem& tree, p9::FileSystem& views) : tree_(tree), views_(views) {}

  static bool ForViews(const p9::FsRequest& req) {
    return req.rule.has_value() || store::SnapshotView::Owns(req.ino) ||
           store::SnapshotView::Owns(req.ino2);
  }
  void Submit(p9::FsRequest req, Done done) override {
    (ForViews(req) ? views_ : tree_).Submit(std::move(req), std::move(done));
  }
  void Unref(uint64_t ino) override { (store::SnapshotView::Owns(ino) ? views_ : tree_).Unref(ino); }

 private:
  p9::FileSystem& tree_;
  p9::FileSystem& views_;
};

}  // namespace muscle::server
