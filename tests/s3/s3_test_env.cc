// Test buckets from the with-rgw.sh environment (s3_test_env.h).
#include "tests/s3/s3_test_env.h"

#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <random>

namespace muscle::test {

namespace {
std::string Env(const char* name) {
  const char* v = getenv(name);
  return v ? v : "";
}
}  // namespace

muscle::s3::S3Config S3ConfigFromEnv() {
  muscle::s3::S3Config c;
  c.endpoint = Env("MUSCLE_S3_ENDPOINT");
  if (c.endpoint.empty())
    FAIL("MUSCLE_S3_ENDPOINT is not set: the S3 tests need a Ceph RGW; run them through "
         "tests/s3/with-rgw.sh, e.g. tests/s3/with-rgw.sh build/tests/s3_tests");
  c.credentials.access_key = Env("MUSCLE_S3_ACCESS_KEY");
  c.credentials.secret_key = Env("MUSCLE_S3_SECRET_KEY");
  REQUIRE(!c.credentials.access_key.empty());
  REQUIRE(!c.credentials.secret_key.empty());
  std::string region = Env("MUSCLE_S3_REGION");
  if (!region.empty()) c.region = region;
  return c;
}

std::string UniqueBucketName() {
  static std::atomic<int> counter{0};
  static const uint32_t salt = std::random_device{}();
  char buf[64];
  snprintf(buf, sizeof buf, "muscle-test-%d-%d-%06x", int(getpid()), counter++, salt & 0xffffff);
  return buf;
}

std::unique_ptr<muscle::s3::S3ObjectStore> NewTestBucket(std::string prefix) {
  return NewTestBucket(std::move(prefix), [](muscle::s3::S3Config&) {});
}

std::unique_ptr<muscle::s3::S3ObjectStore> NewTestBucket(
    std::string prefix, const std::function<void(muscle::s3::S3Config&)>& adjust) {
  muscle::s3::S3Config c = S3ConfigFromEnv();
  c.bucket = UniqueBucketName();
  c.prefix = std::move(prefix);
  adjust(c);
  auto store = muscle::s3::S3ObjectStore::Open(c);
  INFO(store.status().ToString());
  REQUIRE(store.ok());
  Status created = (*store)->CreateBucket();
  INFO(created.ToString());
  REQUIRE(created.ok());
  return std::move(*store);
}

}  // namespace muscle::test
