// The metrics of a real `musclefs serve` as an administrator sees them:
// the Prometheus listener (--metrics tcp://127.0.0.1:PORT and
// --metrics unix:PATH) scraped with curl, checked line by line, counters
// growing with 9P I/O; and `muscle status` showing the new lines.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <string>
#include <vector>

#include "9p/client.h"
#include "tests/server/prometheus_check.h"
#include "tests/server/server_harness.h"

using namespace muscle;
using namespace muscle::test;

namespace {

// Waits for `what` in the log; the rest of its line.
std::string WaitForLog(const std::string& log, const std::string& what) {
  for (int i = 0; i < 1000; i++) {
    std::string text = ReadText(log);
    size_t at = text.find(what);
    if (at != std::string::npos) {
      size_t end = text.find_first_of(" \n", at + what.size());
      return text.substr(at + what.size(), end - at - what.size());
    }
    usleep(10000);
  }
  return "";
}

double Value(const PrometheusParse& p, const std::string& key) {
  auto it = p.samples.find(key);
  return it == p.samples.end() ? 0 : it->second;
}

// A scrape, checked: curl succeeds and every line is well formed.
PrometheusParse Scrape(const std::string& curl_args) {
  std::string out;
  int rc = RunCommand("curl -sS --max-time 20 " + curl_args, &out);
  INFO("curl " << curl_args << "\n" << out);
  REQUIRE(rc == 0);
  auto p = ParsePrometheus(out);
  for (const auto& problem : p.problems) FAIL_CHECK(problem);
  for (const char* family :
       {"musclefs_uptime_seconds", "musclefs_requests_total", "musclefs_read_bytes_total",
        "musclefs_written_bytes_total", "musclefs_request_duration_seconds", "musclefs_store_answers_total",
        "musclefs_store_logical_bytes", "musclefs_store_dedup_ratio", "musclefs_store_packs",
        "musclefs_store_snapshots", "musclefs_store_uncommitted_seconds", "musclefs_store_low_space"}) {
    INFO(family);
    CHECK(p.families.count(family) == 1);
  }
  return p;
}

// Some 9P I/O on the unix socket: a file written and read back.
void SomeIo(p9::Client& c, const std::string& name, size_t bytes) {
  MakeFile(c, name);
  REQUIRE(c.WalkPath(0, 1, name).ok());
  REQUIRE(c.Open(1, O_RDWR).ok());
  std::string data = RandomBytes(bytes, 7);
  REQUIRE(c.WriteAll(1, data).ok());
  auto back = c.ReadAll(1);
  REQUIRE(back.ok());
  REQUIRE(*back == data);
  REQUIRE(c.Clunk(1).ok());
}

const std::string kAdmin = "{identity=\"\"}";

}  // namespace

TEST_CASE("metrics on loopback TCP, scraped with curl, grow with 9P I/O; muscle status shows them") {
  TempDir dir;
  std::string log = dir.path + "/server.log", sock = dir.path + "/musclefs.sock";
  ChildServer srv({"--base", dir.path, "--metrics", "tcp://127.0.0.1:0"}, "unix:" + sock, log);
  std::string at = WaitForLog(log, "metrics on tcp://127.0.0.1:");
  INFO(ReadText(log));
  REQUIRE(!at.empty());
  std::string url = "http://127.0.0.1:" + at + "/metrics";

  auto before = Scrape(url);
  p9::Client c;
  Connect(c, "unix:" + sock);
  SomeIo(c, "f", 300000);
  auto after = Scrape(url);
  CHECK(Value(after, "musclefs_written_bytes_total" + kAdmin) >=
        Value(before, "musclefs_written_bytes_total" + kAdmin) + 300000);
  CHECK(Value(after, "musclefs_read_bytes_total" + kAdmin) >=
        Value(before, "musclefs_read_bytes_total" + kAdmin) + 300000);
  CHECK(Value(after, "musclefs_requests_total{identity=\"\",class=\"write\"}") >
        Value(before, "musclefs_requests_total{identity=\"\",class=\"write\"}"));
  CHECK(Value(after, "musclefs_requests_total{identity=\"\",class=\"change\"}") >
        Value(before, "musclefs_requests_total{identity=\"\",class=\"change\"}"));
  CHECK(Value(after, "musclefs_request_duration_seconds_count{class=\"read\"}") >
        Value(before, "musclefs_request_duration_seconds_count{class=\"read\"}"));
  CHECK(Value(after, "musclefs_store_answers_total{by=\"writer\"}") >
        Value(before, "musclefs_store_answers_total{by=\"writer\"}"));
  CHECK(Value(after, "musclefs_connections{identity=\"\",transport=\"unix\",dialect=\"9P2000.L\"}") == 1);
  CHECK(Value(after, "musclefs_uptime_seconds") >= Value(before, "musclefs_uptime_seconds"));

  // The HTTP around it: the content type, 404 elsewhere, a bounded head.
  std::string out;
  REQUIRE(RunCommand("curl -sS --max-time 20 -o /dev/null -D - " + url, &out) == 0);
  CHECK(out.find("Content-Type: text/plain; version=0.0.4") != std::string::npos);
  out.clear();  // (RunCommand appends)
  REQUIRE(RunCommand("curl -sS --max-time 20 -o /dev/null -w '%{http_code}' http://127.0.0.1:" + at +
                         "/nope", &out) == 0);
  CHECK(out == "404");
  out.clear();
  REQUIRE(RunCommand("curl -sS --max-time 20 -o /dev/null -w '%{http_code}' -H 'X-Big: " +
                         std::string(9000, 'a') + "' " + url, &out) == 0);
  CHECK(out == "431");

  // muscle status, over the unix socket as the administrator.
  out.clear();
  REQUIRE(RunCommand(std::string(MUSCLE_BINARY) + " status --base " + dir.path, &out) == 0);
  INFO(out);
  for (const char* line : {"uptime-seconds:", "connections:", "latency:", "reader-answers:", "writer-answers:",
                           "reader-retries:", "logical-bytes:", "stored-bytes:", "dedup-ratio:", "packs:",
                           "pack-live-fraction:", "snapshots:", "uncommitted-seconds:", "low-space:"}) {
    INFO(line);
    CHECK(out.find(std::string("\n") + line) != std::string::npos);
  }
  CHECK(out.find("connection:") != std::string::npos);
  CHECK(out.find("transport=unix") != std::string::npos);
  CHECK(out.find("dialect=9P2000.L") != std::string::npos);
  CHECK(out.find("identity:            -  ") != std::string::npos);
  CHECK(out.find("written-bytes=") != std::string::npos);
  CHECK(out.find("latency:             write  count=") != std::string::npos);
  CHECK(out.find("p99-ms=") != std::string::npos);
}

TEST_CASE("metrics on a unix socket (mode 0600), scraped with curl --unix-socket") {
  TempDir dir;
  std::string log = dir.path + "/server.log", sock = dir.path + "/musclefs.sock";
  std::string msock = dir.path + "/metrics.sock";
  ChildServer srv({"--base", dir.path, "--store", ":memory:", "--metrics", "unix:" + msock}, "unix:" + sock, log);
  REQUIRE(!WaitForLog(log, "metrics on unix:").empty());
  struct stat st;
  REQUIRE(stat(msock.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  std::string curl = "--unix-socket " + msock + " http://localhost/metrics";
  auto before = Scrape(curl);
  p9::Client c;
  Connect(c, "unix:" + sock);
  SomeIo(c, "g", 5000);
  auto after = Scrape(curl);
  CHECK(Value(after, "musclefs_written_bytes_total" + kAdmin) >=
        Value(before, "musclefs_written_bytes_total" + kAdmin) + 5000);
  CHECK(Value(after, "musclefs_sessions_total" + kAdmin) > Value(before, "musclefs_sessions_total" + kAdmin));
}

TEST_CASE("a metrics listener off loopback is refused at start, with the reason") {
  TempDir dir;
  std::string out;
  // (timeout: a server that wrongly starts must not hang the test)
  int rc = RunCommand("timeout 20 " + std::string(MUSCLEFS_BINARY) + " serve --base " + dir.path +
                          " --store :memory: --metrics tcp://0.0.0.0:0 2>&1",
                      &out);
  INFO(out);
  CHECK(rc != 0);
  CHECK(out.find("not a loopback address") != std::string::npos);
}

TEST_CASE("the metrics listener serves a bounded number of connections at once") {
  TempDir dir;
  std::string log = dir.path + "/server.log", sock = dir.path + "/musclefs.sock";
  ChildServer srv({"--base", dir.path, "--store", ":memory:", "--metrics", "tcp://127.0.0.1:0"}, "unix:" + sock,
                  log);
  std::string port = WaitForLog(log, "metrics on tcp://127.0.0.1:");
  REQUIRE(!port.empty());
  std::string code = "curl -s --max-time 5 -o /dev/null -w '%{http_code}' http://127.0.0.1:" + port + "/metrics";
  auto answers = [&] {
    std::string out;
    RunCommand(code, &out);
    return out == "200";
  };
  REQUIRE(answers());
  // 32 clients that connect and send nothing: the server keeps 16 and
  // closes the others at once (counted within 5 s of connecting, well
  // before the 10 s after which it closes any connection, however slow the
  // machine: a server without the bound closes none in that time).
  std::vector<int> idle;
  for (size_t i = 0; i < 32; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(std::stoi(port)));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    idle.push_back(fd);
  }
  std::vector<bool> gone(idle.size(), false);
  auto count_closed = [&] {
    size_t n = 0;
    for (size_t i = 0; i < idle.size(); i++) {
      char ch;
      ssize_t r = gone[i] ? 0 : recv(idle[i], &ch, 1, MSG_DONTWAIT);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) gone[i] = true;
      n += gone[i];
    }
    return n;
  };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (count_closed() < 16 && std::chrono::steady_clock::now() < deadline) usleep(10000);
  usleep(300000);
  // At most 16 kept; 15 when the curl connection above still held its slot
  // as these arrived (its close is noticed a moment later: seen under
  // ThreadSanitizer, 17 closed).
  size_t kept = idle.size() - count_closed();
  CHECK(kept <= 16);
  CHECK(kept >= 15);
  for (int fd : idle) close(fd);
  bool back = false;
  for (int i = 0; i < 100 && !back; i++) {
    back = answers();
    if (!back) usleep(100000);
  }
  CHECK(back);
}

TEST_CASE("the metrics listener closes a client that never finishes its request (10 s)") {
  TempDir dir;
  std::string log = dir.path + "/server.log", sock = dir.path + "/musclefs.sock";
  ChildServer srv({"--base", dir.path, "--store", ":memory:", "--metrics", "tcp://127.0.0.1:0"}, "unix:" + sock,
                  log);
  std::string port = WaitForLog(log, "metrics on tcp://127.0.0.1:");
  REQUIRE(!port.empty());
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(std::stoi(port)));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  std::string partial = "GET /metrics HTTP/1.1\r\nHost: x\r\n";  // no blank line: never complete
  REQUIRE(write(fd, partial.data(), partial.size()) == ssize_t(partial.size()));
  timeval tv{20, 0};  // a bound for the test, past the server's 10 s
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  auto start = std::chrono::steady_clock::now();
  char c;
  ssize_t n = read(fd, &c, 1);
  double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  close(fd);
  CHECK(n == 0);  // closed by the server, not our own timeout (-1)
  CHECK(waited > 8);
  CHECK(waited < 19);
}
