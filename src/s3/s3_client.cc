// S3ObjectStore (s3_client.h): requests built, signed and retried here,
// sent by libcurl on pooled easy handles; the small XML answers of S3 are
// read with a few string searches. Also the credentials and s3:// URL
// parsers. Threading as in the header: no state shared between calls but
// the handle pool (under pool_mu_) and the atomic counters.
#include "s3/s3_client.h"

#include <curl/curl.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>

#include "common/fs_util.h"
#include "common/log.h"

namespace muscle::s3 {

namespace {

constexpr size_t kMaxXmlBody = 16u << 20;  // a List page or an error, at most
constexpr size_t kMaxErrorBody = 64u << 10;
constexpr size_t kMaxParts = 10000;
constexpr size_t kPoolSize = 16;

std::once_flag g_curl_once;

void InitCurl() {
  std::call_once(g_curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlnum(char c) { return IsDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool KeyChar(char c) { return IsAlnum(c) || c == '.' || c == '_' || c == '/' || c == '-'; }

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

// Keys and prefixes use [A-Za-z0-9._/-] only (object_store.h), never start
// with '/' and have no empty segment.
Status CheckKeyText(std::string_view key, bool allow_empty, const char* what) {
  if (key.empty() && allow_empty) return Status::Ok();
  bool ok = !key.empty() && key.front() != '/' && key.find("//") == std::string_view::npos;
  for (char c : key) ok = ok && KeyChar(c);
  if (!ok)
    return Status(EINVAL, std::string("bad S3 ") + what + " '" + std::string(key) +
                              "': use only A-Z a-z 0-9 . _ - and '/' between non-empty names");
  return Status::Ok();
}

struct Endpoint {
  std::string scheme;  // "http" or "https"
  std::string host;    // "127.0.0.1", "s3.example.net", "[::1]"
  std::string port;    // "" when not given
};

Result<Endpoint> ParseEndpoint(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return Status(EINVAL, "bad S3 endpoint '" + std::string(text) + "': " + why +
                              " (expected http://HOST[:PORT] or https://HOST[:PORT])");
  };
  Endpoint e;
  std::string_view rest = text;
  if (rest.substr(0, 7) == "http://") {
    e.scheme = "http";
    rest.remove_prefix(7);
  } else if (rest.substr(0, 8) == "https://") {
    e.scheme = "https";
    rest.remove_prefix(8);
  } else {
    return bad("no http:// or https://");
  }
  size_t slash = rest.find('/');
  if (slash != std::string_view::npos) {
    if (rest.substr(slash) != "/") return bad("a path after the host");
    rest = rest.substr(0, slash);
  }
  std::string_view host = rest, port;
  bool has_port = false;
  if (!rest.empty() && rest[0] == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) return bad("no ']'");
    host = rest.substr(0, close + 1);
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad("junk after ']'");
      port = after.substr(1);
      has_port = true;
    }
    for (char c : host.substr(1, host.size() - 2))
      if (!(IsAlnum(c) || c == ':' || c == '.')) return bad("a bad IPv6 address");
  } else {
    size_t colon = rest.find(':');
    if (colon != std::string_view::npos) {
      host = rest.substr(0, colon);
      port = rest.substr(colon + 1);
      has_port = true;
    }
    for (char c : host)
      if (!(IsAlnum(c) || c == '.' || c == '-' || c == '_')) return bad("a bad host name");
  }
  if (host.empty() || host == "[]") return bad("no host");
  if (has_port) {
    bool ok = !port.empty() && port.size() <= 5;
    for (char c : port) ok = ok && IsDigit(c);
    int n = ok ? std::atoi(std::string(port).c_str()) : 0;
    if (n < 1 || n > 65535) return bad("a bad port");
  }
  e.host = host;
  e.port = port;
  return e;
}

// The text of the first <tag>...</tag> at or after *pos (a tag without
// attributes); *pos moves past it.
bool XmlFind(std::string_view xml, std::string_view tag, size_t* pos, std::string_view* out) {
  std::string open = "<" + std::string(tag) + ">", close = "</" + std::string(tag) + ">";
  size_t b = xml.find(open, *pos);
  if (b == std::string_view::npos) return false;
  b += open.size();
  size_t e = xml.find(close, b);
  if (e == std::string_view::npos) return false;
  *out = xml.substr(b, e - b);
  *pos = e + close.size();
  return true;
}

std::string XmlDecode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); i++) {
    if (in[i] != '&') {
      out += in[i];
      continue;
    }
    size_t semi = in.find(';', i);
    if (semi == std::string_view::npos || semi - i > 10) {
      out += in[i];
      continue;
    }
    std::string_view ent = in.substr(i + 1, semi - i - 1);
    if (ent == "amp") out += '&';
    else if (ent == "lt") out += '<';
    else if (ent == "gt") out += '>';
    else if (ent == "quot") out += '"';
    else if (ent == "apos") out += '\'';
    else if (ent.size() > 1 && ent[0] == '#') {
      bool hex = ent[1] == 'x' || ent[1] == 'X';
      std::string digits(ent.substr(hex ? 2 : 1));
      char* end = nullptr;
      unsigned long cp = std::strtoul(digits.c_str(), &end, hex ? 16 : 10);
      if (digits.empty() || *end != '\0' || cp > 0x10ffff) {
        out += in[i];
        continue;
      }
      // As UTF-8.
      if (cp < 0x80) {
        out += char(cp);
      } else if (cp < 0x800) {
        out += char(0xc0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3f));
      } else if (cp < 0x10000) {
        out += char(0xe0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3f));
        out += char(0x80 | (cp & 0x3f));
      } else {
        out += char(0xf0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3f));
        out += char(0x80 | ((cp >> 6) & 0x3f));
        out += char(0x80 | (cp & 0x3f));
      }
    } else {
      out += in[i];
      continue;
    }
    i = semi;
  }
  return out;
}

std::string XmlEscape(std::string_view in) {
  std::string out;
  for (char c : in) {
    if (c == '&') out += "&amp;";
    else if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

bool Retryable(long status, const std::string& code) {
  return status >= 500 || status == 429 || status == 408 || code == "SlowDown" ||
         code == "RequestTimeout" || code == "InternalError" || code == "ServiceUnavailable";
}

// curl errors that another attempt will not change.
bool PermanentCurlError(CURLcode rc) {
  return rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT ||
         rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
         rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_NOT_BUILT_IN || rc == CURLE_OUT_OF_MEMORY;
}

std::chrono::milliseconds Backoff(const S3Config& c, int attempt) {
  int64_t ms = c.backoff_initial.count();
  for (int i = 1; i < attempt && ms < c.backoff_max.count(); i++) ms *= 2;
  ms = std::min<int64_t>(ms, c.backoff_max.count());
  thread_local std::mt19937_64 rng{std::random_device{}()};
  int64_t half = ms / 2;
  return std::chrono::milliseconds(half + (half > 0 ? int64_t(rng() % uint64_t(ms - half + 1)) : 0));
}

}  // namespace

// ---------------------------------------------------------------------------
// Requests

struct S3ObjectStore::Call {
  std::string what;    // for messages: "GET", "UploadPart 3", ...
  std::string method;  // GET PUT POST DELETE HEAD
  std::string key;     // the whole key in the bucket; "" for the bucket
  ParamList query;
  ParamList headers;  // besides host and x-amz-*; all signed
  std::string_view body;
  std::string* out_string = nullptr;  // a 2xx body goes here ...
  char* out_buf = nullptr;            // ... or here, at most out_len bytes ...
  size_t out_len = 0;                 // ... else into Reply::body
  bool error_in_ok_body = false;      // a 200 may carry an <Error> (CompleteMultipartUpload)
};

struct S3ObjectStore::Reply {
  long status = 0;
  std::string body;  // an error's body, or a 2xx body no out_* took
  std::string etag;
  int64_t content_length = -1;
  std::string content_range;
  size_t received = 0;  // bytes into out_buf or out_string
  bool overflow = false;
  std::string code;  // S3's error Code, when there is one
  int attempts = 0;
};

namespace {

struct Transfer {
  CURL* handle;
  const std::string_view body;
  size_t sent = 0;
  std::string* out_string;
  char* out_buf;
  size_t out_len;
  size_t* received;
  std::string* reply_body;
  bool* overflow;
  std::string* etag;
  int64_t* content_length;
  std::string* content_range;
};

size_t OnWrite(char* data, size_t size, size_t n, void* arg) {
  auto* t = static_cast<Transfer*>(arg);
  size_t len = size * n;
  long status = 0;
  curl_easy_getinfo(t->handle, CURLINFO_RESPONSE_CODE, &status);
  bool ok = status >= 200 && status <= 299;
  if (!ok) {  // an error's XML: keep its start
    size_t room = kMaxErrorBody - std::min(kMaxErrorBody, t->reply_body->size());
    t->reply_body->append(data, std::min(room, len));
    return len;
  }
  if (t->out_buf) {
    if (*t->received + len > t->out_len) {
      *t->overflow = true;
      return 0;  // curl fails the transfer with CURLE_WRITE_ERROR
    }
    memcpy(t->out_buf + *t->received, data, len);
  } else if (t->out_string) {
    if (*t->received == 0 && *t->content_length > 0)
      t->out_string->reserve(size_t(std::min<int64_t>(*t->content_length, int64_t(5) << 30)));
    t->out_string->append(data, len);
  } else {
    if (t->reply_body->size() + len > kMaxXmlBody) {
      *t->overflow = true;
      return 0;
    }
    t->reply_body->append(data, len);
  }
  *t->received += len;
  return len;
}

size_t OnHeader(char* data, size_t size, size_t n, void* arg) {
  auto* t = static_cast<Transfer*>(arg);
  std::string_view line(data, size * n);
  if (line.substr(0, 5) == "HTTP/") {  // a new answer (after a 100 Continue)
    t->etag->clear();
    *t->content_length = -1;
    t->content_range->clear();
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return size * n;
  std::string name = Lower(Trim(line.substr(0, colon)));
  std::string_view value = Trim(line.substr(colon + 1));
  if (name == "etag") {
    *t->etag = value;
  } else if (name == "content-length") {
    std::string v(value);
    char* end = nullptr;
    long long cl = std::strtoll(v.c_str(), &end, 10);
    if (!v.empty() && *end == '\0' && cl >= 0) *t->content_length = cl;
  } else if (name == "content-range") {
    *t->content_range = value;
  }
  return size * n;
}

size_t OnRead(char* buf, size_t size, size_t n, void* arg) {
  auto* t = static_cast<Transfer*>(arg);
  size_t len = std::min(size * n, t->body.size() - t->sent);
  memcpy(buf, t->body.data() + t->sent, len);
  t->sent += len;
  return len;
}

int OnSeek(void* arg, curl_off_t offset, int origin) {
  auto* t = static_cast<Transfer*>(arg);
  if (origin != SEEK_SET || offset < 0 || size_t(offset) > t->body.size()) return CURL_SEEKFUNC_FAIL;
  t->sent = size_t(offset);
  return CURL_SEEKFUNC_OK;
}

}  // namespace

Result<RequestTarget> TargetFor(const S3Config& config, std::string_view object_key) {
  Endpoint e;
  bool aws = config.endpoint.empty();
  if (aws) {
    e.scheme = "https";
    e.host = "s3." + config.region + ".amazonaws.com";
  } else {
    auto parsed = ParseEndpoint(config.endpoint);
    if (!parsed.ok()) return parsed.status();
    e = *parsed;
  }
  bool virtual_host = config.addressing == Addressing::kVirtualHost ||
                      (config.addressing == Addressing::kAuto && aws);
  RequestTarget t;
  std::string host = virtual_host ? config.bucket + "." + e.host : e.host;
  bool default_port = e.port.empty() || (e.scheme == "http" && e.port == "80") ||
                      (e.scheme == "https" && e.port == "443");
  t.host = default_port ? host : host + ":" + e.port;
  if (virtual_host)
    t.path = "/" + std::string(object_key);
  else
    t.path = "/" + config.bucket + (object_key.empty() ? "" : "/" + std::string(object_key));
  t.url = e.scheme + "://" + host + (e.port.empty() ? "" : ":" + e.port) + CanonicalUri(t.path);
  return t;
}

Result<std::unique_ptr<S3ObjectStore>> S3ObjectStore::Open(S3Config config) {
  if (!config.endpoint.empty()) {
    auto e = ParseEndpoint(config.endpoint);
    if (!e.ok()) return e.status();
  } else if (config.region.empty()) {
    return Status(EINVAL, "S3: no endpoint and no region");
  }
  MUSCLE_RETURN_IF_ERROR(CheckBucketName(config.bucket));
  while (!config.prefix.empty() && config.prefix.front() == '/') config.prefix.erase(0, 1);
  while (!config.prefix.empty() && config.prefix.back() == '/') config.prefix.pop_back();
  MUSCLE_RETURN_IF_ERROR(CheckKeyText(config.prefix, true, "prefix"));
  if (config.credentials.access_key.empty() || config.credentials.secret_key.empty())
    return Status(EINVAL, "S3: no credentials (access key and secret key)");
  if (config.region.empty()) config.region = "us-east-1";
  if (config.part_size == 0 || config.max_attempts < 1 || config.list_page_size < 1)
    return Status(EINVAL, "S3: part_size, max_attempts and list_page_size must be positive");
  InitCurl();
  return std::unique_ptr<S3ObjectStore>(new S3ObjectStore(std::move(config)));
}

S3ObjectStore::S3ObjectStore(S3Config config) : config_(std::move(config)) {}

S3ObjectStore::~S3ObjectStore() {
  for (void* h : pool_) curl_easy_cleanup(static_cast<CURL*>(h));
  OPENSSL_cleanse(config_.credentials.secret_key.data(), config_.credentials.secret_key.size());
}

void* S3ObjectStore::TakeHandle() {
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    if (!pool_.empty()) {
      void* h = pool_.back();
      pool_.pop_back();
      return h;
    }
  }
  return curl_easy_init();
}

void S3ObjectStore::ReturnHandle(void* handle) {
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    if (pool_.size() < kPoolSize) {
      pool_.push_back(handle);
      return;
    }
  }
  curl_easy_cleanup(static_cast<CURL*>(handle));
}

S3Stats S3ObjectStore::stats() const {
  S3Stats s;
  s.requests = requests_.load();
  s.retries = retries_.load();
  s.multipart_uploads = multipart_uploads_.load();
  return s;
}

std::string S3ObjectStore::FullKey(const std::string& key) const {
  return config_.prefix.empty() ? key : config_.prefix + "/" + key;
}

std::string S3ObjectStore::Name(const std::string& full_key) const {
  return "s3://" + config_.bucket + (full_key.empty() ? "" : "/" + full_key);
}

std::string S3ObjectStore::Location() const {
  return "s3://" + config_.bucket + (config_.prefix.empty() ? "" : "/" + config_.prefix);
}

std::string S3ObjectStore::Describe() const {
  std::string at = config_.endpoint.empty() ? "AWS " + config_.region : config_.endpoint;
  return "s3://" + config_.bucket + (config_.prefix.empty() ? "" : "/" + config_.prefix) + " at " + at;
}

Status S3ObjectStore::Attempt(const Call& call, const std::string& payload_hash, Reply* reply,
                              bool* retry) {
  *retry = false;
  auto target = TargetFor(config_, call.key);
  if (!target.ok()) return target.status();
  std::string what = "S3 " + call.what + " " + Name(call.key);

  time_t now = config_.clock ? config_.clock() : time(nullptr);
  SigningScope scope{config_.region, "s3", AmzDate(now)};
  SigningRequest req{call.method, target->path, call.query, {}, payload_hash};
  req.headers.emplace_back("Host", target->host);
  req.headers.emplace_back("x-amz-content-sha256", payload_hash);
  req.headers.emplace_back("x-amz-date", scope.amz_date);
  if (!config_.credentials.session_token.empty())
    req.headers.emplace_back("x-amz-security-token", config_.credentials.session_token);
  for (auto& h : call.headers) req.headers.push_back(h);
  Signed sig = Sign(req, config_.credentials, scope);

  std::string url = target->url;
  std::string query = CanonicalQueryString(call.query);
  if (!query.empty()) url += "?" + query;

  curl_slist* list = nullptr;
  bool has_type = false;
  for (auto& [name, value] : req.headers) {
    list = curl_slist_append(list, (name + ": " + value).c_str());
    has_type = has_type || Lower(name) == "content-type";
  }
  std::string auth = "Authorization: " + sig.authorization;
  list = curl_slist_append(list, auth.c_str());
  list = curl_slist_append(list, "Expect:");  // no 100-continue round trip
  list = curl_slist_append(list, "Accept:");
  if (!has_type) list = curl_slist_append(list, "Content-Type:");

  CURL* h = static_cast<CURL*>(TakeHandle());
  if (!h || !list) {
    curl_slist_free_all(list);
    if (h) ReturnHandle(h);
    return Status(ENOMEM, what + ": cannot set up the request");
  }
  curl_easy_reset(h);
  Transfer t{h,
             call.body,
             0,
             call.out_string,
             call.out_buf,
             call.out_len,
             &reply->received,
             &reply->body,
             &reply->overflow,
             &reply->etag,
             &reply->content_length,
             &reply->content_range};
  char errbuf[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, long(CURL_HTTP_VERSION_1_1));
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, long(config_.connect_timeout.count()));
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, config_.low_speed_bytes);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, long(config_.low_speed_time.count()));
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 512L << 10);
  curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 512L << 10);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, OnWrite);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
  if (call.method == "PUT") {
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, curl_off_t(call.body.size()));
  } else if (call.method == "POST") {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(call.body.size()));
  } else if (call.method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (call.method != "GET") {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, call.method.c_str());
  }
  if (call.method == "PUT" || call.method == "POST") {
    curl_easy_setopt(h, CURLOPT_READFUNCTION, OnRead);
    curl_easy_setopt(h, CURLOPT_READDATA, &t);
    curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, OnSeek);
    curl_easy_setopt(h, CURLOPT_SEEKDATA, &t);
  }

  CURLcode rc = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &reply->status);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, nullptr);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, nullptr);
  ReturnHandle(h);
  curl_slist_free_all(list);
  OPENSSL_cleanse(auth.data(), auth.size());

  if (rc != CURLE_OK) {
    if (reply->overflow) {
      return Status(EIO, what + ": the answer is longer than the " +
                             std::to_string(call.out_buf ? call.out_len : kMaxXmlBody) +
                             " bytes expected");
    }
    *retry = !PermanentCurlError(rc);
    std::string detail = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    return Status(rc == CURLE_OPERATION_TIMEDOUT ? ETIMEDOUT : EIO,
                  what + " at " + target->url.substr(0, target->url.find('/', 8)) + ": " + detail);
  }

  bool ok = reply->status >= 200 && reply->status <= 299;
  std::string_view xml = reply->body;
  if (ok && !(call.error_in_ok_body && xml.find("<Error>") != std::string_view::npos))
    return Status::Ok();

  size_t pos = 0;
  std::string_view code, message;
  if (XmlFind(xml, "Code", &pos, &code)) reply->code = XmlDecode(code);
  pos = 0;
  XmlFind(xml, "Message", &pos, &message);
  std::string text = XmlDecode(message).substr(0, 300);
  long status = ok ? 500 : reply->status;  // an <Error> in a 200 counts as a server failure
  *retry = Retryable(status, reply->code);
  std::string why = reply->code.empty() ? "HTTP " + std::to_string(reply->status)
                                        : reply->code + " (HTTP " + std::to_string(reply->status) + ")";
  if (reply->code == "RequestTimeTooSkewed")
    return Status(EACCES, what + ": " + why + ": this host's clock (signing time " +
                              scope.amz_date + ") is more than 15 minutes from the server's; "
                              "set the clock right (NTP)");
  if (call.method == "HEAD" && reply->status == 404 && reply->code.empty())
    why = "no such object (HTTP 404)";
  std::string msg = what + ": " + why + (text.empty() ? "" : ": " + text);
  int err = status == 404 ? ENOENT : status == 403 ? EACCES : EIO;
  return Status(err, msg);
}

Status S3ObjectStore::Execute(const Call& call, Reply* reply) {
  std::string payload_hash = Sha256Hex(call.body);
  for (int attempt = 1;; attempt++) {
    requests_++;
    if (attempt > 1) retries_++;
    *reply = Reply{};
    reply->attempts = attempt;
    if (call.out_string) call.out_string->clear();
    bool retry = false;
    Status s = Attempt(call, payload_hash, reply, &retry);
    if (s.ok()) return s;
    if (!retry || attempt >= config_.max_attempts) {
      if (attempt == 1) return s;
      return Status(s.err(), s.message() + " (after " + std::to_string(attempt) + " attempts)");
    }
    auto wait = Backoff(config_, attempt);
    Log("s3: %s; attempt %d of %d failed, trying again in %.1f s", s.message().c_str(), attempt,
        config_.max_attempts, double(wait.count()) / 1000);
    std::this_thread::sleep_for(wait);
  }
}

// ---------------------------------------------------------------------------
// The ObjectStore operations

Status S3ObjectStore::Put(const std::string& key, std::string_view body) {
  MUSCLE_RETURN_IF_ERROR(CheckKeyText(key, false, "key"));
  std::string full = FullKey(key);
  if (body.size() > config_.part_size) return PutMultipart(full, body);
  Call call;
  call.what = "PUT";
  call.method = "PUT";
  call.key = full;
  call.body = body;
  Reply reply;
  return Execute(call, &reply);
}

Status S3ObjectStore::PutMultipart(const std::string& full, std::string_view body) {
  multipart_uploads_++;
  size_t part = std::max(config_.part_size, (body.size() + kMaxParts - 1) / kMaxParts);
  Reply reply;
  Call create;
  create.what = "CreateMultipartUpload";
  create.method = "POST";
  create.key = full;
  create.query = {{"uploads", ""}};
  MUSCLE_RETURN_IF_ERROR(Execute(create, &reply));
  size_t pos = 0;
  std::string_view id_xml;
  if (!XmlFind(reply.body, "UploadId", &pos, &id_xml) || id_xml.empty())
    return Status(EIO, "S3 CreateMultipartUpload " + Name(full) + ": no UploadId in the answer");
  std::string upload_id = XmlDecode(id_xml);

  auto abort = [&](Status failed) {
    Call call;
    call.what = "AbortMultipartUpload";
    call.method = "DELETE";
    call.key = full;
    call.query = {{"uploadId", upload_id}};
    Reply r;
    Status s = Execute(call, &r);
    if (!s.ok() && s.err() != ENOENT)
      Log("s3: %s (the parts stay until a lifecycle rule removes them)", s.message().c_str());
    return failed;
  };

  std::string complete = "<CompleteMultipartUpload>";
  size_t n = (body.size() + part - 1) / part;
  for (size_t i = 0; i < n; i++) {
    Call call;
    call.what = "UploadPart " + std::to_string(i + 1) + " of " + std::to_string(n);
    call.method = "PUT";
    call.key = full;
    call.query = {{"partNumber", std::to_string(i + 1)}, {"uploadId", upload_id}};
    call.body = body.substr(i * part, part);
    Status s = Execute(call, &reply);
    if (!s.ok()) return abort(s);
    if (reply.etag.empty())
      return abort(Status(EIO, "S3 " + call.what + " " + Name(full) + ": no ETag in the answer"));
    complete += "<Part><PartNumber>" + std::to_string(i + 1) + "</PartNumber><ETag>" +
                XmlEscape(reply.etag) + "</ETag></Part>";
  }
  complete += "</CompleteMultipartUpload>";

  Call call;
  call.what = "CompleteMultipartUpload";
  call.method = "POST";
  call.key = full;
  call.query = {{"uploadId", upload_id}};
  call.headers = {{"Content-Type", "application/xml"}};
  call.body = complete;
  call.error_in_ok_body = true;
  Status s = Execute(call, &reply);
  if (s.ok()) return s;
  // A retry after a completion whose answer was lost finds no upload: the
  // object is there if it has the size.
  if (s.err() == ENOENT && reply.attempts > 1 && reply.code == "NoSuchUpload") {
    auto size = Head(full.substr(config_.prefix.empty() ? 0 : config_.prefix.size() + 1));
    if (size.ok() && *size == body.size()) return Status::Ok();
  }
  return abort(s);
}

Result<std::string> S3ObjectStore::Get(const std::string& key) {
  MUSCLE_RETURN_IF_ERROR(CheckKeyText(key, false, "key"));
  std::string out;
  Call call;
  call.what = "GET";
  call.method = "GET";
  call.key = FullKey(key);
  call.out_string = &out;
  Reply reply;
  MUSCLE_RETURN_IF_ERROR(Execute(call, &reply));
  return out;
}

Status S3ObjectStore::GetRange(const std::string& key, uint64_t offset, size_t len, char* out) {
  MUSCLE_RETURN_IF_ERROR(CheckKeyText(key, false, "key"));
  if (len == 0) return Status::Ok();
  if (offset + len < offset) return Status(EINVAL, "S3 GET " + Name(FullKey(key)) + ": bad range");
  Call call;
  call.what = "GET (range)";
  call.method = "GET";
  call.key = FullKey(key);
  call.headers = {{"Range", "bytes=" + std::to_string(offset) + "-" + std::to_string(offset + len - 1)}};
  call.out_buf = out;
  call.out_len = len;
  Reply reply;
  Status s = Execute(call, &reply);
  std::string what = "S3 GET " + Name(call.key) + " bytes " + std::to_string(offset) + "+" +
                     std::to_string(len);
  if (!s.ok()) {
    if (reply.status == 416) return Status(EIO, what + ": past the object's end (" + s.message() + ")");
    return s;
  }
  if (reply.status == 206) {
    // "bytes START-END/TOTAL"
    std::string_view cr = reply.content_range;
    std::string expect = "bytes " + std::to_string(offset) + "-";
    if (cr.substr(0, expect.size()) != expect)
      return Status(EIO, what + ": the server sent another range (" + std::string(cr) + ")");
  } else if (offset != 0) {  // a 200 is the whole object: right only from offset 0
    return Status(EIO, what + ": the server ignored the range (HTTP " + std::to_string(reply.status) + ")");
  }
  if (reply.received != len)
    return Status(EIO, what + ": the object is shorter (" + std::to_string(reply.received) +
                           " bytes there)");
  return Status::Ok();
}

Result<uint64_t> S3ObjectStore::Head(const std::string& key) {
  MUSCLE_RETURN_IF_ERROR(CheckKeyText(key, false, "key"));
  Call call;
  call.what = "HEAD";
  call.method = "HEAD";
  call.key = FullKey(key);
  Reply reply;
  MUSCLE_RETURN_IF_ERROR(Execute(call, &reply));
  if (reply.content_length < 0)
    return Status(EIO, "S3 HEAD " + Name(call.key) + ": no Content-Length in the answer");
  return uint64_t(reply.content_length);
}

Status S3ObjectStore::Delete(const std::string& key) {
  MUSCLE_RETURN_IF_ERROR(CheckKeyText(key, false, "key"));
  Call call;
  call.what = "DELETE";
  call.method = "DELETE";
  call.key = FullKey(key);
  Reply reply;
  Status s = Execute(call, &reply);
  if (s.err() == ENOENT && reply.code != "NoSuchBucket") return Status::Ok();
  return s;
}

Result<std::vector<ObjectInfo>> S3ObjectStore::List(const std::string& prefix) {
  if (!prefix.empty()) {
    bool ok = prefix.front() != '/';
    for (char c : prefix) ok = ok && KeyChar(c);
    if (!ok) return Status(EINVAL, "bad S3 list prefix '" + prefix + "'");
  }
  std::string strip = config_.prefix.empty() ? "" : config_.prefix + "/";
  std::string full = strip + prefix;
  std::vector<ObjectInfo> out;
  std::string token;
  for (int page = 1;; page++) {
    Call call;
    call.what = "LIST (page " + std::to_string(page) + ")";
    call.method = "GET";
    call.key = "";
    call.query = {{"list-type", "2"}, {"max-keys", std::to_string(config_.list_page_size)}};
    call.query.emplace_back("prefix", full);
    if (!token.empty()) call.query.emplace_back("continuation-token", token);
    Reply reply;
    MUSCLE_RETURN_IF_ERROR(Execute(call, &reply));
    std::string_view xml = reply.body;
    std::string what = "S3 LIST " + Name(full) + " (page " + std::to_string(page) + ")";
    size_t pos = 0;
    std::string_view block;
    while (XmlFind(xml, "Contents", &pos, &block)) {
      size_t p = 0;
      std::string_view key, size;
      if (!XmlFind(block, "Key", &p, &key)) return Status(EIO, what + ": a <Contents> without <Key>");
      p = 0;
      if (!XmlFind(block, "Size", &p, &size)) return Status(EIO, what + ": a <Contents> without <Size>");
      std::string k = XmlDecode(key);
      if (k.compare(0, strip.size(), strip) != 0) continue;  // not below our prefix
      std::string sz(size);
      char* end = nullptr;
      unsigned long long n = std::strtoull(sz.c_str(), &end, 10);
      if (sz.empty() || *end != '\0') return Status(EIO, what + ": a bad <Size> for " + k);
      out.push_back({k.substr(strip.size()), uint64_t(n)});
    }
    pos = 0;
    std::string_view truncated, next;
    if (!XmlFind(xml, "IsTruncated", &pos, &truncated) || truncated != "true") break;
    pos = 0;
    if (!XmlFind(xml, "NextContinuationToken", &pos, &next) || next.empty())
      return Status(EIO, what + ": truncated without a NextContinuationToken");
    std::string fresh = XmlDecode(next);
    if (fresh == token) return Status(EIO, what + ": the same continuation token twice");
    token = fresh;
  }
  std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
  return out;
}

Status S3ObjectStore::CreateBucket() {
  Call call;
  call.what = "CreateBucket";
  call.method = "PUT";
  call.key = "";
  std::string body;
  if (config_.region != "us-east-1") {
    body = "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
           "<LocationConstraint>" +
           XmlEscape(config_.region) + "</LocationConstraint></CreateBucketConfiguration>";
    call.headers = {{"Content-Type", "application/xml"}};
  }
  call.body = body;
  Reply reply;
  Status s = Execute(call, &reply);
  if (!s.ok() && reply.code == "BucketAlreadyOwnedByYou") return Status::Ok();
  return s;
}

// ---------------------------------------------------------------------------
// s3:// URLs and credentials

Status CheckBucketName(std::string_view name) {
  auto bad = [&](const char* why) {
    return Status(EINVAL, "bad S3 bucket name '" + std::string(name) + "': " + why);
  };
  if (name.size() < 3 || name.size() > 63) return bad("it must have 3 to 63 characters");
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || IsDigit(c) || c == '.' || c == '-'))
      return bad("use only lower-case letters, digits, '.' and '-'");
  if (!IsAlnum(name.front()) || !IsAlnum(name.back()))
    return bad("it must start and end with a letter or a digit");
  if (name.find("..") != std::string_view::npos) return bad("no \"..\"");
  int dots = 0;
  bool digits_only = true;
  for (char c : name) {
    dots += c == '.';
    digits_only = digits_only && (IsDigit(c) || c == '.');
  }
  if (dots == 3 && digits_only) return bad("it must not look like an IP address");
  return Status::Ok();
}

Result<BucketUrl> ParseBucketUrl(std::string_view url) {
  if (url.substr(0, 5) != "s3://")
    return Status(EINVAL, "bad S3 URL '" + std::string(url) + "': expected s3://BUCKET[/PREFIX]");
  std::string_view rest = url.substr(5);
  size_t slash = rest.find('/');
  BucketUrl out;
  out.bucket = rest.substr(0, slash);
  if (slash != std::string_view::npos) out.prefix = rest.substr(slash + 1);
  while (!out.prefix.empty() && out.prefix.back() == '/') out.prefix.pop_back();
  Status s = CheckBucketName(out.bucket);
  if (!s.ok()) return Status(EINVAL, s.message() + " (in " + std::string(url) + ")");
  s = CheckKeyText(out.prefix, true, "prefix");
  if (!s.ok()) return Status(EINVAL, s.message() + " (in " + std::string(url) + ")");
  return out;
}

namespace {

// The file's text, read only if this user alone could have written or read
// it (common/fs_util.h's checks); every refusal is EACCES here.
Result<std::string> ReadCredentialsFile(const std::string& path) {
  auto text = ReadOwnerOnlyFile(path, "S3 credentials file", 64u << 10);
  if (!text.ok() && (text.err() == EPERM || text.err() == EINVAL || text.err() == ELOOP))
    return Status(EACCES, text.status().message());
  return text;
}

}  // namespace

Result<Credentials> LoadCredentials(const std::string& file) {
  Credentials c;
  if (file.empty()) {
    const char* id = getenv("AWS_ACCESS_KEY_ID");
    const char* secret = getenv("AWS_SECRET_ACCESS_KEY");
    const char* token = getenv("AWS_SESSION_TOKEN");
    if ((!id || !*id) && (!secret || !*secret))
      return Status(EINVAL,
                    "no S3 credentials: give a credentials file, or set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY");
    if (!id || !*id) return Status(EINVAL, "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not");
    if (!secret || !*secret)
      return Status(EINVAL, "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
    c.access_key = id;
    c.secret_key = secret;
    if (token) c.session_token = token;
    return c;
  }
  auto text = ReadCredentialsFile(file);
  if (!text.ok()) return text.status();
  std::string_view all = *text;
  bool in_default = true;  // keys before any section count
  int line_no = 0;
  Status bad;
  size_t pos = 0;
  while (pos <= all.size() && bad.ok()) {
    size_t eol = all.find('\n', pos);
    if (eol == std::string_view::npos) eol = all.size();
    std::string_view line = Trim(all.substr(pos, eol - pos));
    pos = eol + 1;
    line_no++;
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line[0] == '[') {
      if (line.back() != ']') {
        bad = Status(EINVAL, file + ":" + std::to_string(line_no) + ": a section header without ']'");
        break;
      }
      in_default = Trim(line.substr(1, line.size() - 2)) == "default";
      continue;
    }
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      bad = Status(EINVAL, file + ":" + std::to_string(line_no) + ": expected NAME = VALUE");
      break;
    }
    if (!in_default) continue;
    std::string name = Lower(Trim(line.substr(0, eq)));
    std::string_view value = Trim(line.substr(eq + 1));
    if (name == "aws_access_key_id") c.access_key = value;
    else if (name == "aws_secret_access_key") c.secret_key = value;
    else if (name == "aws_session_token") c.session_token = value;
  }
  OPENSSL_cleanse(text->data(), text->size());
  if (!bad.ok()) return bad;
  if (c.access_key.empty() || c.secret_key.empty())
    return Status(EINVAL, "S3 credentials file " + file + " has no " +
                              (c.access_key.empty() ? "aws_access_key_id" : "aws_secret_access_key") +
                              " (in [default] or before any section)");
  return c;
}

}  // namespace muscle::s3
