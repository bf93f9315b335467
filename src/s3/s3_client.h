// An ObjectStore (s3/object_store.h) on an S3 bucket: HTTP(S) over libcurl,
// every request signed with SigV4 (s3/sigv4.h) by this code (not by curl's
// CURLOPT_AWS_SIGV4, which in 7.88 does not send x-amz-content-sha256: Ceph
// RGW then refuses with 403).
//
// Requests. Every request carries x-amz-content-sha256 (the hex SHA-256 of
// its body) and an explicit Host header; both are signed with the path and
// query string exactly as sent. Put is one PUT up to part_size bytes and a
// multipart upload above it (CreateMultipartUpload, UploadPart with each
// part's ETag, CompleteMultipartUpload; AbortMultipartUpload when a step
// fails). GetRange is a ranged GET that writes the body straight into the
// caller's buffer. List is ListObjectsV2, page after page (continuation
// tokens).
//
// Failures. A request is tried up to max_attempts times when the failure
// may pass: a network error, a timeout, HTTP 5xx, 429, 408, and S3's
// SlowDown, RequestTimeout and InternalError codes; back-off doubles from
// backoff_initial to backoff_max with jitter (each wait a random point in
// its upper half), and every retry is logged. Other answers are final at
// once: 404 is ENOENT, 403 EACCES (RequestTimeTooSkewed says the clock is
// off), others EIO; a timeout after the last attempt is ETIMEDOUT. A
// stalled transfer (below low_speed_bytes per second for low_speed_time)
// counts as a timeout. Messages name the operation, bucket and key and
// the S3 error code, never a credential, a signature or a header.
//
// Threading. Every method may be called from any thread, concurrently: each
// request runs on a curl easy handle of its own, taken from a small pool
// under a mutex (handles keep their connections alive between requests).
// curl_global_init runs once per process. The store owns its handles; it
// must outlive every call made on it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "s3/object_store.h"
#include "s3/sigv4.h"

namespace muscle::s3 {

enum class Addressing {
  kAuto,         // path-style for an explicit endpoint, virtual-host for AWS
  kPath,         // http://host:port/bucket/key
  kVirtualHost,  // http://bucket.host:port/key
};

struct S3Config {
  // "http://127.0.0.1:7480", "https://s3.example.net" (scheme, host, an
  // optional port; nothing after the host but an optional '/'). Empty: AWS,
  // https://s3.REGION.amazonaws.com.
  std::string endpoint;
  std::string region = "us-east-1";
  std::string bucket;
  // Objects are named PREFIX/KEY ("" for none); leading and trailing '/'
  // are dropped, so no key has a double slash.
  std::string prefix;
  Addressing addressing = Addressing::kAuto;
  Credentials credentials;
  // Put sends a body of up to part_size bytes as one PUT, a larger one as
  // parts of part_size (S3 wants at least 5 MiB per part but the last; the
  // size grows when 10000 parts would not hold the body).
  size_t part_size = 8u << 20;
  int max_attempts = 5;
  std::chrono::milliseconds backoff_initial{200};
  std::chrono::milliseconds backoff_max{5000};
  std::chrono::milliseconds connect_timeout{5000};
  long low_speed_bytes = 1024;  // a transfer slower than this (bytes/s) ...
  std::chrono::seconds low_speed_time{30};  // ... this long fails
  int list_page_size = 1000;  // ListObjectsV2 max-keys
  // The signing time; empty: the system clock (tests skew it).
  std::function<time_t()> clock;
};

// Counters since the store was made (tests assert that a mechanism fired).
struct S3Stats {
  uint64_t requests = 0;           // HTTP requests sent, retries included
  uint64_t retries = 0;            // requests sent again after a failure
  uint64_t multipart_uploads = 0;  // Puts that went as a multipart upload
};

// Where one request goes; exposed for tests of both addressing styles.
struct RequestTarget {
  std::string url;   // scheme://host[:port] and the encoded path, no query
  std::string host;  // the Host header, signed
  std::string path;  // the unencoded path that is signed: "/bucket/key", "/key"
};
// object_key is the whole key in the bucket (prefix included), "" for the
// bucket itself. EINVAL for a config whose endpoint does not parse.
Result<RequestTarget> TargetFor(const S3Config& config, std::string_view object_key);

class S3ObjectStore final : public ObjectStore {
 public:
  // Checks the config (endpoint, bucket name, prefix, credentials present):
  // EINVAL naming what is wrong. Sends nothing.
  static Result<std::unique_ptr<S3ObjectStore>> Open(S3Config config);
  ~S3ObjectStore() override;
  S3ObjectStore(const S3ObjectStore&) = delete;
  S3ObjectStore& operator=(const S3ObjectStore&) = delete;

  Status Put(const std::string& key, std::string_view body) override;
  Result<std::string> Get(const std::string& key) override;
  Status GetRange(const std::string& key, uint64_t offset, size_t len, char* out) override;
  Result<uint64_t> Head(const std::string& key) override;
  Status Delete(const std::string& key) override;
  Result<std::vector<ObjectInfo>> List(const std::string& prefix) override;
  std::string Describe() const override;
  std::string Location() const override;  // "s3://bucket/prefix"

  // PUT bucket (for tests and setup): OK when it is created or when it
  // already exists and is ours (BucketAlreadyOwnedByYou).
  Status CreateBucket();

  const S3Config& config() const { return config_; }
  S3Stats stats() const;

 private:
  struct Call;   // one request to make (s3_client.cc)
  struct Reply;  // what came back

  explicit S3ObjectStore(S3Config config);
  Status PutMultipart(const std::string& full_key, std::string_view body);
  // Makes the request, retrying what may pass; OK only for a 2xx answer.
  Status Execute(const Call& call, Reply* reply);
  Status Attempt(const Call& call, const std::string& payload_hash, Reply* reply, bool* retry);
  std::string FullKey(const std::string& key) const;
  std::string Name(const std::string& full_key) const;  // "s3://bucket/key"

  void* TakeHandle();
  void ReturnHandle(void* handle);

  S3Config config_;
  std::mutex pool_mu_;
  std::vector<void*> pool_;  // idle CURL* handles, guarded by pool_mu_
  std::atomic<uint64_t> requests_{0}, retries_{0}, multipart_uploads_{0};
};

// "s3://BUCKET" or "s3://BUCKET/PREFIX" (trailing '/' dropped). The bucket
// name follows S3's rules: 3-63 characters of a-z 0-9 '.' '-', starting and
// ending with a letter or digit, no "..". EINVAL with a message otherwise.
struct BucketUrl {
  std::string bucket;
  std::string prefix;  // "" or "a/b"
};
Result<BucketUrl> ParseBucketUrl(std::string_view url);
// EINVAL unless `name` is a valid S3 bucket name (the rules above).
Status CheckBucketName(std::string_view name);

// S3 credentials. With a file: the AWS shared-credentials format
// (aws_access_key_id = ..., aws_secret_access_key = ..., optionally
// aws_session_token = ...; '#' and ';' comments; keys before any section
// or in [default], other sections skipped), read only if it is a regular
// file owned by this user with no permission for group or others (EACCES
// naming the fix otherwise). Without (file empty): AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN from the environment. EINVAL
// when neither gives both keys.
Result<Credentials> LoadCredentials(const std::string& file);

}  // namespace muscle::s3
