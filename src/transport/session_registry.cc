#include "transport/session_registry.h"

namespace muscle::transport {

bool SessionRegistry::Add(const std::string& id, const std::string& identity, Connection* c,
                          Post post) {
  MutexLock l(&mu_);
  size_t& n = per_identity_[identity];
  if (n >= kMaxPerIdentity || sessions_.count(id)) return false;
  n++;
  sessions_[id] = Entry{identity, c, std::move(post)};
  return true;
}

void SessionRegistry::Remove(const std::string& id, Connection* c) {
  MutexLock l(&mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second.conn != c) return;
  auto pi = per_identity_.find(it->second.identity);
  if (pi != per_identity_.end() && --pi->second == 0) per_identity_.erase(pi);
  sessions_.erase(it);
}

bool SessionRegistry::Claim(const std::string& id, const std::string& identity, Post* post) {
  MutexLock l(&mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second.identity != identity) return false;
  it->second.claims++;
  *post = it->second.post;
  return true;
}

Connection* SessionRegistry::Owner(const std::string& id) {
  MutexLock l(&mu_);
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second.conn;
}

bool SessionRegistry::Claimed(const std::string& id) {
  MutexLock l(&mu_);
  auto it = sessions_.find(id);
  return it != sessions_.end() && it->second.claims > 0;
}

void SessionRegistry::Unclaim(const std::string& id) {
  MutexLock l(&mu_);
  auto it = sessions_.find(id);
  if (it != sessions_.end() && it->second.claims > 0) it->second.claims--;
}

size_t SessionRegistry::size() {
  MutexLock l(&mu_);
  return sessions_.size();
}

}  // namespace muscle::transport
