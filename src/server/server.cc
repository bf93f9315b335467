#include "server/server.h"
#include "server/control.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <thread>

#include "common/log.h"
#include "transport/claim.h"

namespace muscle::server {

Server::~Server() {
  if (metrics_http_) metrics_http_->Close();
  for (auto* l : listeners_) l->Close();
  for (auto& sh : shards_) sh->thread.Stop();
}

Status Server::Start(const ServerOptions& options) {
  options_ = options;
  // A client that disconnects while a reply is being written must not kill
  // the server: writes then fail with EPIPE instead.
  signal(SIGPIPE, SIG_IGN);
  auto chunks = OpenChunkBackend(options.chunks, options.store_path);
  if (!chunks.ok()) return chunks.status();
  auto store = store::Store::Open(options.store_path, std::move(*chunks), options.store_key);
  if (!store.ok()) return store.status();
  (*store)->commit_interval = options.commit_interval;
  (*store)->snapshot_every = options.snapshot_every;
  // Files a client had open, unlinked, when the server stopped stay for
  // as long as its session could come back and rebind them.
  (*store)->orphan_hold = options.session_lease;
  // The readers' chunk stores come from the writer's (before it moves to
  // its thread): they share its cache and, for a bucket, its uploads.
  std::vector<std::unique_ptr<store::ChunkStore>> chunk_readers;
  if (options.store_path != ":memory:") {
    for (int i = 0; i < options.store_readers; i++) {
      auto r = (*store)->NewChunkReader();
      if (!r.ok()) return r.status();
      chunk_readers.push_back(std::move(*r));
    }
  }
  // The writer publishes the store's figures for status and the metrics
  // (the first ones now, before the store moves to its thread).
  metrics_->RefreshStore(**store, true);
  worker_ = std::make_unique<StoreWorker>(
      loop_, std::move(*store),
      [metrics = metrics_](store::Store& s) { metrics->RefreshStore(s, false); });
  if (options.store_readers > 0 && worker_->gate()) {
    auto readers = ReaderPool::Open(loop_, options.store_path, worker_->gate(),
                                    options.store_readers, std::move(chunk_readers));
    if (!readers.ok()) return readers.status();
    readers_ = std::move(*readers);
  }
  fs_ = std::make_unique<StoreFileSystem>(
      *worker_, readers_.get(), std::shared_ptr<AnswerCounters>(metrics_, &metrics_->answers()));
  views_ = std::make_unique<ViewFileSystem>(
      *worker_, [metrics = metrics_](store::Store& s, const AccessRule& rule, std::string_view command) {
        return RunControl(s, rule, command, metrics.get());
      });
  router_ = std::make_unique<AttachRouter>(*fs_, *views_);
  if (options.store_path != ":memory:" && locks_.SetMarker(options.store_path + ".locks")) {
    size_t n = locks_.ToReclaim();
    locks_.BeginGrace(options.lock_grace);  // 0: none, the marker goes
    if (options.lock_grace.count() > 0)
      Log("locks were held when the server stopped (%s): for %lld s, or until all are "
          "reclaimed, only relays reclaiming their locks take one (lock-grace)",
          n ? (std::to_string(n) + " to reclaim").c_str() : "not listed",
          static_cast<long long>(options.lock_grace.count()));
  }
  std::vector<transport::Endpoint> eps;
  for (const std::string& text : options.listen) {
    auto ep = transport::ParseEndpoint(text);
    if (!ep.ok()) return ep.status();
    eps.push_back(*ep);
    if (ep->tls && !tls_) {
      if (options.keys_path.empty())
        return Status(EINVAL, "a tls:// listener needs a keys file (--keys FILE)");
      auto keys = auth::KeyTable::Load(options.keys_path);
      if (!keys.ok()) return keys.status();
      if ((*keys)->size() == 0)
        return Status(EINVAL, "keys file " + options.keys_path +
                                  " has no identities; add one with: muscle keys add NAME");
      keys_ = *keys;
      auto ctx = tls::TlsContext::ForServer(
          [this](const std::string& id) { return keys_->Find(id); },
          options.ticket_lifetime_seconds);  // the main loop's
      if (!ctx.ok()) return ctx.status();
      tls_ = std::move(*ctx);
    }
  }
  for (const auto& ep : eps) {
    bool tls = ep.tls;
    auto l = transport::Listener::Open(
        loop_, ep, options.allow_plaintext_network,
        [this, tls](uv_stream_t* s, std::string peer) { Accept(s, std::move(peer), tls); });
    if (!l.ok()) return l.status();
    listeners_.push_back(*l);
  }
  if (!options.metrics.empty()) {
    auto m = MetricsHttp::Open(loop_, options.metrics, metrics_);
    if (!m.ok()) return m.status();
    metrics_http_ = *m;
  }
  // More event loops for TLS connections, each with its own TLS context
  // (tickets shared, so a session resumes on any loop).
  int loops = options.loops > 0 ? options.loops
                                : int(std::max(1u, std::thread::hardware_concurrency()));
  if (tls_) mailbox_ = new Mailbox(loop_);
  if (tls_ && loops > 1) {
    for (int i = 1; i < loops; i++) {
      auto sh = std::make_unique<Shard>();
      Shard* raw = sh.get();
      raw->keys = keys_;
      auto ctx = tls::TlsContext::ForServer(
          [raw](const std::string& id) { return raw->keys ? raw->keys->Find(id) : nullptr; },
          tls_->shared_tickets());
      if (!ctx.ok()) return ctx.status();
      raw->tls = std::move(*ctx);
      raw->thread.Start();
      shards_.push_back(std::move(sh));
    }
  }
  return Status::Ok();
}

std::vector<transport::Endpoint> Server::bound() const {
  std::vector<transport::Endpoint> out;
  for (auto* l : listeners_) out.push_back(l->bound());
  return out;
}

namespace {
std::string AddressOf(const std::string& peer) {
  size_t colon = peer.rfind(':');
  return colon == std::string::npos ? peer : peer.substr(0, colon);
}
uint64_t NowSeconds() { return uint64_t(time(nullptr)); }

// Whether the peer of an accepted unix stream runs as this server's user
// or root, the only ones who may claim an identity (transport/claim.h).
bool PeerMayClaim(uv_stream_t* stream) {
  if (stream->type != UV_NAMED_PIPE) return false;
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(stream), &fd) != 0) return false;
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  return cred.uid == geteuid() || cred.uid == 0;
}
}  // namespace

bool Server::RateLimited(const std::string& address) {
  auto it = failures_.find(address);
  if (it == failures_.end()) return false;
  uint64_t now = NowSeconds();
  std::erase_if(it->second, [&](uint64_t t) { return t + 60 <= now; });
  if (it->second.empty()) {
    failures_.erase(it);
    return false;
  }
  return int(it->second.size()) >= options_.max_failed_handshakes;
}

void Server::RecordFailure(const std::string& address) {
  if (failures_.size() > 100000) failures_.clear();  // bound memory under a spoofing flood
  failures_[address].push_back(NowSeconds());
}

// Called on the loop of the connection, with that loop's keys.
Result<p9::SessionOptions> Server::Authorize(const std::shared_ptr<const auth::KeyTable>& keys,
                                             const std::string& identity) const {
  if (!keys || !keys->Find(identity)) return Status(EPERM, "unknown identity");
  p9::SessionOptions so;
  so.max_msize = options_.max_msize;
  so.identity = identity;
  auto it = options_.access.find(identity);
  if (it != options_.access.end()) so.rule = it->second;
  else so.rule.owner = auth::OwnerRule::Remote();
  return so;
}

Result<p9::SessionOptions> Server::AuthorizeClaim(const std::string& line,
                                                  std::string* identity) {
  auto claim = transport::ParseClaim(line);
  if (!claim.ok()) return claim.status();
  p9::SessionOptions so;
  so.max_msize = options_.max_msize;
  AccessRule rule;
  if (!claim->identity.empty()) {
    auto it = options_.access.find(claim->identity);
    bool keyed = keys_ && keys_->Find(claim->identity);
    if (it == options_.access.end() && !keyed)
      return Status(EPERM, "unknown identity '" + claim->identity +
                               "' (no access rule in musclefs.conf and no key names it)");
    rule = it != options_.access.end() ? it->second : AccessRule{.owner = auth::OwnerRule::Remote()};
  }
  so.identity = claim->identity;
  // Whose files it makes: its identity's rule (the administrator's, which
  // restricts nothing, when it claims no identity).
  so.rule.owner = rule.owner;
  // The claim narrows the rule: a root below it, read-only on top.
  so.rule.root = rule.root;
  if (!claim->root.empty()) {
    std::string below = rule.root;
    while (!below.empty() && below.back() == '/') below.pop_back();
    so.rule.root = below + claim->root;
  }
  so.rule.read_only = rule.read_only || claim->read_only;
  // No identity claimed: the server host's own user (the socket is its).
  // (A claimed root confines it: then only a rule's "snapshot" gives it.)
  so.rule.snapshot =
      claim->identity.empty() ? !so.rule.read_only && claim->root.empty() : rule.snapshot;
  *identity = claim->identity;
  return so;
}

Status Server::ReloadKeys() {
  if (options_.keys_path.empty() || !tls_) return Status::Ok();
  auto keys = auth::KeyTable::Load(options_.keys_path);
  if (!keys.ok()) {
    Log("keys reload failed, keeping the %zu identities loaded before: %s", keys_->size(),
        keys.status().message().c_str());
    return keys.status();
  }
  auto old = keys_;
  keys_ = *keys;
  Log("keys reloaded from %s: %zu identities", options_.keys_path.c_str(), keys_->size());
  DropChangedIdentities(connections_, *old, *keys_);
  for (auto& sh : shards_) {
    Shard* raw = sh.get();
    std::shared_ptr<const auth::KeyTable> now = keys_;
    raw->thread.Post([raw, old, now] {
      raw->keys = now;
      DropChangedIdentities(raw->connections, *old, *now);
    });
  }
  return Status::Ok();
}

void Server::DropChangedIdentities(std::set<transport::Connection*>& connections,
                                   const auth::KeyTable& before_keys,
                                   const auth::KeyTable& now_keys) {
  std::vector<transport::Connection*> drop;
  for (auto* c : connections) {
    if (!c->is_tls() || c->identity().empty()) continue;
    const auth::Secret* now = now_keys.Find(c->identity());
    const auth::Secret* before = before_keys.Find(c->identity());
    if (!now || !before || now->bytes() != before->bytes()) drop.push_back(c);
  }
  for (auto* c : drop) c->Close("identity removed or its key changed");
}

void Server::EndHandshake(const std::string& address, const std::shared_ptr<bool>& counted) {
  if (!*counted) return;
  *counted = false;
  auto it = handshaking_.find(address);
  if (it != handshaking_.end() && --it->second <= 0) handshaking_.erase(it);
}

void Server::Accept(uv_stream_t* stream, std::string peer, bool tls) {
  transport::ConnectionOptions co;
  // Whether this connection still counts as a handshake under way.
  auto handshake = std::make_shared<bool>(tls);
  co.session.max_msize = options_.max_msize;
  // Plain listeners (the unix socket, loopback TCP when forced) carry the
  // local administrator; TLS sessions get their identity's rule.
  co.session.rule.snapshot = !tls;
  std::string address = AddressOf(peer);
  if (tls) {
    if (RateLimited(address)) {
      Log("%s: refused: too many failed TLS handshakes from %s in the last minute",
          peer.c_str(), address.c_str());
      uv_close(reinterpret_cast<uv_handle_t*>(stream), [](uv_handle_t* h) {
        delete reinterpret_cast<uv_tcp_t*>(h);
      });
      return;
    }
    int& busy = handshaking_[address];
    if (busy >= options_.max_concurrent_handshakes) {
      Log("%s: refused: %d TLS handshakes already under way from %s", peer.c_str(), busy,
          address.c_str());
      if (busy == 0) handshaking_.erase(address);
      uv_close(reinterpret_cast<uv_handle_t*>(stream), [](uv_handle_t* h) {
        delete reinterpret_cast<uv_tcp_t*>(h);
      });
      return;
    }
    busy++;
    size_t k = next_loop_++ % (shards_.size() + 1);
    if (k > 0) {
      HandOff(shards_[k - 1].get(), stream, peer, address, handshake);
      return;
    }
    co.tls = tls_.get();
    co.handshake_timeout = options_.handshake_timeout;
    co.sessions = &sessions_;
    co.session_lease = options_.session_lease;
    co.session_silence = options_.session_silence;
    co.post = [m = mailbox_](std::function<void()> f) { m->Post(std::move(f)); };
    co.authorize = [this](const std::string& id) { return Authorize(keys_, id); };
    co.on_handshake = [this, peer, address, handshake](bool ok, bool failed,
                                                        const std::string& detail) {
      Log("%s: TLS handshake %s: %s", peer.c_str(), ok ? "ok" : failed ? "FAILED" : "not completed",
          detail.c_str());
      EndHandshake(address, handshake);
      if (failed) RecordFailure(address);
    };
  }
  if (!tls && PeerMayClaim(stream))
    co.claim = [this](const std::string& line, std::string* identity) {
      return AuthorizeClaim(line, identity);
    };
  co.meter = metrics_->Connect(peer, stream->type == UV_NAMED_PIPE ? "unix" : tls ? "tls" : "tcp");
  auto* c = new transport::Connection(stream, peer, *router_, locks_, std::move(co));
  connections_.insert(c);
  c->on_closed = [this, address, handshake](transport::Connection* c) {
    EndHandshake(address, handshake);  // closed before its handshake ended
    connections_.erase(c);
    MaybeFinishShutdown();
  };
  Log("%s: connected", peer.c_str());
  c->Start();
  if (shutting_down_) c->Drain();
}

// Moves an accepted TLS socket to another loop, where its connection lives.
void Server::HandOff(Shard* shard, uv_stream_t* stream, std::string peer, std::string address,
                     std::shared_ptr<bool> handshake) {
  uv_os_fd_t fd = -1;
  int moved = uv_fileno(reinterpret_cast<uv_handle_t*>(stream), &fd) == 0
                  ? fcntl(fd, F_DUPFD_CLOEXEC, 0)
                  : -1;
  uv_close(reinterpret_cast<uv_handle_t*>(stream),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
  if (moved < 0) {
    Log("%s: cannot move the connection to another loop: %s", peer.c_str(), strerror(errno));
    EndHandshake(address, handshake);
    return;
  }
  remote_connections_++;
  shard->thread.Post([this, shard, moved, peer, address, handshake] {
    auto* tcp = new uv_tcp_t;
    uv_tcp_init(shard->thread.loop(), tcp);
    if (uv_tcp_open(tcp, moved) != 0) {
      close(moved);
      uv_close(reinterpret_cast<uv_handle_t*>(tcp),
               [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
      mailbox_->Post([this, address, handshake] {
        EndHandshake(address, handshake);
        remote_connections_--;
        MaybeFinishShutdown();
      });
      return;
    }
    transport::ConnectionOptions co;
    co.session.max_msize = options_.max_msize;
    co.tls = shard->tls.get();
    co.handshake_timeout = options_.handshake_timeout;
    co.sessions = &sessions_;
    co.session_lease = options_.session_lease;
    co.session_silence = options_.session_silence;
    co.post = [shard](std::function<void()> f) { shard->thread.Post(std::move(f)); };
    co.authorize = [this, shard](const std::string& id) { return Authorize(shard->keys, id); };
    co.on_handshake = [this, peer, address, handshake](bool ok, bool failed,
                                                        const std::string& detail) {
      Log("%s: TLS handshake %s: %s", peer.c_str(), ok ? "ok" : failed ? "FAILED" : "not completed",
          detail.c_str());
      mailbox_->Post([this, address, handshake, failed] {
        EndHandshake(address, handshake);
        if (failed) RecordFailure(address);
      });
    };
    co.meter = metrics_->Connect(peer, "tls");
    auto* c = new transport::Connection(reinterpret_cast<uv_stream_t*>(tcp), peer, *router_, locks_,
                                        std::move(co));
    shard->connections.insert(c);
    c->on_closed = [this, shard, address, handshake](transport::Connection* c) {
      shard->connections.erase(c);
      mailbox_->Post([this, address, handshake] {
        EndHandshake(address, handshake);  // closed before its handshake ended
        remote_connections_--;
        MaybeFinishShutdown();
      });
    };
    if (TraceEnabled()) Log("%s: connected", peer.c_str());
    c->Start();
    if (shard->draining) c->Drain();
  });
}

void Server::Shutdown(std::function<void()> done) {
  if (shutting_down_) return;
  shutting_down_ = true;
  done_ = std::move(done);
  // The sessions' locks end with them; relays reclaim them after a restart.
  locks_.KeepMarker();
  // So do their open files, but one already unlinked must still be there
  // for the relay to bind again (before any session's clunks: FIFO).
  if (worker_)
    worker_->Run([](store::Store& s) {
      s.KeepOrphans();
      return StoreWorker::Completion();
    }, nullptr);
  for (auto* l : listeners_) l->Close();
  listeners_.clear();
  if (metrics_http_) metrics_http_->Close();
  metrics_http_ = nullptr;
  std::vector<transport::Connection*> all(connections_.begin(), connections_.end());
  for (auto* c : all) c->Drain();
  for (auto& sh : shards_) {
    Shard* raw = sh.get();
    raw->thread.Post([raw] {
      raw->draining = true;
      std::vector<transport::Connection*> all(raw->connections.begin(), raw->connections.end());
      for (auto* c : all) c->Drain();
    });
  }
  if (connections() > 0) {
    // A client that never reads its replies must not hold shutdown forever.
    grace_timer_ = new uv_timer_t;
    uv_timer_init(loop_, grace_timer_);
    grace_timer_->data = this;
    // From now, not from the start of this loop iteration (Drain above
    // may have taken a while): the grace period is never shorter than set.
    uv_update_time(loop_);
    uv_timer_start(
        grace_timer_,
        [](uv_timer_t* t) {
          auto* self = static_cast<Server*>(t->data);
          Log("shutdown: closing %zu connections that did not finish within %lld ms",
              self->connections(), (long long)self->options_.shutdown_grace.count());
          std::vector<transport::Connection*> left(self->connections_.begin(),
                                                   self->connections_.end());
          for (auto* c : left) c->Close("shutdown grace period over");
          for (auto& sh : self->shards_) {
            Shard* raw = sh.get();
            raw->thread.Post([raw] {
              std::vector<transport::Connection*> left(raw->connections.begin(),
                                                       raw->connections.end());
              for (auto* c : left) c->Close("shutdown grace period over");
            });
          }
        },
        uint64_t(options_.shutdown_grace.count()), 0);
  }
  MaybeFinishShutdown();
}

void Server::MaybeFinishShutdown() {
  if (!shutting_down_ || worker_stopping_ || connections() > 0) return;
  worker_stopping_ = true;
  if (grace_timer_) {
    uv_close(reinterpret_cast<uv_handle_t*>(grace_timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    grace_timer_ = nullptr;
  }
  // The store worker first (its last completions go to their loops), then
  // the extra loops, then the main loop's mailbox.
  auto finish = [this] {
    for (auto& sh : shards_) sh->thread.Stop();
    if (mailbox_) {
      mailbox_->Close([this] {
        if (done_) done_();
      });
      mailbox_ = nullptr;
      return;
    }
    if (done_) done_();
  };
  if (!worker_) {
    finish();
    return;
  }
  // Readers first: a read they cannot confirm is handed to the writer.
  auto stop_writer = [this, finish] { worker_->Stop(finish); };
  if (readers_) readers_->Stop(stop_writer);
  else stop_writer();
}

}  // namespace muscle::server
