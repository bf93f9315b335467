// Where a request runs: the routing between the event loops, the writer
// and the readers. What runs there is Execute (store_handlers.cc).
#include "server/store_filesystem.h"

#include <cassert>

#include "9p/ops.h"
#include "common/log.h"

namespace muscle::server {

using namespace muscle::p9;
using store::Store;

bool StoreFileSystem::ForReaders(const store::ReadGate& gate, const FsRequest& req) {
  bool reads = false, all = false;
  std::visit(
      [&](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (kIsRequest<T>) {
          using R = Op<T>;
          reads = R::kServed == Served::kReader && R::ReaderMay(m, req);
          all = R::kReadsAll;
        }
      },
      req.msg);
  // A dirty inode's reads belong to the writer (which also holds its
  // buffered data); asking a reader first would only waste its work. A
  // request with an operation id is the writer's (its record is written
  // with it).
  if (!reads || req.op) return false;
  return all ? gate.AllClean() : !gate.IsDirty(req.ino);
}

bool StoreFileSystem::WroteAhead(FsRequest& req, Done& done) {
  auto* w = std::get_if<Twrite>(&req.msg);
  // One with an operation id runs on the writer before it is answered:
  // its reply is recorded with its data.
  if (!w || !ahead_ || req.op) return false;
  size_t n = w->data.bytes.size();
  // Empty or too large: the writer's answer.
  if (n == 0 || !Store::Fits(w->offset, n) || !ahead_->Admit(req.ino, n)) return false;
  std::shared_ptr<store::ReadGate> gate = worker_.gate();
  // The request, where it stays until the job is done: the redo log keeps
  // a view of its data until the store has taken it (or the job is gone).
  struct AheadWrite {
    FsRequest req;
    std::shared_ptr<store::RedoLog> redo;
    uint64_t logged = 0;  // its id in the redo log
    ~AheadWrite() {
      if (logged) redo->Taken(logged);
    }
  };
  auto job = std::make_shared<AheadWrite>();
  job->req = std::move(req);
  const auto& m = std::get<Twrite>(job->req.msg);
  // Logged before it is answered, as the store logs what it takes: a kill
  // -9 before the store has it loses nothing (store/redo_log.h). Where that
  // fails the store logs it when it takes it.
  if (const auto& redo = worker_.redo()) {
    uint64_t id = next_ahead_id_.fetch_add(1, std::memory_order_relaxed);
    Status ls = redo->AppendAhead(id, store::RedoWriteRecord(job->req.ino, m.offset, m.data.bytes));
    if (!ls.ok()) {
      // Not logged: not answered ahead either; the store takes it, logs it
      // (or commits instead) and answers (the store logs the failure).
      req = std::move(job->req);
      ahead_->Taken(req.ino, n, Status::Ok(), false);
      return false;
    }
    job->redo = redo;
    job->logged = id;
  }
  // Reads of the file go to the writer, after this, until it has the data
  // (then the file is dirty); after a failure, until it is reported.
  if (gate) gate->Pending(job->req.ino, +1);
  worker_.Run([job, n, gate, ahead = ahead_](Store& s) -> StoreWorker::Completion {
    const FsRequest& req = job->req;
    const auto& m = std::get<Twrite>(req.msg);
    Status st = s.WriteAcknowledged(req.ino, m.offset, m.data.bytes, job->logged);
    bool held = ahead->Taken(req.ino, n, st, s.low_space());
    ahead->Settle(s.rollbacks());
    if (gate && !held) gate->Pending(req.ino, -1);
    return nullptr;
  });
  if (answers_) answers_->writer.fetch_add(1, std::memory_order_relaxed);
  done(FsReply{Rwrite{uint32_t(n)}, {}});
  return true;
}

void StoreFileSystem::Submit(FsRequest req, Done done) {
  if (WroteAhead(req, done)) return;
  auto shared = std::make_shared<FsRequest>(std::move(req));
  // The loop this request came from, where its reply must run (the main
  // loop's is null), also when a reader hands it on to the writer.
  Mailbox* home = Mailbox::Current();
  done = [home, done = std::move(done)](FsReply r) {
    assert(Mailbox::Current() == home && "a 9P reply ran on another loop's thread");
    (void)home;
    done(std::move(r));
  };
  std::shared_ptr<store::ReadGate> gate = worker_.gate();
  if (!gate || !readers_) return RunOnWriter(shared, std::move(done), home);
  bool readable = ForReaders(*gate, *shared);
  // An idle writer answers a read at once (its thread is awake, and a reply
  // from it needs no validation). A read changes nothing, so later reads of
  // the same inodes need not wait for it: they go to the readers while the
  // writer is busy with it (4 Treads in flight are answered by the writer
  // and both readers at once, not one after another on the writer).
  if (readable && worker_.idle()) return RunOnWriter(shared, std::move(done), home);
  // Readers take what would wait behind the writer's work.
  if (!readable) {
    // Later reads of these inodes wait for this request (in order).
    uint64_t inos[2] = {shared->ino, shared->ino2};
    for (uint64_t ino : inos)
      if (ino) gate->Pending(ino, +1);
    return RunOnWriter(
        shared,
        [gate, inos, done = std::move(done)](FsReply r) {
          for (uint64_t ino : inos)
            if (ino) gate->Pending(ino, -1);
          done(std::move(r));
        },
        home);
  }
  uint64_t gen = gate->generation();
  readers_->Run([this, gate, gen, shared, home, done = std::move(done)](Store& r) -> ReaderPool::Completion {
    ReadTrace trace;
    auto reply = std::make_shared<FsReply>(Execute(r, *shared, &trace));
    // An I/O error on a reader (a pack removed under it, SQLite busy) is
    // the writer's to confirm or not.
    auto* err = std::get_if<Rlerror>(&reply->msg);
    bool io_error = err && err->ecode == EIO;
    if (!io_error && gate->Validate(gen, trace.inos, trace.all, trace.change, trace.ref_ino))
      return [this, done, reply] {
        served_by_readers_++;
        if (answers_) answers_->reader.fetch_add(1, std::memory_order_relaxed);
        done(std::move(*reply));
      };
    // Stale (the writer changed something it read, or a commit raced it):
    // the writer answers instead.
    if (answers_) answers_->retried.fetch_add(1, std::memory_order_relaxed);
    RunOnWriter(shared, done, home);
    return nullptr;
  }, home);
}

void StoreFileSystem::RunOnWriter(std::shared_ptr<FsRequest> shared, Done done, Mailbox* home) {
  worker_.Run(
      [shared, answers = answers_, ahead = ahead_, gate = worker_.gate(),
       done = std::move(done)](Store& s) -> StoreWorker::Completion {
        FsRequest& req = *shared;
        bool write = std::holds_alternative<Twrite>(req.msg);
        // A failed flush of data written ahead is this request's to report
        // when it is the file's next write, fsync or clunk.
        Status failed;
        if (ahead && (write || std::holds_alternative<Tfsync>(req.msg) ||
                      std::holds_alternative<Tclunk>(req.msg)))
          failed = ahead->TakeFailure(req.ino);
        if (!failed.ok() && gate) gate->Pending(req.ino, -1);
        auto error = [&] { return FsReply{Rlerror{uint32_t(failed.err() ? failed.err() : EIO)}, {}}; };
        // The write is refused, its data not taken; the fsync and the clunk
        // still do their work.
        auto reply = std::make_shared<FsReply>(write && !failed.ok() ? error() : Execute(s, req));
        if (!failed.ok() && !std::holds_alternative<Rlerror>(reply->msg)) *reply = error();
        if (ahead) {
          ahead->Settle(s.rollbacks());
          if (write && std::holds_alternative<Rwrite>(reply->msg)) ahead->Allow(req.ino);
        }
        return [done, reply, answers]() {
          if (answers) answers->writer.fetch_add(1, std::memory_order_relaxed);
          done(std::move(*reply));
        };
      },
      home);
}

void StoreFileSystem::Unref(uint64_t ino) {
  worker_.Run([ino](Store& s) -> StoreWorker::Completion {
    s.Unref(ino);
    return nullptr;
  });
}

}  // namespace muscle::server
