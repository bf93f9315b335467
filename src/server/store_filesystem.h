// The FileSystem (9p/filesystem.h) backed by the SQLite store: translates
// decoded 9P requests into Store calls, run on the StoreWorker thread or,
// for requests that only read, on the reader pool.
//
// Reads and lookups (the requests whose row in 9p/ops.h says
// Served::kReader: Tgetattr, Twalk to a new fid, Tlopen without
// truncation, Tread, Treaddir, Treadlink, Txattrwalk, Tstatfs, Tclunk of a
// plain fid) go to a reader when there is a pool, the writer is busy (an
// idle writer answers at once) and the inode they name is neither dirty
// nor waiting for a request queued for the writer (store/read_gate.h); everything else, and every read whose
// result the gate does not confirm, runs on the writer. So a client always
// reads what was acknowledged to it (a dirty inode's reads run on the
// writer, which also holds the buffered writes), and a large write does
// not hold up other files' lookups.
//
// A Twrite to a file the writer has written before is answered on the
// loop at once and its data queued for the writer (server/write_ahead.h:
// the bound on what waits so, and where a failed flush of such data is
// reported); the file counts as having work queued for the writer
// (ReadGate::Pending) until the writer has the data, so every read after
// the reply sees it, and anything queued for the writer after it runs
// after it.
//
// A request that came inside a Tonce (FsRequest::op) always runs on the
// writer, a Twrite too, and is answered once its reply is recorded
// (Execute, store_handlers.cc; store::Store::Once).
//
// Threading: Submit and Unref are called on an event loop's thread (the
// main loop or another one, server/loop_thread.h); Execute runs on the
// worker or a reader thread; a reply is delivered on the loop that asked.
#pragma once

#include <atomic>

#include "9p/filesystem.h"
#include "server/metrics.h"
#include "server/reader_pool.h"
#include "server/store_worker.h"
#include "server/write_ahead.h"

namespace muscle::server {

// What a request executed on a reader looked at and would change in the
// gate (see ReadGate::Validate).
struct ReadTrace {
  std::vector<uint64_t> inos;
  bool all = false;
  store::ReadGate::RefChange change = store::ReadGate::RefChange::kNone;
  uint64_t ref_ino = 0;
};

class StoreFileSystem : public p9::FileSystem {
 public:
  // `readers` may be null (everything on the writer); it must outlive
  // this object's use.
  // `answers`, if set, counts who answered each request (server/metrics.h).
  // `write_ahead`: the most Twrite bytes answered and not yet taken by the
  // writer (0: every Twrite waits for the writer).
  explicit StoreFileSystem(StoreWorker& worker, ReaderPool* readers = nullptr,
                           std::shared_ptr<AnswerCounters> answers = nullptr,
                           size_t write_ahead = WriteAhead::kDefaultLimit)
      : worker_(worker), readers_(readers), answers_(std::move(answers)),
        ahead_(write_ahead ? std::make_shared<WriteAhead>(write_ahead) : nullptr) {}
  void Submit(p9::FsRequest req, Done done) override;
  void Unref(uint64_t ino) override;

  // The translation itself (store_handlers.cc): the request's row
  // (9p/ops.h) applied around its handler. Public for tests that drive a
  // Store directly. With a trace, `s` is a reader: only requests
  // ForReaders accepts may be passed, nothing is changed, and the trace
  // says what to validate.
  static p9::FsReply Execute(store::Tree& s, p9::FsRequest& req, ReadTrace* trace = nullptr);
  // True when `req` only reads and may be tried on a reader now (its row
  // says Served::kReader and ReaderMay, and what it reads is clean).
  static bool ForReaders(const store::ReadGate& gate, const p9::FsRequest& req);

  // Requests answered by readers, and handed back to the writer after the
  // gate refused a reader's result (for tests and the log).
  uint64_t served_by_readers() const { return served_by_readers_; }
  // Null when every Twrite waits for the writer (tests).
  const WriteAhead* write_ahead() const { return ahead_.get(); }

 private:
  void RunOnWriter(std::shared_ptr<p9::FsRequest> req, Done done, Mailbox* home);
  // Answers `req` now and queues its data for the writer when it is a
  // Twrite the write-ahead admits (then true, and req and done are taken).
  bool WroteAhead(p9::FsRequest& req, Done& done);

  StoreWorker& worker_;
  ReaderPool* readers_;
  std::atomic<uint64_t> served_by_readers_{0};  // completions, on any loop
  std::shared_ptr<AnswerCounters> answers_;
  std::shared_ptr<WriteAhead> ahead_;  // shared with the writer's jobs
  std::atomic<uint64_t> next_ahead_id_{1};  // RedoLog::AppendAhead
};

p9::Qid QidOf(const store::Attr& a);

}  // namespace muscle::server
