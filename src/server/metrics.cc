#include "server/metrics.h"

#include <algorithm>
#include <cstdio>

#include "store/store.h"

namespace muscle::server {

namespace {
constexpr uint8_t kRlerror = 7, kRerror = 107, kRread = 117, kRwrite = 119, kTversion = 100;

uint32_t U32At(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
}  // namespace

const char* ClassName(int c) {
  static const char* const kNames[kClasses] = {"read", "write", "meta", "change", "other"};
  return c >= 0 && c < kClasses ? kNames[c] : "other";
}

int ClassOf(uint8_t type) {
  switch (type) {
    case 116:  // Tread
    case 40:   // Treaddir
      return kClassRead;
    case 118:  // Twrite
      return kClassWrite;
    case 110:  // Twalk
    case 24:   // Tgetattr
    case 124:  // Tstat
    case 8:    // Tstatfs
    case 22:   // Treadlink
    case 30:   // Txattrwalk
    case 12:   // Tlopen
    case 112:  // Topen
    case 104:  // Tattach
    case 54:   // Tgetlock
      return kClassMeta;
    case 14:   // Tlcreate
    case 114:  // Tcreate
    case 16:   // Tsymlink
    case 18:   // Tmknod
    case 72:   // Tmkdir
    case 122:  // Tremove
    case 76:   // Tunlinkat
    case 20:   // Trename
    case 74:   // Trenameat
    case 70:   // Tlink
    case 26:   // Tsetattr
    case 126:  // Twstat
    case 32:   // Txattrcreate
    case 152:  // Tonce (only changes may be inside)
      return kClassChange;
    default:  // Tversion, Tauth, Tflush, Tclunk, Tfsync, Tlock, Trebind
      return kClassOther;
  }
}

// --- histogram ---

void LatencyHistogram::Observe(uint64_t ns) {
  double s = double(ns) / 1e9;
  size_t i = size_t(std::lower_bound(kBounds.begin(), kBounds.end(), s) - kBounds.begin());
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(ns, std::memory_order_relaxed);
}

LatencyHistogram::Snapshot LatencyHistogram::Read() const {
  Snapshot s;
  for (size_t i = 0; i < buckets_.size(); i++) {
    s.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
    s.count += s.buckets[i];
  }
  s.sum_ns = sum_ns_.load(std::memory_order_relaxed);
  return s;
}

double LatencyHistogram::Snapshot::Quantile(double q) const {
  if (count == 0) return 0;
  double rank = q * double(count);
  uint64_t below = 0;
  for (size_t i = 0; i < buckets.size(); i++) {
    if (buckets[i] == 0 || double(below + buckets[i]) < rank) {
      below += buckets[i];
      continue;
    }
    if (i == kBounds.size()) return kBounds.back();
    double lo = i == 0 ? 0 : kBounds[i - 1], hi = kBounds[i];
    return lo + (hi - lo) * (rank - double(below)) / double(buckets[i]);
  }
  return kBounds.back();
}

// --- connections ---

ConnectionMeter::ConnectionMeter(std::shared_ptr<Metrics> metrics, std::string peer,
                                 std::string transport)
    : metrics_(std::move(metrics)), peer_(std::move(peer)), transport_(std::move(transport)) {
  MutexLock l(&metrics_->mu_);
  metrics_->connections_.insert(this);
}

ConnectionMeter::~ConnectionMeter() {
  MutexLock l(&metrics_->mu_);
  metrics_->connections_.erase(this);
}

void ConnectionMeter::Started(const std::string& identity, const std::string& transport) {
  auto counters = metrics_->Identity(identity);
  counters->sessions.fetch_add(1, std::memory_order_relaxed);
  MutexLock l(&metrics_->mu_);
  counters_ = std::move(counters);
  identity_ = identity;
  if (!transport.empty()) transport_ = transport;
}

void ConnectionMeter::Request(const uint8_t* frame, size_t len) {
  if (len < 7) return;
  uint16_t tag = uint16_t(frame[5] | frame[6] << 8);
  if (frame[4] == kTversion) pending_.clear();  // a reset: what was in flight gets no reply
  for (auto& p : pending_)
    if (p.tag == tag) {  // a tag reused while in flight: the session refuses it; keep the first
      return;
    }
  if (pending_.size() >= 4096) return;  // bounded whatever the peer sends
  pending_.push_back({tag, uint8_t(ClassOf(frame[4])), std::chrono::steady_clock::now()});
}

void ConnectionMeter::Reply(const uint8_t* frame, size_t len, const char* dialect) {
  if (len < 7) return;
  uint8_t type = frame[4];
  uint16_t tag = uint16_t(frame[5] | frame[6] << 8);
  if (type == kTversion + 1) {
    MutexLock l(&metrics_->mu_);
    dialect_ = dialect;
  }
  auto it = std::find_if(pending_.begin(), pending_.end(), [&](const Pending& p) { return p.tag == tag; });
  if (it == pending_.end()) return;
  Pending p = *it;
  *it = pending_.back();
  pending_.pop_back();
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - p.start);
  metrics_->latency_[p.cls].Observe(uint64_t(std::max<int64_t>(0, ns.count())));
  IdentityCounters* c = counters_.get();
  if (!c) return;
  c->requests[p.cls].fetch_add(1, std::memory_order_relaxed);
  if (type == kRlerror || type == kRerror) c->errors[p.cls].fetch_add(1, std::memory_order_relaxed);
  if (type == kRread && len >= 11) c->read_bytes.fetch_add(U32At(frame + 7), std::memory_order_relaxed);
  if (type == kRwrite && len >= 11) c->written_bytes.fetch_add(U32At(frame + 7), std::memory_order_relaxed);
}

// --- the registry ---

Metrics::Metrics() : start_(std::chrono::steady_clock::now()) {}

std::shared_ptr<ConnectionMeter> Metrics::Connect(std::string peer, std::string transport) {
  return std::make_shared<ConnectionMeter>(shared_from_this(), std::move(peer), std::move(transport));
}

std::shared_ptr<IdentityCounters> Metrics::Identity(const std::string& name) {
  MutexLock l(&mu_);
  auto& c = identities_[name];
  if (!c) c = std::make_shared<IdentityCounters>();
  return c;
}

void Metrics::PublishStore(const StoreFigures& f, bool sized) {
  MutexLock l(&mu_);
  if (sized) {
    store_ = f;
    store_.sized = true;
    sized_at_ = std::chrono::steady_clock::now();
  }
  store_.pending_known = true;
  store_.uncommitted_seconds = f.uncommitted_seconds;
  store_.dirty_files = f.dirty_files;
  store_.buffered_bytes = f.buffered_bytes;
  store_.low_space = f.low_space;
}

void Metrics::RefreshStore(store::Store& s, bool force) {
  bool due = force;
  if (!due) {
    MutexLock l(&mu_);
    auto every = std::max<std::chrono::steady_clock::duration>(kSizeInterval, 100 * size_cost_);
    due = !store_.sized || std::chrono::steady_clock::now() - sized_at_ >= every;
  }
  StoreFigures f;
  auto p = s.Pending();
  f.uncommitted_seconds = p.uncommitted_seconds;
  f.dirty_files = p.dirty_files;
  f.buffered_bytes = p.buffered_bytes;
  f.low_space = p.low_space;
  if (due) {
    auto started = std::chrono::steady_clock::now();
    auto u = s.Usage();
    {
      MutexLock l(&mu_);
      size_cost_ = std::chrono::steady_clock::now() - started;
    }
    if (u.ok()) {
      f.logical_bytes = u->logical_bytes;
      f.stored_bytes = u->stored_bytes;
      f.chunks = u->chunks;
      f.packs = u->packs;
      f.pack_bytes = u->pack_bytes;
      f.pack_live_bytes = u->pack_live_bytes;
      f.snapshots = u->snapshots;
    } else {
      due = false;  // keep the last good measure
    }
  }
  PublishStore(f, due);
}

Metrics::Figures Metrics::Collect() const {
  Figures f;
  auto now = std::chrono::steady_clock::now();
  f.uptime_seconds = std::chrono::duration<double>(now - start_).count();
  std::map<std::string, std::shared_ptr<IdentityCounters>> ids;
  {
    MutexLock l(&mu_);
    for (const ConnectionMeter* c : connections_) {
      if (!c->counters_) continue;  // no session yet (a handshake, a claim)
      f.connections.push_back({c->identity_, c->peer_, c->dialect_.empty() ? "-" : c->dialect_,
                               c->transport_});
    }
    ids = identities_;
    f.store = store_;
    if (store_.sized) f.store.sized_seconds_ago = std::chrono::duration<double>(now - sized_at_).count();
  }
  std::sort(f.connections.begin(), f.connections.end(), [](const Connection& a, const Connection& b) {
    return std::tie(a.identity, a.peer) < std::tie(b.identity, b.peer);
  });
  for (auto& [name, c] : ids) {
    IdentityFigures& i = f.identities[name];
    for (int k = 0; k < kClasses; k++) {
      i.requests[k] = c->requests[k].load(std::memory_order_relaxed);
      i.errors[k] = c->errors[k].load(std::memory_order_relaxed);
    }
    i.read_bytes = c->read_bytes.load(std::memory_order_relaxed);
    i.written_bytes = c->written_bytes.load(std::memory_order_relaxed);
    i.sessions = c->sessions.load(std::memory_order_relaxed);
  }
  for (const auto& c : f.connections) f.identities[c.identity].connections++;
  for (int k = 0; k < kClasses; k++) f.latency[k] = latency_[k].Read();
  f.reader_answers = answers_.reader.load(std::memory_order_relaxed);
  f.writer_answers = answers_.writer.load(std::memory_order_relaxed);
  f.reader_retries = answers_.retried.load(std::memory_order_relaxed);
  return f;
}

}  // namespace muscle::server
