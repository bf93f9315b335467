// The redo log's file: header, groups, reuse in place (redo_log.h).
#include "store/redo_log.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>


namespace muscle::store {

namespace {

constexpr char kMagic[16] = "muscle-redo 1\n";
constexpr size_t kHeader = 80;  // magic, commit, nonce, boot id (36), padding
constexpr uint32_t kGroupMagic = 0x4f444552;  // "REDO"
constexpr size_t kMaxGroup = 256u << 20;
// A group of one byte (no record starts with it) and the commit number:
// BeginCommit's mark.
constexpr uint8_t kCommitMark = 0xff;

void Le64(char* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = char(v >> (8 * i));
}
uint64_t GetLe64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= uint64_t(uint8_t(p[i])) << (8 * i);
  return v;
}
void Le32(char* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = char(v >> (8 * i));
}
uint32_t GetLe32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= uint32_t(uint8_t(p[i])) << (8 * i);
  return v;
}

// This boot's id (36 characters): a log from another boot was not synced
// and may hold anything.
// Empty when unknown (no /proc): a log is then never replayed, since
// nothing tells a kill from a reboot.
std::string BootId() {
  char buf[37] = {};
  int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  ssize_t n = read(fd, buf, 36);
  close(fd);
  return n == 36 ? std::string(buf, 36) : "";
}

uint64_t Nonce() {
  uint64_t v = 0;
  while (getrandom(&v, sizeof v, 0) != ssize_t(sizeof v)) {
  }
  return v;
}

Status FullPread(int fd, char* out, size_t len, uint64_t at, bool* short_read) {
  *short_read = false;
  while (len > 0) {
    ssize_t n = pread(fd, out, len, off_t(at));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status(errno, "read redo log");
    if (n == 0) {
      *short_read = true;
      return Status::Ok();
    }
    out += n;
    len -= size_t(n);
    at += uint64_t(n);
  }
  return Status::Ok();
}

}  // namespace

void RedoBatch::Put64(uint64_t v) {
  char b[8];
  Le64(b, v);
  meta_.append(b, 8);
}

void RedoBatch::PutString(std::string_view s) {
  char b[4];
  Le32(b, uint32_t(s.size()));
  meta_.append(b, 4);
  meta_.append(s);
}

void RedoBatch::PutData(std::string_view s) {
  char b[4];
  Le32(b, uint32_t(s.size()));
  meta_.append(b, 4);
  data_.emplace_back(meta_.size(), s);
}

size_t RedoBatch::size() const {
  size_t n = meta_.size();
  for (const auto& [at, d] : data_) n += d.size();
  return n;
}

void RedoBatch::Clear() {
  meta_.clear();
  data_.clear();
}

void RedoBatch::Pieces(std::vector<iovec>& out) const {
  size_t from = 0;
  for (const auto& [at, d] : data_) {
    if (at > from) out.push_back({const_cast<char*>(meta_.data() + from), at - from});
    if (!d.empty()) out.push_back({const_cast<char*>(d.data()), d.size()});
    from = at;
  }
  if (meta_.size() > from) out.push_back({const_cast<char*>(meta_.data() + from), meta_.size() - from});
}

std::string RedoBatch::Flatten() const {
  std::vector<iovec> v;
  Pieces(v);
  std::string out;
  out.reserve(size());
  for (const iovec& p : v) out.append(static_cast<const char*>(p.iov_base), p.iov_len);
  return out;
}

uint8_t RedoReader::Get8() {
  if (p_.empty()) {
    ok_ = false;
    return 0;
  }
  uint8_t v = uint8_t(p_[0]);
  p_.remove_prefix(1);
  return v;
}

uint64_t RedoReader::Get64() {
  if (p_.size() < 8) {
    ok_ = false;
    p_ = {};
    return 0;
  }
  uint64_t v = GetLe64(p_.data());
  p_.remove_prefix(8);
  return v;
}

std::string_view RedoReader::GetString() {
  if (p_.size() < 4 || p_.size() - 4 < GetLe32(p_.data())) {
    ok_ = false;
    p_ = {};
    return {};
  }
  uint32_t n = GetLe32(p_.data());
  std::string_view s = p_.substr(4, n);
  p_.remove_prefix(4 + size_t(n));
  return s;
}

RedoLog::~RedoLog() {
  if (fd_ >= 0) close(fd_);
}

Result<std::unique_ptr<RedoLog>> RedoLog::Open(const std::string& path, uint64_t commit,
                                               const std::string& owner_of) {
  std::unique_ptr<RedoLog> log(new RedoLog());
  log->path_ = path;
  bool created = access(path.c_str(), F_OK) != 0;
  log->fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (log->fd_ < 0) return Status(errno, "open " + path);
  struct stat st;
  // Made by root for a store served as another user: that user's.
  if (created && geteuid() == 0 && stat(owner_of.c_str(), &st) == 0 && st.st_uid != 0 &&
      fchown(log->fd_, st.st_uid, st.st_gid) != 0)
    return Status(errno, "chown " + path);
  MUSCLE_RETURN_IF_ERROR(log->Reset(commit));
  return log;
}

Status RedoLog::Reset(uint64_t commit) {
  MutexLock lock(&mu_);
  char h[kHeader] = {};
  memcpy(h, kMagic, sizeof kMagic);
  Le64(h + 16, commit);
  uint64_t nonce = Nonce();
  Le64(h + 24, nonce);
  std::string boot = BootId();
  memcpy(h + 32, boot.data(), boot.size());
  broken_ = true;  // until the header and the writes ahead are in
  ssize_t n = pwrite(fd_, h, kHeader, 0);
  if (n != ssize_t(kHeader)) return Status(n < 0 ? errno : ENOSPC, "write " + path_);
  nonce_ = nonce;
  end_ = kHeader;
  MUSCLE_RETURN_IF_ERROR(WriteAheadAgain());
  broken_ = false;
  return Status::Ok();
}

Status RedoLog::WriteGroup(const std::vector<iovec>& payload, size_t len) {
  if (len > kMaxGroup) return Status(EFBIG, "a redo record of " + std::to_string(len) + " bytes");
  char head[8], tail[8];
  Le32(head, kGroupMagic);
  Le32(head + 4, uint32_t(len));
  Le64(tail, nonce_ ^ len);
  std::vector<iovec> v;
  v.reserve(payload.size() + 2);
  v.push_back({head, 8});
  v.insert(v.end(), payload.begin(), payload.end());
  v.push_back({tail, 8});
  size_t total = len + 16, done = 0, first = 0;
  // pwritev writes at most IOV_MAX pieces and may write less than asked.
  while (done < total) {
    int count = int(std::min<size_t>(v.size() - first, IOV_MAX));
    ssize_t n = pwritev(fd_, v.data() + first, count, off_t(end_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status(n < 0 ? errno : ENOSPC, "write " + path_);
    done += size_t(n);
    size_t k = size_t(n);
    while (k > 0 && first < v.size()) {
      if (k >= v[first].iov_len) {
        k -= v[first].iov_len;
        first++;
      } else {
        v[first].iov_base = static_cast<char*>(v[first].iov_base) + k;
        v[first].iov_len -= k;
        k = 0;
      }
    }
  }
  end_ += total;
  return Status::Ok();
}

Status RedoLog::WriteAheadAgain() {
  for (auto& [id, a] : ahead_) {
    std::vector<iovec> v;
    a.batch.Pieces(v);
    MUSCLE_RETURN_IF_ERROR(WriteGroup(v, a.batch.size()));
    a.after = store_groups_;
  }
  return Status::Ok();
}

Status RedoLog::BeginCommit(uint64_t next) {
  MutexLock lock(&mu_);
  if (broken_) return Status(EIO, path_ + " could not be started again after a commit");
  char mark[9];
  mark[0] = char(kCommitMark);
  Le64(mark + 1, next);
  std::vector<iovec> v{{mark, sizeof mark}};
  MUSCLE_RETURN_IF_ERROR(WriteGroup(v, sizeof mark));
  return WriteAheadAgain();
}

Status RedoLog::Append(const RedoBatch& b) {
  std::vector<iovec> v;
  b.Pieces(v);
  MutexLock lock(&mu_);
  if (broken_) return Status(EIO, path_ + " could not be started again after a commit");
  MUSCLE_RETURN_IF_ERROR(WriteGroup(v, b.size()));
  store_groups_++;
  return Status::Ok();
}

Status RedoLog::AppendAhead(uint64_t id, RedoBatch b) {
  std::vector<iovec> v;
  b.Pieces(v);
  MutexLock lock(&mu_);
  if (broken_) return Status(EIO, path_ + " could not be started again after a commit");
  MUSCLE_RETURN_IF_ERROR(WriteGroup(v, b.size()));
  ahead_.emplace(id, Ahead{std::move(b), store_groups_});
  return Status::Ok();
}

bool RedoLog::Taken(uint64_t id) {
  MutexLock lock(&mu_);
  auto it = ahead_.find(id);
  if (it == ahead_.end()) return false;
  bool in_order = it->second.after == store_groups_ && !broken_;
  ahead_.erase(it);
  return in_order;
}

uint64_t RedoLog::size() {
  MutexLock lock(&mu_);
  return end_ - kHeader;
}

Status RedoLog::ForEachGroup(const std::string& path, uint64_t commit,
                             const std::function<Status(std::string_view)>& each) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return errno == ENOENT ? Status::Ok() : Status(errno, "open " + path);
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  char h[kHeader];
  bool short_read = false;
  MUSCLE_RETURN_IF_ERROR(FullPread(fd, h, kHeader, 0, &short_read));
  std::string boot = BootId();
  uint64_t logged = GetLe64(h + 16);
  if (short_read || memcmp(h, kMagic, sizeof kMagic) != 0 ||
      (logged != commit && logged + 1 != commit) || boot.empty() || std::string(h + 32, 36) != boot)
    return Status::Ok();
  // On top of `commit`: up to a mark. One commit behind (killed between
  // that commit and the log's restart): after the mark for `commit`.
  bool replaying = logged == commit;
  uint64_t nonce = GetLe64(h + 24);
  uint64_t at = kHeader;
  std::string payload;
  for (;;) {
    char head[8];
    MUSCLE_RETURN_IF_ERROR(FullPread(fd, head, 8, at, &short_read));
    if (short_read || GetLe32(head) != kGroupMagic) break;
    size_t len = GetLe32(head + 4);
    if (len > kMaxGroup) break;
    payload.resize(len + 8);
    MUSCLE_RETURN_IF_ERROR(FullPread(fd, payload.data(), len + 8, at + 8, &short_read));
    if (short_read || GetLe64(payload.data() + len) != (nonce ^ len)) break;
    at += len + 16;
    if (len == 9 && uint8_t(payload[0]) == kCommitMark) {
      if (replaying) break;
      replaying = GetLe64(payload.data() + 1) == commit;
      continue;
    }
    if (replaying) MUSCLE_RETURN_IF_ERROR(each(std::string_view(payload.data(), len)));
  }
  return Status::Ok();
}

}  // namespace muscle::store
