// Advisory locks (fcntl) that say "this process owns that": the serving
// musclefs holds its base directory's pid file, and every open store holds
// its lock file, for as long as it runs. A lock dies with its process, so
// a pid file left by kill -9 names nobody.
//
// Ownership: a held lock is released when its object is destroyed (the
// descriptor is closed). Not thread-safe; take locks at start-up.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "common/result.h"

namespace muscle {

class FileLock {
 public:
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

  // The pid file: a POSIX write lock (so that others can ask who holds
  // it) on `path`, which then holds our pid, written and synced. EBUSY
  // naming the holder if another process has it; the write's error if it
  // cannot be written (a full disk): never an empty pid file.
  static Result<std::unique_ptr<FileLock>> PidFile(const std::string& path);
  // An exclusive lock on `path` (an open-file-description lock, so even a
  // second open in this process conflicts). EBUSY if held elsewhere.
  static Result<std::unique_ptr<FileLock>> Exclusive(const std::string& path);

  // The pid of the live process holding the pid file at `path`, or 0.
  static pid_t PidFileHolder(const std::string& path);

 private:
  FileLock(int fd, std::string path, bool remove) : fd_(fd), path_(std::move(path)), remove_(remove) {}
  int fd_;
  std::string path_;
  bool remove_;  // unlink on release (the pid file)
};

}  // namespace muscle
