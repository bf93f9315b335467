#include "server/write_ahead.h"

#include <algorithm>

namespace muscle::server {

bool WriteAhead::Admit(uint64_t ino, size_t bytes) {
  MutexLock l(&mu_);
  if (low_space_ || waiting_ + bytes > limit_ || !allowed_.count(ino)) return false;
  waiting_ += bytes;
  peak_ = std::max(peak_, waiting_);
  return true;
}

void WriteAhead::Allow(uint64_t ino) {
  MutexLock l(&mu_);
  low_space_ = false;
  if (failed_.count(ino)) return;  // not before its failure is reported
  if (allowed_.size() >= kMaxAllowed) allowed_.clear();
  allowed_.insert(ino);
}

bool WriteAhead::Taken(uint64_t ino, size_t bytes, const Status& st, bool low_space) {
  MutexLock l(&mu_);
  waiting_ -= bytes;
  if (low_space) low_space_ = true;
  if (st.ok()) return false;
  allowed_.erase(ino);
  return failed_.emplace(ino, st).second;  // the first failure is the one reported
}

Status WriteAhead::TakeFailure(uint64_t ino) {
  MutexLock l(&mu_);
  auto it = failed_.find(ino);
  if (it == failed_.end()) return Status::Ok();
  Status st = std::move(it->second);
  failed_.erase(it);
  return st;
}

void WriteAhead::Settle(uint64_t rollbacks) {
  MutexLock l(&mu_);
  if (rollbacks == rollbacks_) return;
  rollbacks_ = rollbacks;
  allowed_.clear();
}

size_t WriteAhead::peak() const {
  MutexLock l(&mu_);
  return peak_;
}

}  // namespace muscle::server
