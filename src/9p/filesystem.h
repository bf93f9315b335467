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
#include "auth/access_rule.h"

namespace muscle::p9 {

struct FsRequest {
  Message msg;            // the decoded T-message
  uint64_t ino = 0;       // inode of the message's first fid
  uint64_t ino2 = 0;      // inode of a second fid (Tlink fid, Trename dfid,
                          // Trenameat newdirfid), else 0
  uint32_t uid = 0;       // numeric user the fid acts as (attach, squashed)
  // Whose files the identity makes and changes (auth/owner_rule.h): the
  // handlers ask it before making a file or changing its mode, owner,
  // group or contents. Set by the session for every request.
  auth::OwnerRule owner;
  uint64_t root_ino = 0;  // the fid's attach root; ".." there stays put
  // For a Tattach to a view ("@snapshots[/...]", "@ctl"): the identity's
  // access rule, which the file system applies itself (the session
  // prefixes rule.root to any other aname).
  std::optional<auth::AccessRule> rule;
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
  // For a request that came inside a Tonce (9p/messages.h): its operation
  // id, and the identity whose ids they are (the connection's, "" for the
  // local administrator). The file system runs it on the writer, never on
  // a reader or written ahead, and at most once per (identity, op): a
  // request whose id has a recorded reply gets that reply, with the
  // effects of its row on references, instead of running again.
  std::optional<uint64_t> op;
  std::string identity;
};

struct FsReply {
  Message msg;             // an R-message or Rlerror
  std::string xattr_data;  // for Rxattrwalk: the value or name list
  uint64_t next_cookie = 0;  // for a directory Tread: continue after this
};

// References: a fid bound to an inode holds one reference on it, which
// keeps an unlinked file alive until the last fid naming it is gone. The
// session's fid table is their owner: it alone decides which fid holds
// which reference and gives each back (Unref) when the fid is forgotten.
// What a request does to references is a fact of its row (9p/ops.h:
// kBindsNew, kRebinds, kReleases); the file system applies that row, in
// one place, at the instant the request takes effect (a walk's target must
// be referenced before anything else may purge it), and its handlers never
// take or drop references themselves.
class FileSystem {
 public:
  using Done = std::function<void(FsReply)>;
  virtual ~FileSystem() = default;

  // Runs one request and calls done with its reply. The references its
  // row names are taken or given back as the reply is made: a successful
  // Tattach, complete Twalk, Tlcreate or TcreateU references the new
  // inode (and an in-place Twalk, Tlcreate and TcreateU give back the
  // fid's previous one); Tclunk and Tremove give back the fid's reference
  // whatever the outcome.
  // 9P2000 requests arrive in their 9P2000.u form (TcreateU, TwstatU,
  // Tattach); Tstat is answered with Rstat or RstatU as req.dialect says.
  virtual void Submit(FsRequest req, Done done) = 0;

  // Gives back a reference without a reply (a fid clunked without work,
  // or forgotten by a disconnect or a session reset).
  virtual void Unref(uint64_t ino) = 0;
};

}  // namespace muscle::p9
