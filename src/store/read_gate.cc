#include "store/read_gate.h"

namespace muscle::store {

void ReadGate::MarkDirty(uint64_t ino) {
  MutexLock l(&mu_);
  dirty_.insert(ino);
}

void ReadGate::Published() {
  MutexLock l(&mu_);
  generation_++;
  dirty_.clear();
}

void ReadGate::PackRemoved() {
  MutexLock l(&mu_);
  packs_removed_++;
}

uint64_t ReadGate::packs_removed() const {
  MutexLock l(&mu_);
  return packs_removed_;
}

bool ReadGate::ClaimUnreferenced(uint64_t ino) {
  MutexLock l(&mu_);
  if (refs_.count(ino)) return false;
  dirty_.insert(ino);
  return true;
}

void ReadGate::Pending(uint64_t ino, int delta) {
  MutexLock l(&mu_);
  int& n = pending_[ino];
  n += delta;
  if (n <= 0) pending_.erase(ino);
}

void ReadGate::Ref(uint64_t ino) {
  MutexLock l(&mu_);
  refs_[ino]++;
}

bool ReadGate::Unref(uint64_t ino) {
  MutexLock l(&mu_);
  auto it = refs_.find(ino);
  if (it == refs_.end()) return false;
  if (--it->second > 0) return false;
  refs_.erase(it);
  return true;
}

bool ReadGate::Referenced(uint64_t ino) const {
  MutexLock l(&mu_);
  return refs_.count(ino) != 0;
}

uint64_t ReadGate::generation() const {
  MutexLock l(&mu_);
  return generation_;
}

bool ReadGate::IsDirty(uint64_t ino) const {
  MutexLock l(&mu_);
  return dirty_.count(ino) != 0 || pending_.count(ino) != 0;
}

bool ReadGate::AllClean() const {
  MutexLock l(&mu_);
  return dirty_.empty() && pending_.empty();
}

bool ReadGate::Validate(uint64_t gen, const std::vector<uint64_t>& inos, bool all,
                        RefChange change, uint64_t ref_ino) {
  MutexLock l(&mu_);
  // Work queued for the writer counts as dirty: a read must not overtake
  // a change sent before it that has not run yet (a rename names the file
  // and the new directory, not the old one a walk passes through, so only
  // what the read looked at can tell).
  bool ok = gen == generation_ && (!all || (dirty_.empty() && pending_.empty()));
  for (size_t i = 0; ok && i < inos.size(); i++)
    ok = !dirty_.count(inos[i]) && !pending_.count(inos[i]);
  if (ok && (change == RefChange::kUnref || change == RefChange::kUnrefLinked)) {
    auto it = refs_.find(ref_ino);
    ok = it != refs_.end() && (it->second > 1 || change == RefChange::kUnrefLinked);
    if (ok && --it->second == 0) refs_.erase(it);
  }
  if (ok && change == RefChange::kRef) refs_[ref_ino]++;
  (ok ? validated_ : refused_)++;
  return ok;
}

uint64_t ReadGate::validated() const {
  MutexLock l(&mu_);
  return validated_;
}

uint64_t ReadGate::refused() const {
  MutexLock l(&mu_);
  return refused_;
}

}  // namespace muscle::store
