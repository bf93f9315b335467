// The store's side of the redo log (redo_log.h): each change to the tree
// that the client is answered for is recorded before the answer, and the
// next Open replays what the last commit did not include, with the same
// inode numbers and times, so that a kill -9 loses nothing acknowledged.
// The records are written here and read back here (ReplayGroup): one place
// knows their format.
// Writer only: on the thread that opens the store, then on the store worker.
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "store/statements.h"
#include "store/store.h"

namespace muscle::store {

namespace {

enum RecordType : uint8_t {
  kCreate = 1,
  kLink = 2,
  kUnlink = 3,
  kRename = 4,
  kSetAttr = 5,
  kWrite = 6,
  kSetXattr = 7,
  kRemoveXattr = 8,
  kOpResult = 9,
};

thread_local int64_t fixed_now = 0;

}  // namespace

void FixClock(int64_t ns) { fixed_now = ns; }

int64_t NowNs() {
  if (fixed_now) return fixed_now;
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void Store::RedoCreate(uint64_t dir, std::string_view name, const Attr& a, std::string_view target) {
  if (!Recording()) return;
  RedoBatch& b = redo_batch_;
  b.Begin(kCreate);
  b.Put64(uint64_t(a.ctime_ns));
  for (uint64_t v : {dir, a.ino, uint64_t(a.mode), uint64_t(a.uid), uint64_t(a.gid), a.rdev}) b.Put64(v);
  b.PutString(name);
  b.PutString(target);
}

void Store::RedoLink(uint64_t dir, std::string_view name, uint64_t ino, int64_t now) {
  if (!Recording()) return;
  redo_batch_.Begin(kLink);
  redo_batch_.Put64(uint64_t(now));
  redo_batch_.Put64(dir);
  redo_batch_.Put64(ino);
  redo_batch_.PutString(name);
}

void Store::RedoUnlink(uint64_t dir, std::string_view name, bool remove_dir) {
  if (!Recording()) return;
  redo_batch_.Begin(kUnlink);
  redo_batch_.Put64(uint64_t(NowNs()));
  redo_batch_.Put64(dir);
  redo_batch_.Put8(remove_dir);
  redo_batch_.PutString(name);
}

void Store::RedoRename(uint64_t old_dir, std::string_view old_name, uint64_t new_dir,
                       std::string_view new_name) {
  if (!Recording()) return;
  redo_batch_.Begin(kRename);
  redo_batch_.Put64(uint64_t(NowNs()));
  redo_batch_.Put64(old_dir);
  redo_batch_.Put64(new_dir);
  redo_batch_.PutString(old_name);
  redo_batch_.PutString(new_name);
}

void Store::RedoSetAttr(uint64_t ino, const SetAttrRequest& r, int64_t now) {
  if (!Recording()) return;
  RedoBatch& b = redo_batch_;
  b.Begin(kSetAttr);
  b.Put64(uint64_t(now));
  b.Put64(ino);
  b.Put8(uint8_t(r.set_mode | r.set_uid << 1 | r.set_gid << 2 | r.set_size << 3 | r.set_atime << 4 |
                 r.set_mtime << 5 | r.set_ctime << 6));
  for (uint64_t v : {uint64_t(r.mode), uint64_t(r.uid), uint64_t(r.gid), r.size, uint64_t(r.atime_ns),
                     uint64_t(r.mtime_ns)})
    b.Put64(v);
}

namespace {
void PutWrite(RedoBatch& b, uint64_t ino, uint64_t offset, std::string_view data, int64_t now) {
  b.Begin(kWrite);
  b.Put64(uint64_t(now));
  b.Put64(ino);
  b.Put64(offset);
  b.PutData(data);
}
}  // namespace

RedoBatch RedoWriteRecord(uint64_t ino, uint64_t offset, std::string_view data) {
  RedoBatch b;
  PutWrite(b, ino, offset, data, NowNs());
  return b;
}

void Store::RedoWrite(uint64_t ino, uint64_t offset, std::string_view data, int64_t now) {
  if (Recording()) PutWrite(redo_batch_, ino, offset, data, now);
}

void Store::RedoSetXattr(uint64_t ino, std::string_view name, std::string_view value, uint32_t flags) {
  if (!Recording()) return;
  redo_batch_.Begin(kSetXattr);
  redo_batch_.Put64(uint64_t(NowNs()));
  redo_batch_.Put64(ino);
  redo_batch_.Put64(flags);
  redo_batch_.PutString(name);
  redo_batch_.PutData(value);
}

void Store::RedoRemoveXattr(uint64_t ino, std::string_view name) {
  if (!Recording()) return;
  redo_batch_.Begin(kRemoveXattr);
  redo_batch_.Put64(uint64_t(NowNs()));
  redo_batch_.Put64(ino);
  redo_batch_.PutString(name);
}

void Store::RedoOpResult(std::string_view identity, uint64_t op, std::string_view reply, int64_t now) {
  if (!Recording()) return;
  redo_batch_.Begin(kOpResult);
  redo_batch_.Put64(uint64_t(now));
  redo_batch_.Put64(op);
  redo_batch_.PutString(identity);
  redo_batch_.PutString(reply);
}

void Store::FlushRedo() {
  if (redo_batch_.empty()) return;
  if (!redo_ || replaying_) {
    redo_batch_.Clear();
    return;
  }
  Status s = redo_->Append(redo_batch_);
  redo_batch_.Clear();
  if (s.ok()) {
    if (redo_failing_) Log("store: the redo log works again");
    redo_failing_ = false;
    return;
  }
  // Not logged: committed instead, before the answer (each change, until
  // the log works again).
  if (!redo_failing_)
    Log("store: cannot write the redo log (%s); committing every change instead", s.ToString().c_str());
  redo_failing_ = true;
  Status c = Sync(false);
  if (!c.ok()) Log("store: the commit failed too (the change is lost): %s", c.ToString().c_str());
}

Status Store::Replay() {
  std::string file = path_ + "-redo";
  // A log left by a store that was at this path before is not this one's.
  if (new_store_) unlink(file.c_str());
  replaying_ = true;
  uint64_t groups = 0, failed = 0;
  auto t0 = std::chrono::steady_clock::now();
  Status s = RedoLog::ForEachGroup(file, commit_number_, [&](std::string_view payload) -> Status {
    groups++;
    Status g = ReplayGroup(payload);
    if (!g.ok()) {
      failed++;
      Log("store: replaying %s: %s", file.c_str(), g.ToString().c_str());
    }
    return Status::Ok();
  });
  FixClock(0);
  forced_ino_ = 0;
  replaying_ = false;
  if (!s.ok()) return s;
  if (groups > 0) {
    MUSCLE_RETURN_IF_ERROR(Sync(true));
    Log("store: replayed %llu operations (%llu changes) acknowledged after the last commit in %.1f ms%s",
        (unsigned long long)groups, (unsigned long long)replayed_,
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(),
        failed ? " (some failed: see above)" : "");
  }
  auto log = RedoLog::Open(file, commit_number_, path_);
  if (!log.ok()) return log.status();
  redo_ = std::move(*log);
  return Status::Ok();
}

// One operation's records. A change that fails now failed the same way
// when it was first made or the log is not this store's: logged, and the
// rest replayed.
Status Store::ReplayGroup(std::string_view payload) {
  RedoReader r(payload);
  Status first;
  while (!r.done()) {
    uint8_t type = r.Get8();
    int64_t now = int64_t(r.Get64());
    FixClock(now);
    Status st;
    switch (type) {
      case kCreate: {
        uint64_t dir = r.Get64(), ino = r.Get64(), mode = r.Get64(), uid = r.Get64(),
                 gid = r.Get64(), rdev = r.Get64();
        std::string_view name = r.GetString(), target = r.GetString();
        if (!r.ok()) break;
        forced_ino_ = ino;
        auto a = Create(dir, name, uint32_t(mode), uint32_t(uid), uint32_t(gid), rdev, target);
        forced_ino_ = 0;
        st = a.status();
        break;
      }
      case kLink: {
        uint64_t dir = r.Get64(), ino = r.Get64();
        std::string_view name = r.GetString();
        if (r.ok()) st = Link(dir, name, ino).status();
        break;
      }
      case kUnlink: {
        uint64_t dir = r.Get64();
        bool remove_dir = r.Get8() != 0;
        std::string_view name = r.GetString();
        if (r.ok()) st = Unlink(dir, name, remove_dir);
        break;
      }
      case kRename: {
        uint64_t old_dir = r.Get64(), new_dir = r.Get64();
        std::string_view old_name = r.GetString(), new_name = r.GetString();
        if (r.ok()) st = Rename(old_dir, old_name, new_dir, new_name);
        break;
      }
      case kSetAttr: {
        uint64_t ino = r.Get64();
        uint8_t f = r.Get8();
        SetAttrRequest q;
        q.set_mode = f & 1, q.set_uid = f & 2, q.set_gid = f & 4, q.set_size = f & 8,
        q.set_atime = f & 16, q.set_mtime = f & 32, q.set_ctime = f & 64;
        q.mode = uint32_t(r.Get64()), q.uid = uint32_t(r.Get64()), q.gid = uint32_t(r.Get64());
        q.size = r.Get64();
        q.atime_ns = int64_t(r.Get64()), q.mtime_ns = int64_t(r.Get64());
        if (r.ok()) st = SetAttr(ino, q).status();
        break;
      }
      case kWrite: {
        uint64_t ino = r.Get64(), offset = r.Get64();
        std::string_view data = r.GetString();
        // Taken as acknowledged data is: whatever the space.
        if (r.ok()) st = Take(ino, offset, data, true).status();
        break;
      }
      case kSetXattr: {
        uint64_t ino = r.Get64(), flags = r.Get64();
        std::string_view name = r.GetString(), value = r.GetString();
        if (r.ok()) st = SetXattr(ino, name, value, uint32_t(flags));
        break;
      }
      case kRemoveXattr: {
        uint64_t ino = r.Get64();
        std::string_view name = r.GetString();
        if (r.ok()) st = RemoveXattr(ino, name);
        break;
      }
      case kOpResult: {
        uint64_t op = r.Get64();
        std::string_view identity = r.GetString(), reply = r.GetString();
        // A reply whose change failed now is not kept: the resent request
        // runs again rather than being answered for a change not made.
        if (!r.ok() || !first.ok()) break;
        st = Begin();
        if (st.ok()) {
          Stmt& ins = st_->put_op;
          Stmt::Scope reset(ins);
          ins.BindText(1, identity).Bind(2, int64_t(op)).Bind(3, reply).Bind(4, now);
          st = ins.Run();
        }
        break;
      }
      default:
        return Status(EIO, "a record of unknown kind " + std::to_string(type));
    }
    if (!r.ok()) return Status(EIO, "a damaged record");
    replayed_++;
    if (!st.ok() && first.ok()) first = Status(st.err(), "record kind " + std::to_string(type) + ": " + st.ToString());
  }
  return first;
}

Status Store::HoldOrphans() {
  // Files unlinked while open when the store was last closed (or the
  // server killed): held as if open until ReleaseOrphans, so that a
  // client coming back after a restart can rebind its fid to one.
  // Directories (removed while a client was in them) cannot be bound
  // again: freed at once.
  std::vector<uint64_t> dirs;
  {
    Stmt orphans(db_, "SELECT ino, mode FROM inodes WHERE nlink=0 AND ino<>1");
    while (orphans.Step())
      (S_ISDIR(orphans.Int(1)) ? dirs : orphans_).push_back(uint64_t(orphans.Int(0)));
    if (orphans.failed()) return orphans.Error("files without names");
  }
  for (uint64_t ino : orphans_) gate_->Ref(ino);
  if (dirs.empty()) return Status::Ok();
  OpScope op(this);
  MUSCLE_RETURN_IF_ERROR(Atomically([&]() -> Status {
    for (uint64_t ino : dirs) MUSCLE_RETURN_IF_ERROR(PurgeInode(ino));
    return Status::Ok();
  }));
  return Sync(true);
}

}  // namespace muscle::store
