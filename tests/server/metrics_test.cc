// The metrics registry (server/metrics.h), its two renderings, and the
// metrics listener's answers and address rules (server/metrics_http.h).
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "server/config.h"
#include "server/metrics.h"
#include "server/metrics_http.h"
#include "tests/server/prometheus_check.h"
#include "tests/test_util.h"

using namespace muscle;
using namespace muscle::server;

namespace {

// A 9P frame: size[4] type[1] tag[2] then `body`.
std::string Frame(uint8_t type, uint16_t tag, const std::string& body = "") {
  std::string f(7, '\0');
  uint32_t size = uint32_t(7 + body.size());
  for (int i = 0; i < 4; i++) f[i] = char(size >> (8 * i));
  f[4] = char(type);
  f[5] = char(tag & 0xff);
  f[6] = char(tag >> 8);
  return f + body;
}
std::string U32(uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; i++) s[i] = char(v >> (8 * i));
  return s;
}
const uint8_t* Bytes(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

void Exchange(ConnectionMeter& m, uint8_t type, uint16_t tag, const std::string& reply,
              const char* dialect = "9P2000.L") {
  std::string req = Frame(type, tag);
  m.Request(Bytes(req), req.size());
  m.Reply(Bytes(reply), reply.size(), dialect);
}

std::string Sample(const test::PrometheusParse& p, const std::string& key) {
  auto it = p.samples.find(key);
  return it == p.samples.end() ? "(absent)" : std::to_string(uint64_t(it->second));
}

}  // namespace

TEST_CASE("metrics: message classes") {
  CHECK(ClassOf(116) == kClassRead);    // Tread
  CHECK(ClassOf(40) == kClassRead);     // Treaddir
  CHECK(ClassOf(118) == kClassWrite);   // Twrite
  CHECK(ClassOf(110) == kClassMeta);    // Twalk
  CHECK(ClassOf(24) == kClassMeta);     // Tgetattr
  CHECK(ClassOf(14) == kClassChange);   // Tlcreate
  CHECK(ClassOf(76) == kClassChange);   // Tunlinkat
  CHECK(ClassOf(120) == kClassOther);   // Tclunk
  CHECK(ClassOf(100) == kClassOther);   // Tversion
  CHECK(std::string(ClassName(kClassMeta)) == "meta");
}

TEST_CASE("metrics: latency histogram buckets and quantiles") {
  LatencyHistogram h;
  CHECK(h.Read().Quantile(0.5) == 0);
  for (int i = 0; i < 98; i++) h.Observe(300'000);     // 0.3 ms: the (0.25, 0.5] ms bucket
  for (int i = 0; i < 2; i++) h.Observe(3'000'000'000);  // 3 s: (2.5, 10] s
  auto s = h.Read();
  CHECK(s.count == 100);
  CHECK(s.sum_ns == 98 * 300'000ull + 2 * 3'000'000'000ull);
  CHECK(s.buckets[3] == 98);  // kBounds[3] = 0.5 ms
  CHECK(s.buckets[15] == 2);  // kBounds[15] = 10 s
  double p50 = s.Quantile(0.5), p99 = s.Quantile(0.99);
  CHECK(p50 > 0.00025);
  CHECK(p50 <= 0.0005);
  CHECK(p99 > 2.5);
  CHECK(p99 <= 10);
  h.Observe(60'000'000'000);  // past the last bound: +Inf
  CHECK(h.Read().buckets[16] == 1);
  CHECK(h.Read().Quantile(1.0) == 10);
}

TEST_CASE("metrics: a connection's requests, errors, bytes and dialect are counted per identity") {
  auto metrics = std::make_shared<Metrics>();
  {
    auto m = metrics->Connect("10.0.0.7:4711", "tls");
    // Before the session starts (a handshake) the connection is not listed.
    CHECK(metrics->Collect().connections.empty());
    m->Started("alice", "tls-kernel");
    Exchange(*m, 100, 0xffff, Frame(101, 0xffff, U32(8192) + std::string("\x08\x00", 2) + "9P2000.u"),
             "9P2000.u");
    Exchange(*m, 116, 1, Frame(117, 1, U32(1000) + std::string(1000, 'x')));  // Rread 1000
    Exchange(*m, 118, 2, Frame(119, 2, U32(4096)));                           // Rwrite 4096
    Exchange(*m, 110, 3, Frame(7, 3, U32(2)));                                // Rlerror ENOENT
    // A reply to a tag not in flight counts nothing.
    std::string stray = Frame(117, 9, U32(5) + "hello");
    m->Reply(Bytes(stray), stray.size(), "9P2000.u");

    auto f = metrics->Collect();
    REQUIRE(f.connections.size() == 1);
    CHECK(f.connections[0].identity == "alice");
    CHECK(f.connections[0].peer == "10.0.0.7:4711");
    CHECK(f.connections[0].transport == "tls-kernel");
    CHECK(f.connections[0].dialect == "9P2000.u");
    const auto& a = f.identities.at("alice");
    CHECK(a.requests[kClassRead] == 1);
    CHECK(a.requests[kClassWrite] == 1);
    CHECK(a.requests[kClassMeta] == 1);
    CHECK(a.requests[kClassOther] == 1);  // Tversion
    CHECK(a.errors[kClassMeta] == 1);
    CHECK(a.errors[kClassRead] == 0);
    CHECK(a.read_bytes == 1000);
    CHECK(a.written_bytes == 4096);
    CHECK(a.sessions == 1);
    CHECK(a.connections == 1);
    CHECK(f.latency[kClassRead].count == 1);
    CHECK(f.latency[kClassWrite].count == 1);
  }
  // Gone with its connection; the identity's counters stay.
  auto f = metrics->Collect();
  CHECK(f.connections.empty());
  CHECK(f.identities.at("alice").read_bytes == 1000);
  CHECK(f.identities.at("alice").connections == 0);
}

TEST_CASE("metrics: the Prometheus text is well formed, escaped, and counts what happened") {
  auto metrics = std::make_shared<Metrics>();
  auto m = metrics->Connect("/tmp/s", "unix");
  // An identity name with every character the format escapes.
  std::string evil = "ev\"il\\na\nme} 1\n# HELP";
  m->Started(evil, "");
  Exchange(*m, 116, 1, Frame(117, 1, U32(3) + "abc"));
  auto local = metrics->Connect("/tmp/s", "unix");
  local->Started("", "");
  Exchange(*local, 118, 1, Frame(119, 1, U32(77)));
  metrics->answers().reader += 5;
  metrics->answers().writer += 7;
  StoreFigures sf;
  sf.logical_bytes = 300;
  sf.stored_bytes = 100;
  sf.packs = 1;
  sf.pack_bytes = 200;
  sf.pack_live_bytes = 150;
  sf.snapshots = 2;
  sf.low_space = true;
  metrics->PublishStore(sf, true);

  std::string text = PrometheusText(metrics->Collect());
  INFO(text);
  auto p = test::ParsePrometheus(text);
  for (const auto& problem : p.problems) FAIL_CHECK(problem);
  // Every line is a comment or one sample (the name's newline was escaped).
  size_t lines = 0, comments = 0;
  for (size_t i = 0; i < text.size(); i++)
    if (text[i] == '\n') lines++;
  for (size_t i = 0; i + 1 < text.size(); i++)
    if ((i == 0 || text[i - 1] == '\n') && text[i] == '#') comments++;
  CHECK(p.samples.size() + comments == lines);
  std::string esc = "ev\\\"il\\\\na\\nme} 1\\n# HELP";
  CHECK(PrometheusLabel(evil) == esc);
  CHECK(Sample(p, "musclefs_read_bytes_total{identity=\"" + esc + "\"}") == "3");
  CHECK(Sample(p, "musclefs_requests_total{identity=\"" + esc + "\",class=\"read\"}") == "1");
  CHECK(Sample(p, "musclefs_written_bytes_total{identity=\"\"}") == "77");
  CHECK(Sample(p, "musclefs_connections{identity=\"\",transport=\"unix\",dialect=\"-\"}") == "1");
  CHECK(Sample(p, "musclefs_request_duration_seconds_count{class=\"write\"}") == "1");
  CHECK(Sample(p, "musclefs_request_duration_seconds_bucket{class=\"write\",le=\"+Inf\"}") == "1");
  CHECK(Sample(p, "musclefs_store_answers_total{by=\"reader\"}") == "5");
  CHECK(Sample(p, "musclefs_store_answers_total{by=\"writer\"}") == "7");
  CHECK(Sample(p, "musclefs_store_logical_bytes") == "300");
  CHECK(p.samples.at("musclefs_store_dedup_ratio") == 3.0);
  CHECK(p.samples.at("musclefs_store_pack_live_ratio") == 0.75);
  CHECK(Sample(p, "musclefs_store_snapshots") == "2");
  CHECK(Sample(p, "musclefs_store_low_space") == "1");
  // Histogram buckets are cumulative and end at the count.
  double last = -1;
  for (double b : LatencyHistogram::kBounds) {
    char le[64];
    snprintf(le, sizeof le, "%.9g", b);
    double v = p.samples.at(std::string("musclefs_request_duration_seconds_bucket{class=\"write\",le=\"") + le + "\"}");
    CHECK(v >= last);
    last = v;
  }
  CHECK(last == 1);
}

TEST_CASE("metrics: status lines") {
  auto metrics = std::make_shared<Metrics>();
  auto m = metrics->Connect("127.0.0.1:5000", "tcp");
  m->Started("", "");
  Exchange(*m, 100, 0xffff, Frame(101, 0xffff, U32(8192) + std::string("\x08\x00", 2) + "9P2000.L"));
  Exchange(*m, 116, 1, Frame(117, 1, U32(10) + std::string(10, 'y')));
  StoreFigures sf;
  sf.logical_bytes = 10;
  sf.stored_bytes = 5;
  metrics->PublishStore(sf, true);
  auto lines = StatusLines(metrics->Collect());
  std::map<std::string, std::vector<std::string>> first;
  for (auto& l : lines) first.emplace(l[0], l);
  for (const char* key : {"uptime-seconds", "connections", "connection", "identity", "latency", "reader-answers",
                          "writer-answers", "reader-retries", "logical-bytes", "stored-bytes", "dedup-ratio",
                          "packs", "pack-live-fraction", "snapshots", "uncommitted-seconds", "low-space"}) {
    INFO(key);
    CHECK(first.count(key) == 1);
  }
  CHECK(first["connection"] ==
        std::vector<std::string>{"connection", "identity=-", "peer=127.0.0.1:5000", "dialect=9P2000.L", "transport=tcp"});
  CHECK(first["identity"][1] == "-");
  CHECK(first["identity"][3] == "requests=2");
  CHECK(first["identity"][5] == "read-bytes=10");
  CHECK(first["dedup-ratio"][1] == "2.00");
  CHECK(first["low-space"][1] == "no");
}

TEST_CASE("metrics listener: answers and address rules") {
  auto metrics = std::make_shared<Metrics>();
  std::string ok = MetricsHttp::Answer("GET /metrics HTTP/1.1\r\nHost: x", *metrics);
  CHECK(ok.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(ok.find("Content-Type: text/plain; version=0.0.4") != std::string::npos);
  CHECK(ok.find("\r\n\r\n# HELP musclefs_uptime_seconds ") != std::string::npos);
  CHECK(MetricsHttp::Answer("GET /metrics?x=1 HTTP/1.0", *metrics).rfind("HTTP/1.1 200", 0) == 0);
  std::string head = MetricsHttp::Answer("HEAD /metrics HTTP/1.1", *metrics);
  CHECK(head.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(head.find("# HELP") == std::string::npos);
  CHECK(MetricsHttp::Answer("GET / HTTP/1.1", *metrics).rfind("HTTP/1.1 404", 0) == 0);
  CHECK(MetricsHttp::Answer("GET /metricsx HTTP/1.1", *metrics).rfind("HTTP/1.1 404", 0) == 0);
  CHECK(MetricsHttp::Answer("POST /metrics HTTP/1.1", *metrics).rfind("HTTP/1.1 405", 0) == 0);
  CHECK(MetricsHttp::Answer("garbage", *metrics).rfind("HTTP/1.1 400", 0) == 0);
  CHECK(MetricsHttp::Answer("GET /metrics SPDY/3", *metrics).rfind("HTTP/1.1 400", 0) == 0);

  CHECK(CheckMetricsAddress("unix:/tmp/m.sock").ok());
  CHECK(CheckMetricsAddress("tcp://127.0.0.1:9100").ok());
  CHECK(CheckMetricsAddress("tcp://[::1]:9100").ok());
  auto wide = CheckMetricsAddress("tcp://0.0.0.0:9100");
  REQUIRE_FALSE(wide.ok());
  CHECK(wide.status().message().find("not a loopback address") != std::string::npos);
  CHECK_FALSE(CheckMetricsAddress("tcp://10.1.2.3:9100").ok());
  CHECK_FALSE(CheckMetricsAddress("tls://127.0.0.1:9100").ok());
  CHECK_FALSE(CheckMetricsAddress("nonsense").ok());
}

TEST_CASE("config: --metrics is off by default, taken from the flag, refused off loopback") {
  test::TempDir dir;
  auto none = ParseConfig({"serve", "--base", dir.path});
  REQUIRE(none.ok());
  CHECK(none->server.metrics.empty());
  auto on = ParseConfig({"serve", "--base", dir.path, "--metrics", "tcp://127.0.0.1:9100"});
  REQUIRE(on.ok());
  CHECK(on->server.metrics == "tcp://127.0.0.1:9100");
  auto off = ParseConfig({"serve", "--base", dir.path, "--metrics", "tcp://0.0.0.0:9100"});
  REQUIRE_FALSE(off.ok());
  CHECK(off.status().message().find("option --metrics") != std::string::npos);
}
