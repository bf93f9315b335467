// The redo log (STORE-redo): what the store changed since its last commit,
// written before the change is answered, so that a server killed (kill -9,
// a crash) between commits loses nothing it acknowledged. The next Open
// replays it on top of the last commit (Store::Replay, redo.cc).
//
// Not synced: it survives the process, not the machine. A commit (every
// commit interval, and every Tfsync) is what survives power loss, as
// before; a log written before the last boot is not replayed (the boot id
// in its header), nor one written on top of an older commit than the
// database's (the commit number in its header, which every commit bumps
// in its own transaction).
//
// Layout: an 80-byte header (magic, commit number, nonce, boot id), then groups,
// each one operation's records: magic, length, records, and a trailer
// naming the log's current nonce (random per commit). The file is reused
// in place after each commit (no truncation: re-touching freed pages costs
// more than the write), so what follows the last group is an older
// commit's; a group whose trailer is not this commit's nonce (an older
// one, or one torn by the kill) ends the log.
//
// Records are a type byte and fields: u64s (little-endian) and strings
// (u32 length, bytes). RedoBatch builds one group without copying the
// data of writes.
//
// Threading: RedoLog is thread-safe (one mutex around each file write):
// the store worker appends the groups of its operations, an event loop
// those of writes answered ahead of the store (AppendAhead). Those are
// remembered (their data stays in the request, not copied) until the
// store takes them (Taken), and written again after each commit, since
// the commit did not include them.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/mutex.h"
#include "common/result.h"

namespace muscle::store {

class RedoBatch {
 public:
  void Begin(uint8_t type) { Put8(type); }
  void Put8(uint8_t v) { meta_.push_back(char(v)); }
  void Put64(uint64_t v);
  void PutString(std::string_view s);
  // A string whose bytes are not copied: they must live until the batch
  // is appended.
  void PutData(std::string_view s);
  bool empty() const { return meta_.empty(); }
  size_t size() const;
  void Clear();
  // The group's payload as pieces, in order.
  void Pieces(std::vector<iovec>& out) const;
  // A copy of the payload.
  std::string Flatten() const;

 private:
  std::string meta_;
  // (offset in meta_ where the data goes, the data).
  std::vector<std::pair<size_t, std::string_view>> data_;
};

// Reads records out of one group's payload; any read past its end fails
// the whole group (ok() false).
class RedoReader {
 public:
  explicit RedoReader(std::string_view payload) : p_(payload) {}
  bool done() const { return p_.empty(); }
  bool ok() const { return ok_; }
  uint8_t Get8();
  uint64_t Get64();
  std::string_view GetString();

 private:
  std::string_view p_;
  bool ok_ = true;
};

class RedoLog {
 public:
  ~RedoLog();
  // Opens (creating) the log at `path` for writing, after the commit
  // numbered `commit`: nothing in it counts from now on. `owner_of`: a file
  // whose owner the log is given when root creates it.
  static Result<std::unique_ptr<RedoLog>> Open(const std::string& path, uint64_t commit,
                                              const std::string& owner_of);
  // Calls `each` with the payload of every group of the log at `path`
  // written on top of commit `commit` during this boot, in order: of a log
  // written on top of `commit`, the groups before its commit mark (if
  // any); of one written on top of the commit before, those after its mark
  // for `commit`. Nothing (Ok) when there is no log, it is another
  // commit's or boot's.
  static Status ForEachGroup(const std::string& path, uint64_t commit,
                             const std::function<Status(std::string_view)>& each);

  // Store worker: appends one operation's group.
  Status Append(const RedoBatch& b) EXCLUDES(mu_);
  // Event loop: appends the group of a write answered before the store
  // took it, kept under `id` until Taken: its data is not copied, and
  // must live until Taken(id) returns.
  Status AppendAhead(uint64_t id, RedoBatch b) EXCLUDES(mu_);
  // Store worker, as it takes the write `id` into its transaction: true
  // when the log already has it in the order the store runs it (no group
  // of the store's came after it; else the store logs it again where it
  // runs, and a replay writes it twice, the second time in its place).
  bool Taken(uint64_t id) EXCLUDES(mu_);
  // Store worker, just before commit `next` (the one after the log's):
  // appends a mark and, after it, the writes answered ahead and not yet
  // taken, so that a kill between the commit and the Reset after it loses
  // none of them (a log one commit behind the database is replayed from
  // its mark on). The Reset after the commit, or after its failure,
  // replaces it all.
  Status BeginCommit(uint64_t next) EXCLUDES(mu_);
  // Store worker, after commit `commit`: the log starts again (with the
  // writes answered ahead and not yet taken). After a failure here the log
  // is broken: every Append and AppendAhead fails (the store commits
  // instead, the loop leaves writes to the store) until a Reset succeeds.
  Status Reset(uint64_t commit) EXCLUDES(mu_);
  // Bytes logged since the last commit.
  uint64_t size() EXCLUDES(mu_);

 private:
  RedoLog() = default;
  Status WriteGroup(const std::vector<iovec>& payload, size_t len) REQUIRES(mu_);
  // The writes answered ahead and not yet taken, appended again (Reset,
  // BeginCommit).
  Status WriteAheadAgain() REQUIRES(mu_);
  Mutex mu_;
  int fd_ = -1;
  std::string path_;
  uint64_t end_ GUARDED_BY(mu_) = 0;
  uint64_t nonce_ GUARDED_BY(mu_) = 0;
  struct Ahead {
    RedoBatch batch;
    uint64_t after;  // store_groups_ when it was appended
  };
  std::map<uint64_t, Ahead> ahead_ GUARDED_BY(mu_);
  uint64_t store_groups_ GUARDED_BY(mu_) = 0;  // groups Append wrote
  bool broken_ GUARDED_BY(mu_) = false;
};

}  // namespace muscle::store
