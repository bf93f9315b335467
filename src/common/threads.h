// THREADS: every thread of the server, what it owns and what it may touch.
// Read this first. Every thread is started with StartThread (below), under
// the name in the first column, so that `top -H`, `ps -L` and gdb's
// `info threads` show it.
//
// | name         | how many              | started by                 | owns, and may touch |
// |--------------|-----------------------|----------------------------|---------------------|
// | (main)       | 1                     | main()                     | The main libuv loop: listeners, plaintext and unix connections, their 9P sessions, the StoreFileSystem, the Server. Runs the completions of store jobs queued from it (through the queues' Mailbox). Creates and Stops the StoreWorker and the ReaderPool. Serves the metrics listener (server/metrics_http.h). Never touches a Store. |
// | loop         | loops - 1 (TLS only)  | LoopThread::Start          | One more libuv loop (server/loop_thread.h) with the TLS connections accepted onto it and their sessions; its Mailbox is the current one there, so store work it queues completes on it. Never touches a Store. |
// | store-writer | 1                     | StoreWorker (WorkQueue)    | The writer store::Store (its SQLite connection, write buffers, ChunkStore): every change to the store runs here, in submission order. Marks inodes dirty in the ReadGate. |
// | store-reader | store_readers (0..n)  | ReaderPool (WorkQueue)     | One reader store::Store each (its own SQLite connection and pack descriptors): read-only requests, validated with the writer's ReadGate (store/read_gate.h). |
// | precut       | 0..1 per writer store | store::Precut              | Cuts and hashes a sequential writer's buffer ahead of its flush (store/precut.h): reads that buffer (the store thread keeps it in place, Pause before changing it) and Precut's own state under its mutex. |
// | punch-holes  | 0..1 per writer store | store::LocalPackStore::Punch      | Punches holes in pack files through descriptors of its own (store/pack.h); the hole queue under the LocalPackStore's punch mutex. Nothing else of the store. |
// | flush-cut    | 0..1, during a flush  | store's FlushRange         | Cuts and hashes one block of a flush (store/file_data.cc) while the store thread inserts the previous block: reads that block only; joined before the flush goes on. |
// | bucket-upload | 1 per bucket store   | BucketPackStore::Open      | Uploads sealed packs, index objects and the catalog, and deletes objects (store/bucket_pack_store.h): reads the cache files through descriptors of its own; the upload queue, manifest and table of uploaded packs under the store's Shared mutex. |
// | bucket-fetch | read_ahead_depth (3) per bucket store, from its first bucket read | BucketPackStore's ReadBucket | Fetches ranges of packs not in the cache into the shared read-ahead buffers (store/bucket_pack_store.h): a buffer it fills is its own until marked ready under the Shared mutex; nothing else of the store. Joined by the writer's destructor. |
//
// Shared state and the lock guarding it (checked by clang's -Wthread-safety
// where annotated, common/mutex.h):
// - WorkQueue (server/work_queue.h): its job queue, under the queue's mutex.
// - Mailbox (server/loop_thread.h): its task list, under its mutex; the
//   only way a thread hands work to a libuv loop it does not run.
// - ReadGate (store/read_gate.h): dirty inodes, generation, fid references,
//   between the writer, the readers and the loops, under its mutex.
// - Precut and the LocalPackStore's hole queue: between the store thread and
//   their helper, under their own mutex.
// - StoreWorker::idle(): an atomic hint read by the loops.
// - Metrics (server/metrics.h): counters are relaxed atomics bumped on the
//   loops; its list of connections, table of identities and the store's
//   figures (published by the writer after each tick) are under its mutex,
//   read by the writer (status) and the main loop (a scrape).
//
// The client (muscle) has threads of its own: `muscle stdio` copies stdin
// to the socket on one (src/cli/stdio.cc) and `muscle bench` drives the
// server from several (tools/bench/bench.cc); they share nothing with the
// server's.
#pragma once

#include <functional>
#include <string>
#include <thread>

namespace muscle {

// Starts a thread running `fn`, named `name` (at most 15 characters are
// kept: the kernel's limit). Throws std::system_error when no thread can be
// had, as std::thread does; the caller joins it (or lets it go).
std::thread StartThread(std::string name, std::function<void()> fn);

}  // namespace muscle
