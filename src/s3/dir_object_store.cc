#include "s3/dir_object_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace muscle::s3 {

namespace {

Status Err(int e, const std::string& what) { return Status(e, what); }

bool ValidKey(const std::string& key) {
  if (key.empty() || key.front() == '/' || key.find("..") != std::string::npos) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '/' || c == '-';
  });
}

Status MakeParents(const std::string& path) {
  for (size_t i = 1; i < path.size(); ++i) {
    if (path[i] != '/') continue;
    std::string dir = path.substr(0, i);
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Err(errno, "mkdir " + dir);
  }
  return Status::Ok();
}

void Walk(const std::string& root, const std::string& rel, std::vector<ObjectInfo>& out) {
  DIR* d = opendir((root + "/" + rel).c_str());
  if (!d) return;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == ".." || name.find(".tmp-") != std::string::npos) continue;
    std::string key = rel.empty() ? name : rel + "/" + name;
    struct stat st;
    if (stat((root + "/" + key).c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      Walk(root, key, out);
    } else if (S_ISREG(st.st_mode)) {
      out.push_back({key, uint64_t(st.st_size)});
    }
  }
  closedir(d);
}

}  // namespace

DirObjectStore::DirObjectStore(std::string dir) : dir_(std::move(dir)) {
  mkdir(dir_.c_str(), 0700);
}

void DirObjectStore::SetFault(std::function<int(std::string_view, const std::string&)> fn) {
  MutexLock l(&mu_);
  fault_ = std::move(fn);
}

uint64_t DirObjectStore::calls(std::string_view op) const {
  if (op == "put") return puts_;
  if (op == "get") return gets_;
  if (op == "range") return ranges_;
  if (op == "head") return heads_;
  if (op == "delete") return deletes_;
  if (op == "list") return lists_;
  return 0;
}

Status DirObjectStore::Check(std::string_view op, const std::string& key) {
  if (op == "put") ++puts_;
  else if (op == "get") ++gets_;
  else if (op == "range") ++ranges_;
  else if (op == "head") ++heads_;
  else if (op == "delete") ++deletes_;
  else if (op == "list") ++lists_;
  if (op != "list" && !ValidKey(key)) return Status(EINVAL, std::string(op) + ": bad key " + key);
  if (int e = down_) return Err(e, std::string(op) + " " + key + " in " + Describe());
  std::function<int(std::string_view, const std::string&)> fault;
  {
    MutexLock l(&mu_);
    fault = fault_;
  }
  if (fault) {
    if (int e = fault(op, key)) return Err(e, std::string(op) + " " + key + " in " + Describe() + " (injected)");
  }
  return Status::Ok();
}

Status DirObjectStore::Put(const std::string& key, std::string_view body) {
  MUSCLE_RETURN_IF_ERROR(Check("put", key));
  std::string path = PathOf(key);
  MUSCLE_RETURN_IF_ERROR(MakeParents(path));
  std::string tmp = path + ".tmp-" + std::to_string(getpid()) + "-" + std::to_string(tmp_seq_++);
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Err(errno, "put " + key);
  size_t done = 0;
  while (done < body.size()) {
    ssize_t n = write(fd, body.data() + done, body.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      close(fd);
      unlink(tmp.c_str());
      return Err(e, "put " + key);
    }
    done += size_t(n);
  }
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    unlink(tmp.c_str());
    return Err(e, "put " + key);
  }
  return Status::Ok();
}

Result<std::string> DirObjectStore::Get(const std::string& key) {
  MUSCLE_RETURN_IF_ERROR(Check("get", key));
  int fd = open(PathOf(key).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Err(errno, "get " + key);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      close(fd);
      return Err(e, "get " + key);
    }
    if (n == 0) break;
    out.append(buf, size_t(n));
  }
  close(fd);
  return out;
}

Status DirObjectStore::GetRange(const std::string& key, uint64_t offset, size_t len, char* out) {
  MUSCLE_RETURN_IF_ERROR(Check("range", key));
  int fd = open(PathOf(key).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Err(errno, "get " + key);
  size_t done = 0;
  while (done < len) {
    ssize_t n = pread(fd, out + done, len - done, off_t(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(fd);
      return Status(EIO, "get " + key + ": " + std::to_string(len) + " bytes at " +
                             std::to_string(offset) + " reach past the object's end");
    }
    done += size_t(n);
  }
  close(fd);
  return Status::Ok();
}

Result<uint64_t> DirObjectStore::Head(const std::string& key) {
  MUSCLE_RETURN_IF_ERROR(Check("head", key));
  struct stat st;
  if (stat(PathOf(key).c_str(), &st) != 0) return Err(errno, "head " + key);
  return uint64_t(st.st_size);
}

Status DirObjectStore::Delete(const std::string& key) {
  MUSCLE_RETURN_IF_ERROR(Check("delete", key));
  if (unlink(PathOf(key).c_str()) != 0 && errno != ENOENT) return Err(errno, "delete " + key);
  return Status::Ok();
}

Result<std::vector<ObjectInfo>> DirObjectStore::List(const std::string& prefix) {
  MUSCLE_RETURN_IF_ERROR(Check("list", prefix));
  std::vector<ObjectInfo> all, out;
  Walk(dir_, "", all);
  for (auto& o : all)
    if (o.key.compare(0, prefix.size(), prefix) == 0) out.push_back(std::move(o));
  std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
  return out;
}

}  // namespace muscle::s3
