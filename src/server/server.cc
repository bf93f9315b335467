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
  fs_ = std::make_unique<StoreFileSystem>(*worker_);
  for (const std::string& text : options.listen) {
    auto ep = transport::ParseEndpoint(text);
    if (!ep.ok()) return ep.status();
    auto l = transport::Listener::Open(
        loop_, *ep, options.allow_plaintext_network,
        [this](uv_stream_t* s, std::string peer) { Accept(s, std::move(peer)); });
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

void Server::Accept(uv_stream_t* stream, std::string peer) {
  p9::SessionOptions so;
  so.max_msize = options_.max_msize;
  auto* c = new transport::Connection(stream, peer, *fs_, locks_, so);
  connections_.insert(c);
  c->on_closed = [this](transport::Connection* c) {
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
  MaybeFinishShutdown();
}

void Server::MaybeFinishShutdown() {
  if (!shutting_down_ || worker_stopping_ || !connections_.empty()) return;
  worker_stopping_ = true;
  if (!worker_) {
    if (done_) done_();
    return;
  }
  worker_->Stop([this] {
    if (done_) done_();
  });
}

}  // namespace muscle::server
