// What the server counts about itself, in one place: the registry from
// which both `muscle status` (the @ctl status command, server/control.cc)
// and the Prometheus text of the metrics listener (server/metrics_http.h)
// are produced. A counter is defined here once; the two renderers read
// the same Figures.
//
// What is counted:
// - per identity ("" is the local administrator: the unix socket or a
//   plain listener without a claim): requests by message class, errors
//   (Rlerror/Rerror) by class, bytes read (Rread counts) and written
//   (Rwrite counts), sessions started;
// - per message class (read, write, meta, change, other; ClassOf): a
//   latency histogram with fixed buckets, from a request's frame arriving
//   to its reply leaving the session;
// - the live connections: identity, peer, dialect, transport;
// - who answered the live tree's requests: the store-reader threads, the
//   writer, and reader results the read gate refused (answered again by
//   the writer);
// - the store (StoreFigures): published by the writer thread, which alone
//   may look at the store.
//
// Threading: every method is thread-safe. Counters are relaxed atomics,
// bumped on the event-loop threads (a ConnectionMeter on its connection's
// loop) and on the loops that complete store work; the list of
// connections, the identities' table and the store's figures are under
// one mutex, held only to copy or to insert, never across I/O. Reading
// (Collect) copies everything, so rendering runs on whichever thread asks
// (the writer for status, the main loop for a scrape) without holding the
// mutex and without waiting for the store.
//
// Lifetime: held by shared_ptr; the Server makes it, and every
// ConnectionMeter keeps it alive while its connection lives.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/mutex.h"
#include "common/thread_annotations.h"

namespace muscle::store {
class Store;
}

namespace muscle::server {

// Message classes, by a T-message's type byte.
enum RequestClass : int { kClassRead, kClassWrite, kClassMeta, kClassChange, kClassOther };
constexpr int kClasses = 5;
const char* ClassName(int c);  // "read", "write", "meta", "change", "other"
int ClassOf(uint8_t type);

// A latency histogram with fixed bucket bounds (seconds, as Prometheus
// wants them); the last bucket is +Inf. Observe is lock-free.
class LatencyHistogram {
 public:
  static constexpr std::array<double, 16> kBounds = {
      0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
      0.025,   0.05,   0.1,     0.25,   0.5,   1,     2.5,   10};
  void Observe(uint64_t ns);
  struct Snapshot {
    std::array<uint64_t, kBounds.size() + 1> buckets{};  // per bucket, not cumulative
    uint64_t count = 0;
    uint64_t sum_ns = 0;
    // The q-quantile (0..1) in seconds, interpolated linearly inside its
    // bucket as Prometheus's histogram_quantile does; past the last bound:
    // that bound. 0 when empty.
    double Quantile(double q) const;
  };
  Snapshot Read() const;

 private:
  std::array<std::atomic<uint64_t>, kBounds.size() + 1> buckets_{};
  std::atomic<uint64_t> sum_ns_{0};
};

struct IdentityCounters {
  std::array<std::atomic<uint64_t>, kClasses> requests{};
  std::array<std::atomic<uint64_t>, kClasses> errors{};
  std::atomic<uint64_t> read_bytes{0}, written_bytes{0}, sessions{0};
};

// Who answered the live tree's requests (server/store_filesystem.cc).
struct AnswerCounters {
  std::atomic<uint64_t> reader{0};   // answered by a store-reader thread
  std::atomic<uint64_t> writer{0};   // answered by the writer
  std::atomic<uint64_t> retried{0};  // a reader's result refused, then the writer's
};

// The store as the writer last saw it (Store::Usage and Store::Pending).
struct StoreFigures {
  bool sized = false;  // the size fields below were measured at least once
  uint64_t logical_bytes = 0;  // file data the live tree names (extents)
  uint64_t stored_bytes = 0;   // distinct chunks (data and tree objects)
  uint64_t chunks = 0;
  uint64_t packs = 0, pack_bytes = 0, pack_live_bytes = 0;
  uint64_t snapshots = 0;
  double sized_seconds_ago = 0;  // age of the size fields when collected
  bool pending_known = false;
  double uncommitted_seconds = 0;  // how long the oldest uncommitted change has waited
  uint64_t dirty_files = 0, buffered_bytes = 0;  // write buffers not yet in chunks
  bool low_space = false;
};

class Metrics;

// One connection's view into the registry, made when it is accepted.
// Request/Reply are called on the connection's loop thread only; they see
// every frame the session takes and every reply it sends.
class ConnectionMeter {
 public:
  ConnectionMeter(std::shared_ptr<Metrics> metrics, std::string peer, std::string transport);
  ~ConnectionMeter();
  ConnectionMeter(const ConnectionMeter&) = delete;
  ConnectionMeter& operator=(const ConnectionMeter&) = delete;

  // The session starts for `identity` ("" for the administrator) over
  // `transport` (e.g. "tls-kernel", known only after the handshake).
  void Started(const std::string& identity, const std::string& transport);
  // A request frame (size[4] type[1] tag[2] ...), before the session sees it.
  void Request(const uint8_t* frame, size_t len);
  // A reply frame; `dialect` is the session's name for it ("9P2000.L").
  void Reply(const uint8_t* frame, size_t len, const char* dialect);

 private:
  friend class Metrics;
  std::shared_ptr<Metrics> metrics_;
  std::shared_ptr<IdentityCounters> counters_;  // set by Started
  // Requests in flight: tag, class, start (loop thread only; a handful).
  struct Pending {
    uint16_t tag;
    uint8_t cls;
    std::chrono::steady_clock::time_point start;
  };
  std::vector<Pending> pending_;
  // Under Metrics::mu_: what status lists.
  std::string peer_, identity_, transport_, dialect_;
};

class Metrics : public std::enable_shared_from_this<Metrics> {
 public:
  Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // A meter for a connection just accepted (listed until it is destroyed).
  std::shared_ptr<ConnectionMeter> Connect(std::string peer, std::string transport);
  AnswerCounters& answers() { return answers_; }
  LatencyHistogram& latency(int cls) { return latency_[cls]; }
  std::shared_ptr<IdentityCounters> Identity(const std::string& name) EXCLUDES(mu_);

  // On the writer thread: publishes the store's pending state and, when
  // `force` or the last measure is older than kSizeInterval (or than 100
  // times what the last measure took, so that a large store spends at
  // most 1% of the writer's time on it), its sizes (which scan tables, so
  // not on every tick).
  static constexpr std::chrono::seconds kSizeInterval{10};
  void RefreshStore(store::Store& s, bool force) EXCLUDES(mu_);
  void PublishStore(const StoreFigures& f, bool sized) EXCLUDES(mu_);

  // Everything, copied.
  struct Connection {
    std::string identity, peer, dialect, transport;
  };
  struct IdentityFigures {
    std::array<uint64_t, kClasses> requests{}, errors{};
    uint64_t read_bytes = 0, written_bytes = 0, sessions = 0, connections = 0;
  };
  struct Figures {
    double uptime_seconds = 0;
    std::vector<Connection> connections;
    std::map<std::string, IdentityFigures> identities;
    std::array<LatencyHistogram::Snapshot, kClasses> latency;
    uint64_t reader_answers = 0, writer_answers = 0, reader_retries = 0;
    StoreFigures store;
  };
  Figures Collect() const EXCLUDES(mu_);

 private:
  friend class ConnectionMeter;
  const std::chrono::steady_clock::time_point start_;
  mutable Mutex mu_;
  std::set<ConnectionMeter*> connections_ GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<IdentityCounters>> identities_ GUARDED_BY(mu_);
  StoreFigures store_ GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point sized_at_ GUARDED_BY(mu_);
  std::chrono::steady_clock::duration size_cost_ GUARDED_BY(mu_){};  // the last measure's time
  std::array<LatencyHistogram, kClasses> latency_;
  AnswerCounters answers_;
};

// The two renderings of Figures.
// Prometheus text exposition format 0.0.4: HELP and TYPE for every
// family, names prefixed musclefs_, label values escaped (\\, \", \n).
std::string PrometheusText(const Metrics::Figures& f);
// Lines for the @ctl status answer: a key, then its fields (control.cc
// escapes and joins them with tabs).
std::vector<std::vector<std::string>> StatusLines(const Metrics::Figures& f);
// A Prometheus label value, escaped.
std::string PrometheusLabel(std::string_view v);

}  // namespace muscle::server
