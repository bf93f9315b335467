// S3 test buckets from the environment that tests/s3/with-rgw.sh sets up
// (MUSCLE_S3_ENDPOINT, MUSCLE_S3_ACCESS_KEY, MUSCLE_S3_SECRET_KEY,
// MUSCLE_S3_REGION): each call makes a fresh bucket with a unique name, so
// tests never see each other's objects. Buckets are not removed: the
// cluster with-rgw.sh starts is thrown away after the run.
//
// Without MUSCLE_S3_ENDPOINT the calling test FAILS (Catch2 FAIL) with a
// message saying to run it through with-rgw.sh: an S3 test that silently
// skips would pass having tested nothing. Call from the test's thread.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "s3/s3_client.h"

namespace muscle::test {

// The environment's endpoint, keys and region; bucket and prefix empty.
muscle::s3::S3Config S3ConfigFromEnv();
// A bucket name not used before: "muscle-test-PID-N-RANDOM".
std::string UniqueBucketName();
// An S3ObjectStore on a newly created bucket, objects under `prefix`.
std::unique_ptr<muscle::s3::S3ObjectStore> NewTestBucket(std::string prefix = "t");
// The same, with the config adjusted first (part size, attempts, ...).
std::unique_ptr<muscle::s3::S3ObjectStore> NewTestBucket(
    std::string prefix, const std::function<void(muscle::s3::S3Config&)>& adjust);

}  // namespace muscle::test
