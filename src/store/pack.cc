#include "store/pack.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "common/threads.h"
#include "store/vfs.h"

namespace muscle::store {

namespace {

constexpr size_t kMaxFds = 64;

Status Err(int e, const std::string& what) { return ErrnoStatus(e, what); }

bool ParseName(const char* name, uint64_t* id) {
  unsigned long long v;
  char tail[8];
  if (sscanf(name, "%16llx.pac%1s", &v, tail) != 2 || strcmp(tail, "k") != 0) return false;
  if (strlen(name) != 21) return false;
  *id = v;
  return true;
}

}  // namespace

Status SyncDir(const std::string& dir) {
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Err(errno, "open " + dir);
  int rc = fsync(fd) == 0 ? 0 : errno;
  close(fd);
  return rc ? Err(rc, "sync " + dir) : Status::Ok();
}

LocalPackStore::LocalPackStore(std::string dir, Mode mode)
    : dir_(std::move(dir)), read_only_(mode == Mode::kReadOnly) {}

Result<std::unique_ptr<LocalPackStore>> LocalPackStore::Temporary() {
  char tmpl[] = "/tmp/musclefs-memory-XXXXXX";
  if (!mkdtemp(tmpl)) return Status(errno, "mkdtemp for an in-memory store's packs");
  auto s = std::make_unique<LocalPackStore>(tmpl, Mode::kWrite);
  s->temporary_ = true;
  return s;
}

Result<std::unique_ptr<ChunkStore>> LocalPackStore::NewReader() {
  return std::unique_ptr<ChunkStore>(std::make_unique<LocalPackStore>(dir_, Mode::kReadOnly));
}

LocalPackStore::~LocalPackStore() {
  (void)WaitIdle();
  {
    MutexLock l(&punch_mu_);
    punch_stop_ = true;
  }
  punch_cv_.SignalAll();
  if (puncher_.joinable()) puncher_.join();
  for (auto& [id, fd] : fds_) {
    vfs::FileClosed(fd);
    close(fd);
  }
  fds_.clear();
  if (temporary_) {
    for (uint64_t id : Containers()) (void)Remove(id);
    unlink((dir_ + "/owner").c_str());
    rmdir(dir_.c_str());
  }
}

std::string LocalPackStore::PathOf(uint64_t id) const {
  char name[32];
  snprintf(name, sizeof name, "%016llx.pack", (unsigned long long)id);
  return dir_ + "/" + name;
}

void LocalPackStore::Close(uint64_t id) {
  auto it = fds_.find(id);
  if (it == fds_.end()) return;
  vfs::FileClosed(it->second);
  close(it->second);
  fds_.erase(it);
}

Result<int> LocalPackStore::Fd(uint64_t id) {
  auto it = fds_.find(id);
  if (it != fds_.end()) return it->second;
  if (fds_.size() >= kMaxFds) {
    // Drop a cached descriptor other than the open pack's.
    auto victim = fds_.begin();
    if (victim->first == open_id_) ++victim;
    if (victim != fds_.end()) Close(victim->first);
  }
  int fd = open(PathOf(id).c_str(), (read_only_ ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return Err(errno, "open pack " + PathOf(id));
  fds_[id] = fd;
  return fd;
}

Status LocalPackStore::Create(uint64_t id) {
  std::string path = PathOf(id);
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Err(errno, "create pack " + path);
  fds_[id] = fd;
  if (int e = vfs::FileWrite(fd, kContainerMagic, sizeof kContainerMagic, 0)) return Err(e, "write " + path);
  // The header and the directory entry are durable before any index row
  // can name the pack.
  if (int e = vfs::FileSync(fd)) return Err(e, "sync " + path);
  MUSCLE_RETURN_IF_ERROR(SyncDir(dir_));
  open_id_ = id;
  open_size_ = kHeaderSize;
  writeback_from_ = kHeaderSize;
  return Status::Ok();
}

std::vector<uint64_t> LocalPackStore::Containers() {
  std::vector<uint64_t> ids;
  DIR* d = opendir(dir_.c_str());
  if (!d) return ids;
  while (dirent* e = readdir(d)) {
    uint64_t id;
    if (ParseName(e->d_name, &id)) ids.push_back(id);
  }
  closedir(d);
  std::sort(ids.begin(), ids.end());
  return ids;
}

Status LocalPackStore::Open(const std::string& owner,
                            const std::map<uint64_t, uint64_t>& committed) {
  if (read_only_) return Status(EROFS, "packs in " + dir_ + " are open read-only");
  const std::string& dir = dir_;
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Err(errno, "mkdir " + dir);
  std::string owner_path = dir + "/owner";
  if (FILE* f = fopen(owner_path.c_str(), "r")) {
    char buf[128] = {};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    std::string have(buf, n);
    while (!have.empty() && have.back() == '\n') have.pop_back();
    if (have != owner)
      return Status(EEXIST, dir + " belongs to another store (" + have + ", this one is " + owner +
                                "): give each store its own directory");
  } else {
    if (!Containers().empty())
      return Status(EEXIST, dir + " holds pack files of an unknown store: give each store its own directory");
    std::string tmp = owner_path + ".tmp";
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return Err(errno, "create " + tmp);
    std::string line = owner + "\n";
    bool ok = write(fd, line.data(), line.size()) == ssize_t(line.size()) && fsync(fd) == 0;
    int e = errno;
    close(fd);
    if (!ok) return Err(e, "write " + tmp);
    if (rename(tmp.c_str(), owner_path.c_str()) != 0) return Err(errno, "rename " + tmp);
    MUSCLE_RETURN_IF_ERROR(SyncDir(dir));
  }
  for (uint64_t id : Containers()) {
    auto c = committed.find(id);
    if (c == committed.end()) {
      // Started but never committed, or compacted away.
      if (unlink(PathOf(id).c_str()) != 0) return Err(errno, "remove " + PathOf(id));
      continue;
    }
    struct stat st;
    if (stat(PathOf(id).c_str(), &st) != 0) return Err(errno, "stat " + PathOf(id));
    if (uint64_t(st.st_size) > c->second) {
      auto fd = Fd(id);
      if (!fd.ok()) return fd.status();
      if (int e = vfs::FileTruncate(*fd, c->second)) return Err(e, "truncate " + PathOf(id));
      if (int e = vfs::FileSync(*fd)) return Err(e, "sync " + PathOf(id));
    } else if (uint64_t(st.st_size) < c->second) {
      return Status(EIO, "pack " + PathOf(id) + " is " + std::to_string(st.st_size) +
                             " bytes, shorter than its committed " + std::to_string(c->second));
    }
  }
  for (auto& [id, size] : committed) {
    struct stat st;
    if (stat(PathOf(id).c_str(), &st) != 0) return Err(errno, "pack " + PathOf(id) + " is missing");
  }
  if (committed.empty()) return Status::Ok();  // the first Append creates pack 1
  open_id_ = committed.rbegin()->first;
  open_size_ = committed.rbegin()->second;
  writeback_from_ = open_size_;
  return Status::Ok();
}

bool LocalPackStore::StartsPack(size_t length) const {
  return open_id_ == 0 || seal_next_ || open_size_ + kRecordHeader + length > pack_target;
}

ChunkLocation LocalPackStore::PlaceOf(size_t length) const {
  if (StartsPack(length)) return {open_id_ + 1, kContainerHeaderSize + kRecordHeader};
  return {open_id_, open_size_ + kRecordHeader};
}

Result<PutResult> LocalPackStore::Put(std::string_view data, const unsigned char (&hash)[32]) {
  if (read_only_) return Status(EROFS, "packs in " + dir_ + " are open read-only");
  if (data.empty() || data.size() > UINT32_MAX)
    return Status(EINVAL, "a chunk of " + std::to_string(data.size()) + " bytes");
  PutResult put;
  if (StartsPack(data.size())) {
    if (open_id_ != 0 && std::find(unsynced_.begin(), unsynced_.end(), open_id_) == unsynced_.end())
      unsynced_.push_back(open_id_);
    if (open_id_ != 0) {
      auto old = Fd(open_id_);
      if (old.ok()) StartWriteback(*old, true);  // the sealed pack's tail
    }
    ContainerMark sealed = mark();
    MUSCLE_RETURN_IF_ERROR(Create(open_id_ + 1));
    seal_next_ = false;
    put.started = true;
    put.sealed = sealed;
  }
  auto fd = Fd(open_id_);
  if (!fd.ok()) return fd.status();
  unsigned char head[kRecordHeader];
  EncodeRecordHeader(uint32_t(data.size()), hash, head);
  auto write = [&](const void* p, size_t n, uint64_t at) {
    int e = vfs::FileWrite(*fd, p, n, at);
    if (e == ENOSPC && on_full && on_full()) e = vfs::FileWrite(*fd, p, n, at);
    return e;
  };
  if (int e = write(head, sizeof head, open_size_)) return Err(e, "write " + PathOf(open_id_));
  if (int e = write(data.data(), data.size(), open_size_ + kRecordHeader))
    return Err(e, "write " + PathOf(open_id_));
  put.at = {open_id_, open_size_ + kRecordHeader};
  open_size_ += kRecordHeader + data.size();
  if (unsynced_.empty() || unsynced_.back() != open_id_) unsynced_.push_back(open_id_);
  StartWriteback(*fd, false);
  return put;
}

void LocalPackStore::StartWriteback(int fd, bool all) {
  if (writeback_from_ > open_size_) writeback_from_ = open_size_;
  uint64_t n = open_size_ - writeback_from_;
  if (n == 0 || (!all && n < kWritebackStep)) return;
  // A hint: start writing these pages out now, without waiting, so that the
  // commit's sync finds them (mostly) written instead of doing all the disk
  // work while the store thread waits. Failures show at that sync.
  (void)sync_file_range(fd, off_t(writeback_from_), off_t(n), SYNC_FILE_RANGE_WRITE);
  writeback_from_ = open_size_;
}

Status LocalPackStore::ReadRaw(uint64_t pack, uint64_t offset, size_t len, char* out) {
  auto fd = Fd(pack);
  if (!fd.ok()) return fd.status();
  if (int e = vfs::FileRead(*fd, out, len, offset))
    return Err(e, "read " + PathOf(pack) + " at " + std::to_string(offset));
  return Status::Ok();
}



Status LocalPackStore::Sync() {
  for (uint64_t id : unsynced_) {
    auto fd = Fd(id);
    if (!fd.ok()) return fd.status();
    if (int e = vfs::FileSync(*fd)) return Err(e, "sync " + PathOf(id));
  }
  unsynced_.clear();
  return Status::Ok();
}

Status LocalPackStore::RollBackTo(const ContainerMark& mark) {
  if (read_only_) return Status(EROFS, "packs in " + dir_ + " are open read-only");
  const uint64_t pack = mark.container, size = mark.size;
  for (uint64_t id : Containers()) {
    if (id <= pack) continue;
    Close(id);
    if (unlink(PathOf(id).c_str()) != 0) return Err(errno, "remove " + PathOf(id));
  }
  unsynced_.erase(std::remove_if(unsynced_.begin(), unsynced_.end(),
                                 [&](uint64_t id) { return id > pack; }),
                  unsynced_.end());
  open_id_ = pack;
  open_size_ = size;
  writeback_from_ = size;
  seal_next_ = false;
  if (pack == 0) return Status::Ok();
  auto fd = Fd(pack);
  if (!fd.ok()) return fd.status();
  if (int e = vfs::FileTruncate(*fd, size)) return Err(e, "truncate " + PathOf(pack));
  return Status::Ok();
}

Status LocalPackStore::Punch(ChunkLocation at, uint64_t length) {
  if (read_only_) return Status(EROFS, "packs in " + dir_ + " are open read-only");
  const uint64_t pack = at.container;
  // Whole pages inside the data only: headers stay readable.
  uint64_t lo, hi;
  PunchablePages(at.offset, length, &lo, &hi);
  if (lo >= hi) return Status::Ok();
  auto fd = Fd(pack);
  if (!fd.ok()) return fd.status();
  // The helper's own descriptor: the pack may be closed (or compacted away)
  // here before the hole is punched.
  int own = fcntl(*fd, F_DUPFD_CLOEXEC, 0);
  if (own >= 0) {
    MutexLock l(&punch_mu_);
    if (!puncher_.joinable()) {
      try {
        puncher_ = StartThread("punch-holes", [this] { PunchMain(); });
      } catch (const std::system_error&) {
      }
    }
    if (puncher_.joinable()) {
      holes_.push_back({own, lo, hi - lo});
      punch_cv_.SignalAll();
      return Status::Ok();
    }
    close(own);
  }
  if (fallocate(*fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(lo), off_t(hi - lo)) != 0)
    return Err(errno, "punch " + PathOf(pack));
  return Status::Ok();
}

void LocalPackStore::PunchMain() {
  MutexLock l(&punch_mu_);
  for (;;) {
    while (!punch_stop_ && holes_.empty()) punch_cv_.Wait(&punch_mu_);
    if (holes_.empty()) return;  // stopping, nothing left
    Hole h = holes_.front();
    holes_.pop_front();
    punching_ = true;
    l.Unlock();
    int e = fallocate(h.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(h.offset),
                      off_t(h.length)) == 0 ? 0 : errno;
    close(h.fd);
    l.Lock();
    punching_ = false;
    if (e && !punch_errno_) {
      punch_errno_ = e;
      punch_error_ = "punch a pack of " + dir_;
    }
    if (holes_.empty()) punch_cv_.SignalAll();
  }
}

Status LocalPackStore::WaitIdle() {
  MutexLock l(&punch_mu_);
  while (!holes_.empty() || punching_) punch_cv_.Wait(&punch_mu_);
  int e = punch_errno_;
  punch_errno_ = 0;
  return e ? Err(e, punch_error_) : Status::Ok();
}

Status LocalPackStore::Records(uint64_t pack, uint64_t size, std::vector<ChunkRecord>& out) {
  out.clear();
  auto fd = Fd(pack);
  if (!fd.ok()) return fd.status();
  int descriptor = *fd;
  return WalkRecords([&](void* buf, size_t len, uint64_t at) { return vfs::FileRead(descriptor, buf, len, at); },
                     size, PathOf(pack), out);
}

void LocalPackStore::ForgetCached() {
  while (!fds_.empty()) Close(fds_.begin()->first);
}

Status LocalPackStore::Remove(uint64_t pack) {
  if (read_only_) return Status(EROFS, "packs in " + dir_ + " are open read-only");
  Close(pack);
  if (unlink(PathOf(pack).c_str()) != 0 && errno != ENOENT) return Err(errno, "remove " + PathOf(pack));
  return Status::Ok();
}

}  // namespace muscle::store
