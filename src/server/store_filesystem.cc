// Where a request runs: the routing between the event loops, the writer
// and the readers. What runs there is Execute (store_handlers.cc).
#include "server/store_filesystem.h"

#include <cassert>

#include "9p/ops.h"

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
  // buffered data); asking a reader first would only waste its work.
  if (!reads) return false;
  return all ? gate.AllClean() : !gate.IsDirty(req.ino);
}

void StoreFileSystem::Submit(FsRequest req, Done done) {
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
      [shared, answers = answers_, done = std::move(done)](Store& s) -> StoreWorker::Completion {
        auto reply = std::make_shared<FsReply>(Execute(s, *shared));
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
