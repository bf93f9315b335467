// The two renderings of the registry's Figures (server/metrics.h): the
// Prometheus text exposition format and the lines of `muscle status`.
#include <cstdio>

#include "server/metrics.h"

namespace muscle::server {

namespace {

std::string Num(double v) {
  char b[64];
  snprintf(b, sizeof b, "%.9g", v);
  return b;
}
std::string Num(uint64_t v) { return std::to_string(v); }

// One metric family: HELP and TYPE once, then its samples.
class Family {
 public:
  Family(std::string& out, const char* name, const char* type, const char* help)
      : out_(out), name_(std::string("musclefs_") + name) {
    out_ += "# HELP " + name_ + " " + help + "\n# TYPE " + name_ + " " + type + "\n";
  }
  // labels: alternating name, value.
  void Sample(const std::vector<std::string>& labels, const std::string& value,
              const char* suffix = "") {
    out_ += name_ + suffix;
    if (!labels.empty()) {
      out_ += '{';
      for (size_t i = 0; i + 1 < labels.size(); i += 2) {
        if (i) out_ += ',';
        out_ += labels[i] + "=\"" + PrometheusLabel(labels[i + 1]) + "\"";
      }
      out_ += '}';
    }
    out_ += ' ' + value + '\n';
  }

 private:
  std::string& out_;
  std::string name_;
};

std::string Ms(double seconds) {
  char b[64];
  snprintf(b, sizeof b, "%.3f", seconds * 1000);
  return b;
}

double Ratio(uint64_t a, uint64_t b) { return b ? double(a) / double(b) : 0; }

}  // namespace

std::string PrometheusLabel(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string PrometheusText(const Metrics::Figures& f) {
  std::string out;
  Family(out, "uptime_seconds", "gauge", "Seconds since the server started.")
      .Sample({}, Num(f.uptime_seconds));
  {
    std::map<std::vector<std::string>, uint64_t> by;
    for (const auto& c : f.connections) by[{"identity", c.identity, "transport", c.transport, "dialect", c.dialect}]++;
    Family fam(out, "connections", "gauge",
               "Open connections with a session, by identity (empty: the local administrator), transport and dialect.");
    for (const auto& [labels, n] : by) fam.Sample(labels, Num(n));
  }
  {
    Family fam(out, "sessions_total", "counter", "Sessions started, by identity.");
    for (const auto& [id, i] : f.identities) fam.Sample({"identity", id}, Num(i.sessions));
  }
  {
    Family fam(out, "requests_total", "counter", "9P requests answered, by identity and message class.");
    for (const auto& [id, i] : f.identities)
      for (int k = 0; k < kClasses; k++) fam.Sample({"identity", id, "class", ClassName(k)}, Num(i.requests[k]));
  }
  {
    Family fam(out, "request_errors_total", "counter",
               "9P requests answered with an error, by identity and message class.");
    for (const auto& [id, i] : f.identities)
      for (int k = 0; k < kClasses; k++) fam.Sample({"identity", id, "class", ClassName(k)}, Num(i.errors[k]));
  }
  {
    Family fam(out, "read_bytes_total", "counter", "File bytes returned by reads, by identity.");
    for (const auto& [id, i] : f.identities) fam.Sample({"identity", id}, Num(i.read_bytes));
  }
  {
    Family fam(out, "written_bytes_total", "counter", "File bytes accepted by writes, by identity.");
    for (const auto& [id, i] : f.identities) fam.Sample({"identity", id}, Num(i.written_bytes));
  }
  {
    Family fam(out, "request_duration_seconds", "histogram",
               "Time from a request's arrival to its reply, by message class.");
    for (int k = 0; k < kClasses; k++) {
      const auto& h = f.latency[k];
      uint64_t cum = 0;
      for (size_t b = 0; b < LatencyHistogram::kBounds.size(); b++) {
        cum += h.buckets[b];
        fam.Sample({"class", ClassName(k), "le", Num(LatencyHistogram::kBounds[b])}, Num(cum), "_bucket");
      }
      fam.Sample({"class", ClassName(k), "le", "+Inf"}, Num(h.count), "_bucket");
      fam.Sample({"class", ClassName(k)}, Num(double(h.sum_ns) / 1e9), "_sum");
      fam.Sample({"class", ClassName(k)}, Num(h.count), "_count");
    }
  }
  {
    Family fam(out, "store_answers_total", "counter",
               "Requests on the live tree answered by the store-reader threads and by the writer.");
    fam.Sample({"by", "reader"}, Num(f.reader_answers));
    fam.Sample({"by", "writer"}, Num(f.writer_answers));
  }
  Family(out, "store_reader_retries_total", "counter",
         "Reader results the read gate refused (a commit or change raced them), answered again by the writer.")
      .Sample({}, Num(f.reader_retries));
  const StoreFigures& s = f.store;
  if (s.sized) {
    Family(out, "store_logical_bytes", "gauge", "File data the live tree names.").Sample({}, Num(s.logical_bytes));
    Family(out, "store_stored_bytes", "gauge", "Bytes of distinct chunks (file data and tree objects).")
        .Sample({}, Num(s.stored_bytes));
    Family(out, "store_dedup_ratio", "gauge", "Logical bytes over stored bytes.")
        .Sample({}, Num(Ratio(s.logical_bytes, s.stored_bytes)));
    Family(out, "store_chunks", "gauge", "Distinct chunks.").Sample({}, Num(s.chunks));
    Family(out, "store_packs", "gauge", "Pack files.").Sample({}, Num(s.packs));
    Family(out, "store_pack_bytes", "gauge", "Bytes of the pack files.").Sample({}, Num(s.pack_bytes));
    Family(out, "store_pack_live_ratio", "gauge", "Fraction of the pack bytes live chunks use.")
        .Sample({}, Num(Ratio(s.pack_live_bytes, s.pack_bytes)));
    Family(out, "store_snapshots", "gauge", "Snapshots kept.").Sample({}, Num(s.snapshots));
    Family(out, "store_sizes_age_seconds", "gauge",
           "Age of the store's size figures (measured by the writer every 10 s at most).")
        .Sample({}, Num(s.sized_seconds_ago));
  }
  if (s.pending_known) {
    Family(out, "store_uncommitted_seconds", "gauge",
           "How long the oldest change not yet committed has waited (0: none).")
        .Sample({}, Num(s.uncommitted_seconds));
    Family(out, "store_dirty_files", "gauge", "Files with buffered writes not yet cut into chunks.")
        .Sample({}, Num(s.dirty_files));
    Family(out, "store_buffered_bytes", "gauge", "Bytes of buffered writes not yet cut into chunks.")
        .Sample({}, Num(s.buffered_bytes));
    Family(out, "store_low_space", "gauge", "1 while space is short (writes get ENOSPC).")
        .Sample({}, s.low_space ? "1" : "0");
  }
  return out;
}

std::vector<std::vector<std::string>> StatusLines(const Metrics::Figures& f) {
  std::vector<std::vector<std::string>> out;
  auto kv = [&](std::string k, std::string v) { out.push_back({std::move(k), std::move(v)}); };
  auto who = [](const std::string& id) { return id.empty() ? std::string("-") : id; };
  kv("uptime-seconds", Num(uint64_t(f.uptime_seconds)));
  kv("connections", Num(uint64_t(f.connections.size())));
  for (const auto& c : f.connections)
    out.push_back({"connection", "identity=" + who(c.identity), "peer=" + c.peer, "dialect=" + c.dialect,
                   "transport=" + c.transport});
  for (const auto& [id, i] : f.identities) {
    uint64_t req = 0, err = 0;
    for (int k = 0; k < kClasses; k++) req += i.requests[k], err += i.errors[k];
    out.push_back({"identity", who(id), "connections=" + Num(i.connections), "requests=" + Num(req),
                   "errors=" + Num(err), "read-bytes=" + Num(i.read_bytes),
                   "written-bytes=" + Num(i.written_bytes)});
  }
  for (int k = 0; k < kClasses; k++) {
    const auto& h = f.latency[k];
    out.push_back({"latency", ClassName(k), "count=" + Num(h.count), "p50-ms=" + Ms(h.Quantile(0.5)),
                   "p99-ms=" + Ms(h.Quantile(0.99))});
  }
  kv("reader-answers", Num(f.reader_answers));
  kv("writer-answers", Num(f.writer_answers));
  kv("reader-retries", Num(f.reader_retries));
  const StoreFigures& s = f.store;
  if (s.sized) {
    kv("logical-bytes", Num(s.logical_bytes));
    kv("stored-bytes", Num(s.stored_bytes));
    char r[32];
    snprintf(r, sizeof r, "%.2f", Ratio(s.logical_bytes, s.stored_bytes));
    kv("dedup-ratio", r);
    kv("stored-chunks", Num(s.chunks));  // ("chunks" is where they are)
    kv("packs", Num(s.packs));
    kv("pack-bytes", Num(s.pack_bytes));
    snprintf(r, sizeof r, "%.3f", Ratio(s.pack_live_bytes, s.pack_bytes));
    kv("pack-live-fraction", r);
    kv("snapshots", Num(s.snapshots));
  }
  if (s.pending_known) {
    char r[32];
    snprintf(r, sizeof r, "%.3f", s.uncommitted_seconds);
    kv("uncommitted-seconds", r);
    kv("dirty-files", Num(s.dirty_files));
    kv("buffered-bytes", Num(s.buffered_bytes));
    kv("low-space", s.low_space ? "yes" : "no");
  }
  return out;
}

}  // namespace muscle::server
