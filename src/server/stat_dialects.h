// The 9P2000 and 9P2000.u requests on the store: Topen, Tcreate, Tstat,
// Twstat and directory reads as stat records (Plan 9's stat(5), open(5);
// the .u extension as Linux's fs/9p speaks it). Part of StoreFileSystem.
//
// Mapping between the dialects and the one tree: a stat's uid, gid and
// muid strings are the decimal numeric ids (n_uid, n_gid, n_muid in .u);
// a Twstat accepts decimal strings back (other names are EINVAL). 9P2000
// has no symlinks, devices or set-id bits: such files show as plain files
// of their permission bits. Each function runs on the store worker thread
// and returns the reply (an Rlerror the session turns into Rerror).
#pragma once

#include <string>

#include "9p/filesystem.h"
#include "store/store.h"

namespace muscle::server {

p9::FsReply Open9(store::Tree& s, p9::FsRequest& req, const p9::Topen& m);
// The fid moves from the directory to the new file, as with Tlcreate (its
// row in 9p/ops.h says so; Execute moves the reference).
p9::FsReply Create9(store::Tree& s, p9::FsRequest& req, const p9::TcreateU& m);
p9::FsReply Stat9(store::Tree& s, p9::FsRequest& req);
p9::FsReply Wstat9(store::Tree& s, p9::FsRequest& req, const p9::TwstatU& m);
// A Tread of a directory: whole stat records after *req.dir_cookie, no
// "." or "..", as many as fit in count bytes (none, an empty read, when
// the next one does not fit).
p9::FsReply ReadDirStats(store::Tree& s, p9::FsRequest& req, const p9::Tread& m);

// The stat record of a file named `name` (with the .u fields filled; a
// 9P2000 reply uses its Stat part). `target` is a symlink's target.
p9::StatU StatOf(const store::Attr& a, const std::string& name, p9::Dialect d,
                 const std::string& target = {});

}  // namespace muscle::server
