// S3ObjectStore (s3/s3_client.h) against a real Ceph RGW started by
// tests/s3/with-rgw.sh: objects small and multipart, ranges, Head, Delete,
// List over several pages, the errors (missing key, wrong secret, skewed
// clock, unreachable endpoint). The retry rules are checked against a tiny
// scripted HTTP server in this file (RGW cannot be told to fail on cue).
// Without MUSCLE_S3_ENDPOINT every RGW test fails, saying to use with-rgw.sh.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include "s3/s3_client.h"
#include "tests/s3/s3_test_env.h"
#include "tests/test_util.h"

using namespace muscle;
using namespace muscle::s3;
using Clock = std::chrono::steady_clock;

namespace {

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// A port nothing listens on (bound, then closed).
int ClosedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// An HTTP/1.1 server on 127.0.0.1 that answers each request with the next
// scripted response (the last one repeats), closing the connection after
// each; "stall" answers nothing and keeps the connection open.
class ScriptedServer {
 public:
  struct Response {
    int status = 200;
    std::string body;
    std::string headers;  // extra header lines, each ending in \r\n
    bool stall = false;
  };
  explicit ScriptedServer(std::vector<Response> script) : script_(std::move(script)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(listen(fd_, 16) == 0);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Run(); });
  }
  ~ScriptedServer() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int requests() const { return requests_.load(); }
  std::vector<std::string> request_heads() {
    std::lock_guard<std::mutex> lock(mu_);
    return heads_;
  }

 private:
  bool WaitReadable(int fd) {
    while (!stop_) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 50) > 0) return true;
    }
    return false;
  }
  void Run() {
    while (WaitReadable(fd_)) {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      Serve(c);
      close(c);
    }
  }
  void Serve(int c) {
    std::string in;
    char buf[65536];
    size_t end;
    while ((end = in.find("\r\n\r\n")) == std::string::npos) {
      if (!WaitReadable(c)) return;
      ssize_t n = read(c, buf, sizeof buf);
      if (n <= 0) return;
      in.append(buf, size_t(n));
    }
    std::string head = in.substr(0, end);
    size_t body_len = 0;
    for (const char* name : {"Content-Length: ", "content-length: "}) {
      size_t p = head.find(name);
      if (p != std::string::npos) body_len = std::stoul(head.substr(p + strlen(name)));
    }
    while (in.size() < end + 4 + body_len) {
      if (!WaitReadable(c)) return;
      ssize_t n = read(c, buf, sizeof buf);
      if (n <= 0) return;
      in.append(buf, size_t(n));
    }
    int i = requests_++;
    {
      std::lock_guard<std::mutex> lock(mu_);
      heads_.push_back(head);
    }
    const Response& r = script_[std::min<size_t>(size_t(i), script_.size() - 1)];
    if (r.stall) {  // answer nothing until the client gives up and closes
      while (WaitReadable(c))
        if (read(c, buf, sizeof buf) <= 0) return;
      return;
    }
    std::string out = "HTTP/1.1 " + std::to_string(r.status) + " X\r\nContent-Length: " +
                      std::to_string(r.body.size()) + "\r\nConnection: close\r\n" + r.headers +
                      "\r\n" + r.body;
    (void)!write(c, out.data(), out.size());
  }

  std::vector<Response> script_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::mutex mu_;
  std::vector<std::string> heads_;
  std::thread thread_;
};

std::unique_ptr<S3ObjectStore> StoreAt(const std::string& endpoint, int attempts) {
  S3Config c;
  c.endpoint = endpoint;
  c.bucket = "fake-bucket";
  c.credentials = {"AKIDFAKE", "fake-secret-never-shown", ""};
  c.max_attempts = attempts;
  c.backoff_initial = std::chrono::milliseconds(20);
  c.backoff_max = std::chrono::milliseconds(100);
  auto s = S3ObjectStore::Open(c);
  REQUIRE(s.ok());
  return std::move(*s);
}

std::string Error(const std::string& code) {
  return "<?xml version=\"1.0\"?><Error><Code>" + code + "</Code><Message>m</Message></Error>";
}

}  // namespace

// ---------------------------------------------------------------------------
// Against RGW

TEST_CASE("s3: put and get small objects, Head", "[s3]") {
  auto s = test::NewTestBucket();
  REQUIRE(s->Put("a/b.txt", "hello, bucket").ok());
  auto got = s->Get("a/b.txt");
  REQUIRE(got.ok());
  CHECK(*got == "hello, bucket");
  auto size = s->Head("a/b.txt");
  REQUIRE(size.ok());
  CHECK(*size == 13);

  REQUIRE(s->Put("empty", "").ok());
  got = s->Get("empty");
  REQUIRE(got.ok());
  CHECK(got->empty());
  CHECK(*s->Head("empty") == 0);

  REQUIRE(s->Put("a/b.txt", "replaced").ok());  // a Put replaces
  CHECK(*s->Get("a/b.txt") == "replaced");

  auto missing = s->Head("nope");
  CHECK(missing.err() == ENOENT);
  CHECK(missing.status().message().find(s->config().bucket) != std::string::npos);
}

TEST_CASE("s3: Get of a missing key is ENOENT naming the S3 code, bucket and key", "[s3]") {
  auto s = test::NewTestBucket();
  auto got = s->Get("packs/missing");
  REQUIRE(got.err() == ENOENT);
  std::string m = got.status().message();
  CHECK(m.find("NoSuchKey") != std::string::npos);
  CHECK(m.find("s3://" + s->config().bucket + "/t/packs/missing") != std::string::npos);
  char buf[4];
  CHECK(s->GetRange("packs/missing", 0, 4, buf).err() == ENOENT);
  CHECK(s->stats().retries == 0);  // a 404 is final at once
}

TEST_CASE("s3: ranged reads inside, at the end, past the end", "[s3]") {
  auto s = test::NewTestBucket();
  std::string data = test::RandomBytes(100000, 7);
  REQUIRE(s->Put("obj", data).ok());
  std::string buf(data.size(), '\0');

  REQUIRE(s->GetRange("obj", 1234, 5000, buf.data()).ok());
  CHECK(buf.compare(0, 5000, data, 1234, 5000) == 0);
  REQUIRE(s->GetRange("obj", data.size() - 100, 100, buf.data()).ok());  // the last bytes
  CHECK(buf.compare(0, 100, data, data.size() - 100, 100) == 0);
  REQUIRE(s->GetRange("obj", 0, data.size(), buf.data()).ok());  // the whole object
  CHECK(buf == data);
  REQUIRE(s->GetRange("obj", 5, 0, buf.data()).ok());  // nothing asked, nothing sent

  Status past = s->GetRange("obj", data.size() - 10, 20, buf.data());  // runs over the end
  CHECK(past.err() == EIO);
  CHECK(past.message().find("shorter") != std::string::npos);
  Status beyond = s->GetRange("obj", data.size() + 10, 5, buf.data());  // starts past the end
  CHECK(beyond.err() == EIO);
  CHECK(beyond.message().find("InvalidRange") != std::string::npos);
}

TEST_CASE("s3: a 20 MiB multipart Put with 5 MiB parts reads back byte for byte", "[s3]") {
  auto s = test::NewTestBucket("mp", [](S3Config& c) { c.part_size = 5u << 20; });
  std::string data = test::RandomBytes((20u << 20) + 12345, 11);  // 5 parts, the last short
  uint64_t before = s->stats().requests;
  REQUIRE(s->Put("big", data).ok());
  CHECK(s->stats().multipart_uploads == 1);
  CHECK(s->stats().requests - before == 7);  // create, 5 parts, complete
  CHECK(*s->Head("big") == data.size());
  auto got = s->Get("big");
  REQUIRE(got.ok());
  CHECK(got->size() == data.size());
  CHECK(*got == data);
  // Across the boundary between parts 1 and 2.
  std::string buf(4096, '\0');
  REQUIRE(s->GetRange("big", (5u << 20) - 2048, 4096, buf.data()).ok());
  CHECK(buf == data.substr((5u << 20) - 2048, 4096));

  // At part_size exactly: one PUT.
  REQUIRE(s->Put("edge", data.substr(0, 5u << 20)).ok());
  CHECK(s->stats().multipart_uploads == 1);
}

TEST_CASE("s3: Delete, and deleting a missing key is not an error", "[s3]") {
  auto s = test::NewTestBucket();
  REQUIRE(s->Put("gone", "x").ok());
  REQUIRE(s->Delete("gone").ok());
  CHECK(s->Head("gone").err() == ENOENT);
  CHECK(s->Delete("gone").ok());
  CHECK(s->Delete("never-there").ok());
}

TEST_CASE("s3: List pages through continuation tokens, in key order, below the prefix", "[s3]") {
  auto s = test::NewTestBucket("pfx", [](S3Config& c) { c.list_page_size = 7; });
  for (int i = 24; i >= 0; i--) {
    char key[32];
    snprintf(key, sizeof key, "list/k%02d", i);
    REQUIRE(s->Put(key, std::string(size_t(i), 'x')).ok());
  }
  REQUIRE(s->Put("other/x", "yy").ok());
  // Another prefix in the same bucket, including one that starts like ours.
  S3Config c = s->config();
  c.prefix = "pfx2";
  auto neighbour = S3ObjectStore::Open(c);
  REQUIRE(neighbour.ok());
  REQUIRE((*neighbour)->Put("list/k99", "z").ok());

  uint64_t before = s->stats().requests;
  auto list = s->List("list/");
  REQUIRE(list.ok());
  CHECK(s->stats().requests - before == 4);  // 7 + 7 + 7 + 4
  REQUIRE(list->size() == 25);
  for (int i = 0; i < 25; i++) {
    char key[32];
    snprintf(key, sizeof key, "list/k%02d", i);
    CHECK((*list)[i].key == key);
    CHECK((*list)[i].size == uint64_t(i));
  }
  auto all = s->List("");
  REQUIRE(all.ok());
  CHECK(all->size() == 26);
  CHECK(all->back().key == "other/x");
  auto none = s->List("nothing/");
  REQUIRE(none.ok());
  CHECK(none->empty());
  auto theirs = (*neighbour)->List("");
  REQUIRE(theirs.ok());
  REQUIRE(theirs->size() == 1);
  CHECK((*theirs)[0].key == "list/k99");
}

TEST_CASE("s3: a wrong secret key is EACCES, and the message shows no secret", "[s3]") {
  auto s = test::NewTestBucket();
  REQUIRE(s->Put("k", "v").ok());
  S3Config c = s->config();
  std::string real = c.credentials.secret_key;
  c.credentials.secret_key = "wrong-secret-Zq7vX2";
  auto wrong = S3ObjectStore::Open(c);
  REQUIRE(wrong.ok());
  Status put = (*wrong)->Put("k", "other");
  CHECK(put.err() == EACCES);
  CHECK(put.message().find("SignatureDoesNotMatch") != std::string::npos);
  auto got = (*wrong)->Get("k");
  CHECK(got.err() == EACCES);
  for (const std::string& m : {put.message(), got.status().message()}) {
    INFO(m);
    CHECK(m.find("wrong-secret-Zq7vX2") == std::string::npos);
    CHECK(m.find(real) == std::string::npos);
    CHECK(m.find("Signature=") == std::string::npos);
    CHECK(m.find("Authorization") == std::string::npos);
  }
  CHECK((*wrong)->stats().retries == 0);
  CHECK(*s->Get("k") == "v");  // the refused Put changed nothing
}

TEST_CASE("s3: a clock 1 hour off is EACCES saying RequestTimeTooSkewed", "[s3]") {
  auto bucket = test::NewTestBucket();
  S3Config c = bucket->config();
  c.clock = [] { return time(nullptr) - 3600; };
  auto skewed = S3ObjectStore::Open(c);
  REQUIRE(skewed.ok());
  auto& s = *skewed;
  Status put = s->Put("k", "v");
  CHECK(put.err() == EACCES);
  CHECK(put.message().find("RequestTimeTooSkewed") != std::string::npos);
  CHECK(put.message().find("clock") != std::string::npos);
  CHECK(s->stats().retries == 0);
}

TEST_CASE("s3: an unreachable endpoint fails with EIO after the attempts, in bounded time", "[s3]") {
  auto s = StoreAt("http://127.0.0.1:" + std::to_string(ClosedPort()), 3);
  auto t0 = Clock::now();
  Status put = s->Put("k", "v");
  double took = Seconds(t0);
  CHECK((put.err() == EIO || put.err() == ETIMEDOUT));
  CHECK(put.message().find("after 3 attempts") != std::string::npos);
  CHECK(put.message().find("fake-secret") == std::string::npos);
  CHECK(s->stats().requests == 3);
  CHECK(s->stats().retries == 2);
  CHECK(took < 5.0);
}

// ---------------------------------------------------------------------------
// Retry rules, against a scripted server

TEST_CASE("s3 retry: 503 and SlowDown are retried until an answer comes", "[s3][s3retry]") {
  ScriptedServer server({{503, Error("ServiceUnavailable")}, {503, Error("SlowDown")}, {200, ""}});
  auto s = StoreAt(server.endpoint(), 5);
  REQUIRE(s->Put("k", "body").ok());
  CHECK(server.requests() == 3);
  CHECK(s->stats().retries == 2);
  // Every attempt is signed afresh and says what it sends.
  for (auto& head : server.request_heads()) {
    CHECK(head.find("x-amz-content-sha256: 230d8358dc8e8890b4c58deeb62912ee2f20357ae92a5cc861b98e68fe31acb5") !=
          std::string::npos);  // SHA-256 of "body"
    CHECK(head.find("Host: 127.0.0.1:") != std::string::npos);
    CHECK(head.find("PUT /fake-bucket/k HTTP/1.1") == 0);
  }
}

TEST_CASE("s3 retry: 500 on every attempt ends as EIO after max_attempts", "[s3][s3retry]") {
  ScriptedServer server({{500, Error("InternalError")}});
  auto s = StoreAt(server.endpoint(), 4);
  Status put = s->Put("k", "v");
  CHECK(put.err() == EIO);
  CHECK(put.message().find("InternalError (HTTP 500)") != std::string::npos);
  CHECK(put.message().find("after 4 attempts") != std::string::npos);
  CHECK(server.requests() == 4);
}

TEST_CASE("s3 retry: 429 is retried, a plain 400 and a 403 are not", "[s3][s3retry]") {
  {
    ScriptedServer server({{429, ""}, {200, "abc"}});
    auto s = StoreAt(server.endpoint(), 5);
    auto got = s->Get("k");
    REQUIRE(got.ok());
    CHECK(*got == "abc");
    CHECK(server.requests() == 2);
  }
  {
    ScriptedServer server({{400, Error("InvalidArgument")}, {200, ""}});
    auto s = StoreAt(server.endpoint(), 5);
    Status put = s->Put("k", "v");
    CHECK(put.err() == EIO);
    CHECK(put.message().find("InvalidArgument") != std::string::npos);
    CHECK(server.requests() == 1);
  }
  {
    ScriptedServer server({{403, Error("AccessDenied")}, {200, ""}});
    auto s = StoreAt(server.endpoint(), 5);
    CHECK(s->Delete("k").err() == EACCES);
    CHECK(server.requests() == 1);
  }
}

TEST_CASE("s3 retry: a stalled answer times out (ETIMEDOUT), not hangs", "[s3][s3retry]") {
  ScriptedServer server({{200, "", "", true}});
  S3Config c;
  c.endpoint = server.endpoint();
  c.bucket = "fake-bucket";
  c.credentials = {"AKIDFAKE", "fake-secret", ""};
  c.max_attempts = 2;
  c.backoff_initial = std::chrono::milliseconds(10);
  c.low_speed_time = std::chrono::seconds(1);
  auto s = S3ObjectStore::Open(c);
  REQUIRE(s.ok());
  auto t0 = Clock::now();
  auto got = (*s)->Get("k");
  double took = Seconds(t0);
  CHECK(got.err() == ETIMEDOUT);
  CHECK(server.requests() == 2);
  CHECK(took < 6.0);
}

TEST_CASE("s3 retry: a range answer longer than asked is refused, not overrun", "[s3][s3retry]") {
  ScriptedServer server({{206, "0123456789", "Content-Range: bytes 0-9/10\r\n"}});
  auto s = StoreAt(server.endpoint(), 3);
  char buf[4] = {};
  Status st = s->GetRange("k", 0, 4, buf);
  CHECK(st.err() == EIO);
  CHECK(server.requests() == 1);
}

TEST_CASE("s3 retry: multipart failure aborts the upload", "[s3][s3retry]") {
  std::string created =
      "<InitiateMultipartUploadResult><UploadId>up/1+2</UploadId></InitiateMultipartUploadResult>";
  ScriptedServer server({{200, created}, {200, "", "ETag: \"e1\"\r\n"}, {400, Error("EntityTooSmall")},
                         {204, ""}});
  S3Config c;
  c.endpoint = server.endpoint();
  c.bucket = "fake-bucket";
  c.credentials = {"AKIDFAKE", "fake-secret", ""};
  c.part_size = 4;
  auto s = S3ObjectStore::Open(c);
  REQUIRE(s.ok());
  Status put = (*s)->Put("k", "0123456789");  // 3 parts
  CHECK(put.err() == EIO);
  CHECK(put.message().find("UploadPart 2 of 3") != std::string::npos);
  auto heads = server.request_heads();
  REQUIRE(heads.size() == 4);
  CHECK(heads[0].find("POST /fake-bucket/k?uploads= ") == 0);
  CHECK(heads[1].find("PUT /fake-bucket/k?partNumber=1&uploadId=up%2F1%2B2 ") == 0);
  CHECK(heads[3].find("DELETE /fake-bucket/k?uploadId=up%2F1%2B2 ") == 0);
}

// ---------------------------------------------------------------------------
// Throughput (not run by default: s3_tests "[throughput]")

TEST_CASE("s3: single-stream throughput of a 64 MiB Put and GetRange", "[.][throughput]") {
  auto s = test::NewTestBucket();
  std::string data = test::RandomBytes(64u << 20, 3);
  std::string buf(data.size(), '\0');
  for (int round = 0; round < 3; round++) {
    auto t0 = Clock::now();
    REQUIRE(s->Put("tp", data).ok());
    double put = Seconds(t0);
    t0 = Clock::now();
    REQUIRE(s->GetRange("tp", 0, data.size(), buf.data()).ok());
    double get = Seconds(t0);
    CHECK(buf == data);
    WARN("64 MiB Put " << put << " s = " << 64 * 1.048576 / put << " MB/s; GetRange " << get
                       << " s = " << 64 * 1.048576 / get << " MB/s");
  }
}
