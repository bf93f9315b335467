#include "store/vfs.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <vector>

namespace muscle::store::vfs {

namespace {

struct Undo {
  int64_t offset;
  std::string old;  // what was there before (shorter at the old end of file)
};

struct File {
  sqlite3_file base;  // pMethods = &kMethods
  sqlite3_file* real;  // the default VFS's file, allocated right after this
  std::string path;
  // Power-loss simulation: writes since the last sync, newest last.
  std::vector<Undo> unsynced;
  int64_t synced_size = -1;  // size at the last sync, -1 when nothing recorded
  bool dead = false;
};

sqlite3_vfs* g_real = nullptr;
sqlite3_vfs g_vfs;

std::mutex g_mu;  // guards the maps below
std::map<std::string, std::function<bool()>> g_full_handlers;
std::set<File*> g_files;
std::map<int, uint64_t> g_plain_synced;  // plain fd -> size at its last sync
bool g_plain_dead = false;

std::atomic<int> g_fault_ops{0};
std::atomic<int64_t> g_fault_countdown{0};
std::atomic<int> g_fault_error{0};
std::atomic<bool> g_fault_persistent{false};
std::atomic<bool> g_fault_fired{false};
std::atomic<uint64_t> g_ops[4];  // by kind: write, sync, truncate, read
std::atomic<bool> g_recording{false};

// SQLITE_OK, or the injected error for this operation.
int Injected(int op) {
  g_ops[__builtin_ctz(op)].fetch_add(1, std::memory_order_relaxed);
  if (!(g_fault_ops.load(std::memory_order_relaxed) & op)) return SQLITE_OK;
  if (g_fault_fired.load() && g_fault_persistent.load()) return g_fault_error.load();
  if (g_fault_countdown.fetch_sub(1) == 1) {
    g_fault_fired = true;
    return g_fault_error.load();
  }
  return SQLITE_OK;
}

// Calls the full-disk handler registered for this file, if any.
bool ReleaseSpace(const File* f) {
  std::function<bool()> h;
  {
    std::lock_guard<std::mutex> g(g_mu);
    for (auto& [prefix, handler] : g_full_handlers)
      if (f->path.compare(0, prefix.size(), prefix) == 0) h = handler;
  }
  return h && h();
}

File* Of(sqlite3_file* p) { return reinterpret_cast<File*>(p); }

int Size(File* f, int64_t* size) {
  sqlite3_int64 s = 0;
  int rc = f->real->pMethods->xFileSize(f->real, &s);
  *size = s;
  return rc;
}

// Remembers what [offset, offset+n) held before a write or truncate.
void Remember(File* f, int64_t offset, int64_t n) {
  int64_t size = 0;
  if (Size(f, &size) != SQLITE_OK) return;
  if (f->synced_size < 0) f->synced_size = size;
  Undo u{offset, {}};
  int64_t have = std::max<int64_t>(0, std::min(size, offset + n) - offset);
  u.old.resize(size_t(have));
  if (have > 0) f->real->pMethods->xRead(f->real, u.old.data(), int(have), offset);
  f->unsynced.push_back(std::move(u));
}

int Close(sqlite3_file* p) {
  File* f = Of(p);
  {
    std::lock_guard<std::mutex> g(g_mu);
    g_files.erase(f);
  }
  int rc = f->real->pMethods ? f->real->pMethods->xClose(f->real) : SQLITE_OK;
  f->path.~basic_string();
  f->unsynced.~vector();
  return rc;
}

int Read(sqlite3_file* p, void* buf, int n, sqlite3_int64 off) {
  File* f = Of(p);
  if (f->dead) return SQLITE_IOERR_READ;
  int rc = Injected(kRead);
  if (rc != SQLITE_OK) return rc;
  return f->real->pMethods->xRead(f->real, buf, n, off);
}

int Write(sqlite3_file* p, const void* buf, int n, sqlite3_int64 off) {
  File* f = Of(p);
  if (f->dead) return SQLITE_IOERR_WRITE;
  int rc = Injected(kWrite);
  if (rc != SQLITE_OK) return rc;
  if (g_recording) Remember(f, off, n);
  rc = f->real->pMethods->xWrite(f->real, buf, n, off);
  if (rc == SQLITE_FULL && ReleaseSpace(f))
    rc = f->real->pMethods->xWrite(f->real, buf, n, off);
  return rc;
}

int Truncate(sqlite3_file* p, sqlite3_int64 size) {
  File* f = Of(p);
  if (f->dead) return SQLITE_IOERR_TRUNCATE;
  int rc = Injected(kTruncate);
  if (rc != SQLITE_OK) return rc;
  if (g_recording) Remember(f, size, INT64_MAX / 2);
  rc = f->real->pMethods->xTruncate(f->real, size);
  if (rc == SQLITE_FULL && ReleaseSpace(f)) rc = f->real->pMethods->xTruncate(f->real, size);
  return rc;
}

int Sync(sqlite3_file* p, int flags) {
  File* f = Of(p);
  if (f->dead) return SQLITE_IOERR_FSYNC;
  int rc = Injected(kSync);
  if (rc != SQLITE_OK) return rc;
  rc = f->real->pMethods->xSync(f->real, flags);
  if (rc == SQLITE_OK) {
    f->unsynced.clear();
    f->synced_size = -1;
  }
  return rc;
}

int FileSize(sqlite3_file* p, sqlite3_int64* size) {
  File* f = Of(p);
  if (f->dead) return SQLITE_IOERR_FSTAT;
  return f->real->pMethods->xFileSize(f->real, size);
}

#define FORWARD(name, sig, args)                        \
  int name sig {                                        \
    File* f = Of(p);                                    \
    return f->real->pMethods->x##name args;             \
  }
FORWARD(Lock, (sqlite3_file* p, int l), (f->real, l))
FORWARD(Unlock, (sqlite3_file* p, int l), (f->real, l))
FORWARD(CheckReservedLock, (sqlite3_file* p, int* out), (f->real, out))
FORWARD(FileControl, (sqlite3_file* p, int op, void* arg), (f->real, op, arg))
FORWARD(SectorSize, (sqlite3_file* p), (f->real))
FORWARD(DeviceCharacteristics, (sqlite3_file* p), (f->real))
FORWARD(ShmMap, (sqlite3_file* p, int pg, int sz, int ext, void volatile** out),
        (f->real, pg, sz, ext, out))
FORWARD(ShmLock, (sqlite3_file* p, int off, int n, int flags), (f->real, off, n, flags))
FORWARD(ShmUnmap, (sqlite3_file* p, int del), (f->real, del))
FORWARD(Fetch, (sqlite3_file* p, sqlite3_int64 off, int n, void** out), (f->real, off, n, out))
FORWARD(Unfetch, (sqlite3_file* p, sqlite3_int64 off, void* ptr), (f->real, off, ptr))
#undef FORWARD
void ShmBarrier(sqlite3_file* p) { Of(p)->real->pMethods->xShmBarrier(Of(p)->real); }

const sqlite3_io_methods kMethods = {
    3,          Close,        Read,     Write,     Truncate,    Sync,
    FileSize,   Lock,         Unlock,   CheckReservedLock,      FileControl,
    SectorSize, DeviceCharacteristics,  ShmMap,    ShmLock,     ShmBarrier,
    ShmUnmap,   Fetch,        Unfetch};

int Open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* p, int flags, int* out_flags) {
  File* f = Of(p);
  f->base.pMethods = nullptr;
  f->real = reinterpret_cast<sqlite3_file*>(f + 1);
  int rc = g_real->xOpen(g_real, name, f->real, flags, out_flags);
  if (rc != SQLITE_OK) return rc;
  new (&f->path) std::string(name ? name : "");
  new (&f->unsynced) std::vector<Undo>();
  f->synced_size = -1;
  f->dead = false;
  f->base.pMethods = &kMethods;
  std::lock_guard<std::mutex> g(g_mu);
  g_files.insert(f);
  return SQLITE_OK;
}

int Delete(sqlite3_vfs*, const char* name, int sync_dir) {
  return g_real->xDelete(g_real, name, sync_dir);
}
int Access(sqlite3_vfs*, const char* name, int flags, int* out) {
  return g_real->xAccess(g_real, name, flags, out);
}
int FullPathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return g_real->xFullPathname(g_real, name, n, out);
}
void* DlOpen(sqlite3_vfs*, const char* f) { return g_real->xDlOpen(g_real, f); }
void DlError(sqlite3_vfs*, int n, char* m) { g_real->xDlError(g_real, n, m); }
void (*DlSym(sqlite3_vfs*, void* h, const char* s))(void) { return g_real->xDlSym(g_real, h, s); }
void DlClose(sqlite3_vfs*, void* h) { g_real->xDlClose(g_real, h); }
int Randomness(sqlite3_vfs*, int n, char* out) { return g_real->xRandomness(g_real, n, out); }
int Sleep(sqlite3_vfs*, int us) { return g_real->xSleep(g_real, us); }
int CurrentTime(sqlite3_vfs*, double* t) { return g_real->xCurrentTime(g_real, t); }
int GetLastError(sqlite3_vfs*, int n, char* m) { return g_real->xGetLastError(g_real, n, m); }
int CurrentTimeInt64(sqlite3_vfs*, sqlite3_int64* t) {
  return g_real->xCurrentTimeInt64(g_real, t);
}

}  // namespace

const char* Name() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_real = sqlite3_vfs_find(nullptr);
    memset(&g_vfs, 0, sizeof g_vfs);
    g_vfs.iVersion = 2;
    g_vfs.szOsFile = int(sizeof(File)) + g_real->szOsFile;
    g_vfs.mxPathname = g_real->mxPathname;
    g_vfs.zName = "muscle";
    g_vfs.xOpen = Open;
    g_vfs.xDelete = Delete;
    g_vfs.xAccess = Access;
    g_vfs.xFullPathname = FullPathname;
    g_vfs.xDlOpen = DlOpen;
    g_vfs.xDlError = DlError;
    g_vfs.xDlSym = DlSym;
    g_vfs.xDlClose = DlClose;
    g_vfs.xRandomness = Randomness;
    g_vfs.xSleep = Sleep;
    g_vfs.xCurrentTime = CurrentTime;
    g_vfs.xGetLastError = GetLastError;
    g_vfs.xCurrentTimeInt64 = CurrentTimeInt64;
    sqlite3_vfs_register(&g_vfs, 0);
  });
  return g_vfs.zName;
}

void SetFullHandler(const std::string& db_path, std::function<bool()> handler) {
  std::lock_guard<std::mutex> g(g_mu);
  if (handler) g_full_handlers[db_path] = std::move(handler);
  else g_full_handlers.erase(db_path);
}

void InjectFault(int ops, uint64_t nth, int sqlite_error, bool persistent) {
  g_fault_ops = 0;
  g_fault_fired = false;
  g_fault_countdown = int64_t(nth);
  g_fault_error = sqlite_error;
  g_fault_persistent = persistent;
  g_fault_ops = ops;
}

void ClearFault() { g_fault_ops = 0; }
bool FaultFired() { return g_fault_fired; }
uint64_t OpsSeen(int ops) {
  uint64_t n = 0;
  for (int i = 0; i < 4; i++)
    if (ops & (1 << i)) n += g_ops[i];
  return n;
}

void RecordUnsyncedWrites(bool on) { g_recording = on; }

namespace {

int ErrnoOf(int sqlite_error) { return (sqlite_error & 0xff) == SQLITE_FULL ? ENOSPC : EIO; }

void RememberPlain(int fd) {
  std::lock_guard<std::mutex> g(g_mu);
  if (g_plain_synced.count(fd)) return;
  struct stat st;
  if (fstat(fd, &st) == 0) g_plain_synced[fd] = uint64_t(st.st_size);
}

}  // namespace

int FileRead(int fd, void* buf, size_t n, uint64_t offset) {
  if (g_plain_dead) return EIO;
  if (int rc = Injected(kRead)) return ErrnoOf(rc);
  size_t done = 0;
  while (done < n) {
    ssize_t r = pread(fd, static_cast<char*>(buf) + done, n - done, off_t(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno;
    if (r == 0) return EIO;
    done += size_t(r);
  }
  return 0;
}

int FileWrite(int fd, const void* buf, size_t n, uint64_t offset) {
  if (g_plain_dead) return EIO;
  if (int rc = Injected(kWrite)) return ErrnoOf(rc);
  if (g_recording) RememberPlain(fd);
  size_t done = 0;
  while (done < n) {
    ssize_t r = pwrite(fd, static_cast<const char*>(buf) + done, n - done, off_t(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno;
    done += size_t(r);
  }
  return 0;
}

int FileSync(int fd) {
  if (g_plain_dead) return EIO;
  if (int rc = Injected(kSync)) return ErrnoOf(rc);
  if (fdatasync(fd) != 0) return errno;
  std::lock_guard<std::mutex> g(g_mu);
  g_plain_synced.erase(fd);
  return 0;
}

int FileTruncate(int fd, uint64_t size) {
  if (g_plain_dead) return EIO;
  if (int rc = Injected(kTruncate)) return ErrnoOf(rc);
  if (g_recording) RememberPlain(fd);
  return ftruncate(fd, off_t(size)) == 0 ? 0 : errno;
}

void FileClosed(int fd) {
  std::lock_guard<std::mutex> g(g_mu);
  g_plain_synced.erase(fd);
}

void DropUnsyncedWrites() {
  std::lock_guard<std::mutex> g(g_mu);
  for (File* f : g_files) {
    for (auto u = f->unsynced.rbegin(); u != f->unsynced.rend(); ++u)
      if (!u->old.empty())
        f->real->pMethods->xWrite(f->real, u->old.data(), int(u->old.size()), u->offset);
    if (f->synced_size >= 0) f->real->pMethods->xTruncate(f->real, f->synced_size);
    f->unsynced.clear();
    f->dead = true;
  }
  for (auto& [fd, size] : g_plain_synced)
    if (ftruncate(fd, off_t(size)) != 0) {
    }
  g_plain_synced.clear();
  g_plain_dead = true;
}

}  // namespace muscle::store::vfs
