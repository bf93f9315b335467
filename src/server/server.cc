#include "server/server.h"

#include <csignal>

#include "common/log.h"

namespace muscle::server {

Server::~Server() {
  for (auto* l : listeners_) l->Close();
}

Status Server::Start(const ServerOptions& options) {
  options_ = options;
  // A client that disconnects while a reply is being written must not kill
  // the server: writes then fail with EPIPE instead.
  signal(SIGPIPE, SIG_IGN);
  auto store = store::Store::Open(options.store_path);
  if (!store.ok()) return store.status();
  (*store)->commit_interval = options.commit_interval;
  worker_ = std::make_unique<StoreWorker>(loop_, std::move(*store));
  if (options.store_readers > 0 && worker_->gate()) {
    auto readers = ReaderPool::Open(loop_, options.store_path, worker_->gate(), options.store_readers);
    if (!readers.ok()) return readers.status();
    readers_ = std::move(*readers);
  }
  fs_ = std::make_unique<StoreFileSystem>(*worker_, readers_.get());
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
          options.ticket_lifetime_seconds);
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

Result<p9::SessionOptions> Server::Authorize(const std::string& identity) {
  if (!keys_ || !keys_->Find(identity)) return Status(EPERM, "unknown identity");
  p9::SessionOptions so;
  so.max_msize = options_.max_msize;
  so.identity = identity;
  auto it = options_.access.find(identity);
  if (it != options_.access.end()) {
    so.attach_root = it->second.root;
    so.read_only = it->second.read_only;
  }
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
  std::vector<transport::Connection*> drop;
  for (auto* c : connections_) {
    if (!c->is_tls() || c->identity().empty()) continue;
    const auth::Secret* now = keys_->Find(c->identity());
    const auth::Secret* before = old->Find(c->identity());
    if (!now || !before || now->bytes() != before->bytes()) drop.push_back(c);
  }
  for (auto* c : drop) c->Close("identity removed or its key changed");
  return Status::Ok();
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
    co.tls = tls_.get();
    co.handshake_timeout = options_.handshake_timeout;
    co.authorize = [this](const std::string& id) { return Authorize(id); };
    co.on_handshake = [this, peer, address, handshake](bool ok, bool failed,
                                                        const std::string& detail) {
      Log("%s: TLS handshake %s: %s", peer.c_str(), ok ? "ok" : failed ? "FAILED" : "not completed",
          detail.c_str());
      EndHandshake(address, handshake);
      if (failed) RecordFailure(address);
    };
  }
  auto* c = new transport::Connection(stream, peer, *fs_, locks_, std::move(co));
  connections_.insert(c);
  c->on_closed = [this, address, handshake](transport::Connection* c) {
    EndHandshake(address, handshake);  // closed before its handshake ended
    connections_.erase(c);
    MaybeFinishShutdown();
  };
  if (TraceEnabled()) Log("%s: connected", peer.c_str());
  c->Start();
  if (shutting_down_) c->Drain();
}

void Server::Shutdown(std::function<void()> done) {
  if (shutting_down_) return;
  shutting_down_ = true;
  done_ = std::move(done);
  for (auto* l : listeners_) l->Close();
  listeners_.clear();
  std::vector<transport::Connection*> all(connections_.begin(), connections_.end());
  for (auto* c : all) c->Drain();
  if (!connections_.empty()) {
    // A client that never reads its replies must not hold shutdown forever.
    grace_timer_ = new uv_timer_t;
    uv_timer_init(loop_, grace_timer_);
    grace_timer_->data = this;
    uv_timer_start(
        grace_timer_,
        [](uv_timer_t* t) {
          auto* self = static_cast<Server*>(t->data);
          Log("shutdown: closing %zu connections that did not finish within %lld ms",
              self->connections_.size(), (long long)self->options_.shutdown_grace.count());
          std::vector<transport::Connection*> left(self->connections_.begin(),
                                                   self->connections_.end());
          for (auto* c : left) c->Close("shutdown grace period over");
        },
        uint64_t(options_.shutdown_grace.count()), 0);
  }
  MaybeFinishShutdown();
}

void Server::MaybeFinishShutdown() {
  if (!shutting_down_ || worker_stopping_ || !connections_.empty()) return;
  worker_stopping_ = true;
  if (grace_timer_) {
    uv_close(reinterpret_cast<uv_handle_t*>(grace_timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    grace_timer_ = nullptr;
  }
  if (!worker_) {
    if (done_) done_();
    return;
  }
  // Readers first: a read they cannot confirm is handed to the writer.
  auto stop_writer = [this] {
    worker_->Stop([this] {
      if (done_) done_();
    });
  };
  if (readers_) readers_->Stop(stop_writer);
  else stop_writer();
}

}  // namespace muscle::server
