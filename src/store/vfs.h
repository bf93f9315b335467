// The SQLite VFS every store opens its database through ("muscle"): it
// forwards to the default unix VFS and adds the store's file-layer seams.
//
// - Disk-full reserve: a store registers a handler for its database path.
//   When a write or truncate of that database (or its WAL) fails with
//   SQLITE_FULL, the handler is called (it releases the store's reserve
//   file) and, if it freed space, the operation is retried once. So the
//   commit that deletes files on a full disk still completes.
// - Fault injection (tests): fail the Nth write, sync or truncate (counted
//   over every file opened through this VFS) with a chosen SQLite error,
//   once or from then on.
// - Power-loss simulation (tests): while recording, every write and
//   truncate since a file's last sync is remembered; DropUnsyncedWrites()
//   puts those bytes back the way they were on disk at the last sync (what
//   a power cut does to the page cache) and makes every later operation on
//   those files fail, so the process can then exit without touching them.
//
// Threading: the fault plan and the recording switch are process-global and
// atomic; register handlers before opening the database they name.
#pragma once

#include <cstdint>
#include <functional>
#include <cstddef>
#include <string>

namespace muscle::store::vfs {

// Registers the VFS on first use and returns its name for sqlite3_open_v2.
const char* Name();

// Called on SQLITE_FULL for files whose path starts with `db_path`;
// returns true when it freed space (the failed operation is then retried).
// An empty function unregisters.
void SetFullHandler(const std::string& db_path, std::function<bool()> handler);

enum Op : int { kWrite = 1, kSync = 2, kTruncate = 4, kRead = 8 };

// Fails the `nth` (1-based) matching operation from now on with
// `sqlite_error` (e.g. SQLITE_FULL, SQLITE_IOERR_WRITE); with `persistent`
// every later matching operation fails too, until ClearFault().
void InjectFault(int ops, uint64_t nth, int sqlite_error, bool persistent);
void ClearFault();
// Whether an injected fault has fired since InjectFault.
bool FaultFired();
// Operations of the given kinds seen so far (for sweeps over N).
uint64_t OpsSeen(int ops);

void RecordUnsyncedWrites(bool on);
void DropUnsyncedWrites();

// Plain files outside SQLite (the packs) pass through the same seams: the
// fault plan counts their reads, writes, syncs and truncates (an injected
// SQLITE_FULL is ENOSPC, anything else EIO), and power-loss simulation
// truncates them back to their size at their last sync (they are
// append-only). Each returns 0 or an errno; a short read is EIO.
int FileRead(int fd, void* buf, size_t n, uint64_t offset);
int FileWrite(int fd, const void* buf, size_t n, uint64_t offset);
int FileSync(int fd);
int FileTruncate(int fd, uint64_t size);
void FileClosed(int fd);

}  // namespace muscle::store::vfs
