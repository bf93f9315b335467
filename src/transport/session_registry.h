// The server's resumable sessions (resumable.h), by id, so that a relay
// redialling after a network drop finds its session again, whatever
// event loop its new connection landed on.
//
// A session is registered by its Connection for as long as it lives
// (attached or detached). A new connection that names a session takes it
// (Claim): from then on the old connection's lease does not end it, and
// the new socket is handed to the old connection's loop (`post`), where
// the old connection adopts it (Connection::Adopt) after checking, on
// its own loop, that it is still the owner (Owner).
//
// Bounds: at most kMaxPerIdentity sessions per identity; a new session
// beyond that is refused (the relay falls back to telling the user).
//
// Threading: every member may be called from any loop thread.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "common/mutex.h"
#include "common/thread_annotations.h"

namespace muscle::transport {

class Connection;

class SessionRegistry {
 public:
  static constexpr size_t kMaxPerIdentity = 64;
  using Post = std::function<void(std::function<void()>)>;

  // False when the identity already has kMaxPerIdentity sessions.
  bool Add(const std::string& id, const std::string& identity, Connection* c, Post post)
      EXCLUDES(mu_);
  void Remove(const std::string& id, Connection* c) EXCLUDES(mu_);
  // For a redial: the session's loop, when `id` is a session of
  // `identity` (an identity never takes another's session); marks it
  // claimed. False otherwise.
  bool Claim(const std::string& id, const std::string& identity, Post* post) EXCLUDES(mu_);
  // On the session's loop: its connection, or null when it ended.
  Connection* Owner(const std::string& id) EXCLUDES(mu_);
  // Whether a claim is on its way to the session (its lease must wait).
  bool Claimed(const std::string& id) EXCLUDES(mu_);
  void Unclaim(const std::string& id) EXCLUDES(mu_);
  size_t size() EXCLUDES(mu_);

 private:
  struct Entry {
    std::string identity;
    Connection* conn;
    Post post;
    int claims = 0;
  };
  Mutex mu_;
  std::map<std::string, Entry> sessions_ GUARDED_BY(mu_);
  std::map<std::string, size_t> per_identity_ GUARDED_BY(mu_);
};

}  // namespace muscle::transport
