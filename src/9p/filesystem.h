// The boundary between the 9P session (protocol state) and the file
// system behind it (file behaviour).
//
// The session resolves fids to inode numbers and checks protocol rules
// (open state, msize, tags) before a request reaches the file system, so a
// FileSystem only sees well-formed requests about inodes. qid.path is the
// inode number.
//
// Threading: Submit is called on the event-loop thread. The implementation
// may do the work anywhere, but must invoke `done` exactly once, on the
// event-loop thread. Requests from one session are handed over in arrival
// order.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "9p/messages.h"

namespace muscle::p9 {

// An identity's access rule, as a view applies it (FsRequest::rule).
struct AttachRule {
  std::string root;  // relative, "" for the whole tree
  bool read_only = false;
  bool may_snapshot = false;
};

struct FsRequest {
  Message msg;            // the decoded T-message
  uint64_t ino = 0;       // inode of the message's first fid
  uint64_t ino2 = 0;      // inode of a second fid (Tlink fid, Trename dfid,
                          // Trenameat newdirfid), else 0
  uint32_t uid = 0;       // numeric user the fid was attached as
  uint64_t root_ino = 0;  // the fid's attach root; ".." there stays put
  // For a Tattach to a view ("@snapshots[/...]", "@ctl"): the identity's
  // access rule, which the file system applies itself (the session
  // prefixes attach_root to any other aname).
  using Rule = AttachRule;
  std::optional<Rule> rule;
  Dialect dialect = k9P2000L;  // the session's, for stat records and create rules
  // For a Tread of an open directory in 9P2000/9P2000.u: the listing
  // continues after this cookie (0: from the start) and the reply's stat
  // records fit in count bytes; FsReply::next_cookie says where it ended.
  std::optional<uint64_t> dir_cookie;
  // For Tclunk of a fid made by Txattrcreate: the attribute to store.
  struct XattrCommit {
    std::string name;
    std::string value;
    uint32_t flags = 0;
  };
  std::optional<XattrCommit> xattr;
};

struct FsReply {
  Message msg;             // an R-message or Rlerror
  std::string xattr_data;  // for Rxattrwalk: the value or name list
  uint64_t next_cookie = 0;  // for a directory Tread: continue after this
};

class FileSystem {
 public:
  using Done = std::function<void(FsReply)>;
  virtual ~FileSystem() = default;

  // Requests and the references they take:
  // - Tattach, a complete Twalk, Tlcreate, TcreateU: the new inode gains a
  //   reference held by the new fid. A complete in-place Twalk (newfid ==
  //   fid), Tlcreate and TcreateU drop the reference of the fid's previous
  //   inode.
  // 9P2000 requests arrive in their 9P2000.u form (TcreateU, TwstatU,
  // Tattach); Tstat is answered with Rstat or RstatU as req.dialect says.
  // - Tclunk and Tremove drop the fid's reference (whatever the outcome).
  virtual void Submit(FsRequest req, Done done) = 0;

  // Drops a reference without a reply (fids abandoned by a disconnect or a
  // session reset).
  virtual void Release(uint64_t ino) = 0;
};

}  // namespace muscle::p9
