// SigV4 (s3/sigv4.h) against AWS's published values: the four examples of
// the S3 API reference, "Signature Calculations for the Authorization
// Header: Transferring Payload in a Single Chunk" (examplebucket,
// AKIAIOSFODNN7EXAMPLE, 20130524T000000Z, us-east-1), cases of AWS's
// aws-sig-v4-test-suite (AKIDEXAMPLE, 20150830T123600Z, service "service"),
// and the signing key of the general reference's "derive a signing key"
// example. Every expected string is the published one, copied literally.
//
// Also the pure parts of the S3 client (s3/s3_client.h): where a request
// goes in both addressing styles, s3:// URLs, bucket names, credentials.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "s3/s3_client.h"
#include "s3/sigv4.h"
#include "tests/test_util.h"

using namespace muscle;
using namespace muscle::s3;

namespace {

const Credentials kS3DocKeys{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
const SigningScope kS3DocScope{"us-east-1", "s3", "20130524T000000Z"};
const char* kS3DocHost = "examplebucket.s3.amazonaws.com";

const Credentials kSuiteKeys{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};
const SigningScope kSuiteScope{"us-east-1", "service", "20150830T123600Z"};

SigningRequest SuiteGet(std::string path, ParamList query) {
  return {"GET", std::move(path), std::move(query),
          {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", "20150830T123600Z"}},
          kEmptyPayloadHash};
}

}  // namespace

TEST_CASE("sigv4: S3 example GET Object (Range bytes=0-9)", "[sigv4]") {
  SigningRequest r{"GET",
                   "/test.txt",
                   {},
                   {{"Host", kS3DocHost},
                    {"Range", "bytes=0-9"},
                    {"x-amz-content-sha256", kEmptyPayloadHash},
                    {"x-amz-date", "20130524T000000Z"}},
                   kEmptyPayloadHash};
  Signed s = Sign(r, kS3DocKeys, kS3DocScope);
  CHECK(s.canonical_request ==
        "GET\n"
        "/test.txt\n"
        "\n"
        "host:examplebucket.s3.amazonaws.com\n"
        "range:bytes=0-9\n"
        "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        "x-amz-date:20130524T000000Z\n"
        "\n"
        "host;range;x-amz-content-sha256;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(s.string_to_sign ==
        "AWS4-HMAC-SHA256\n"
        "20130524T000000Z\n"
        "20130524/us-east-1/s3/aws4_request\n"
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
  CHECK(s.signature == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  CHECK(s.authorization ==
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST_CASE("sigv4: S3 example PUT Object (test$file.text)", "[sigv4]") {
  std::string payload = Sha256Hex("Welcome to Amazon S3.");
  REQUIRE(payload == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  // Given out of order and in mixed case: canonicalization sorts them.
  SigningRequest r{"PUT",
                   "/test$file.text",
                   {},
                   {{"x-amz-storage-class", "REDUCED_REDUNDANCY"},
                    {"Host", kS3DocHost},
                    {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                    {"x-amz-date", "20130524T000000Z"},
                    {"x-amz-content-sha256", payload}},
                   payload};
  Signed s = Sign(r, kS3DocKeys, kS3DocScope);
  CHECK(s.canonical_request ==
        "PUT\n"
        "/test%24file.text\n"
        "\n"
        "date:Fri, 24 May 2013 00:00:00 GMT\n"
        "host:examplebucket.s3.amazonaws.com\n"
        "x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072\n"
        "x-amz-date:20130524T000000Z\n"
        "x-amz-storage-class:REDUCED_REDUNDANCY\n"
        "\n"
        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n"
        "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  CHECK(s.string_to_sign ==
        "AWS4-HMAC-SHA256\n"
        "20130524T000000Z\n"
        "20130524/us-east-1/s3/aws4_request\n"
        "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d");
  CHECK(s.signature == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
  CHECK(s.signed_headers == "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class");
}

TEST_CASE("sigv4: S3 example GET Bucket Lifecycle", "[sigv4]") {
  SigningRequest r{"GET",
                   "/",
                   {{"lifecycle", ""}},
                   {{"Host", kS3DocHost},
                    {"x-amz-content-sha256", kEmptyPayloadHash},
                    {"x-amz-date", "20130524T000000Z"}},
                   kEmptyPayloadHash};
  Signed s = Sign(r, kS3DocKeys, kS3DocScope);
  CHECK(s.canonical_request ==
        "GET\n"
        "/\n"
        "lifecycle=\n"
        "host:examplebucket.s3.amazonaws.com\n"
        "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        "x-amz-date:20130524T000000Z\n"
        "\n"
        "host;x-amz-content-sha256;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(s.string_to_sign ==
        "AWS4-HMAC-SHA256\n"
        "20130524T000000Z\n"
        "20130524/us-east-1/s3/aws4_request\n"
        "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca");
  CHECK(s.signature == "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

TEST_CASE("sigv4: S3 example GET Bucket (List Objects), parameters given unsorted", "[sigv4]") {
  SigningRequest r{"GET",
                   "/",
                   {{"prefix", "J"}, {"max-keys", "2"}},
                   {{"Host", kS3DocHost},
                    {"x-amz-content-sha256", kEmptyPayloadHash},
                    {"x-amz-date", "20130524T000000Z"}},
                   kEmptyPayloadHash};
  Signed s = Sign(r, kS3DocKeys, kS3DocScope);
  CHECK(s.canonical_request ==
        "GET\n"
        "/\n"
        "max-keys=2&prefix=J\n"
        "host:examplebucket.s3.amazonaws.com\n"
        "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        "x-amz-date:20130524T000000Z\n"
        "\n"
        "host;x-amz-content-sha256;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(s.string_to_sign ==
        "AWS4-HMAC-SHA256\n"
        "20130524T000000Z\n"
        "20130524/us-east-1/s3/aws4_request\n"
        "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7");
  CHECK(s.signature == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

TEST_CASE("sigv4: the signing key of AWS's derivation example", "[sigv4]") {
  auto key = SigningKey("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                        {"us-east-1", "iam", "20150830T123600Z"});
  CHECK(HexEncode(key.data(), key.size()) ==
        "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
}

TEST_CASE("sigv4: test suite get-vanilla", "[sigv4]") {
  Signed s = Sign(SuiteGet("/", {}), kSuiteKeys, kSuiteScope);
  CHECK(s.canonical_request ==
        "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(s.string_to_sign ==
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
        "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
  CHECK(s.authorization ==
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

TEST_CASE("sigv4: test suite get-vanilla-query-order-key-case", "[sigv4]") {
  Signed s = Sign(SuiteGet("/", {{"Param2", "value2"}, {"Param1", "value1"}}), kSuiteKeys,
                  kSuiteScope);
  CHECK(s.canonical_request ==
        "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\n"
        "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(s.string_to_sign ==
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
        "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0");
  CHECK(s.signature == "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}

TEST_CASE("sigv4: test suite get-vanilla-query-order-key (same name: sorted by value)", "[sigv4]") {
  Signed s = Sign(SuiteGet("/", {{"Param1", "value2"}, {"Param1", "Value1"}}), kSuiteKeys,
                  kSuiteScope);
  CHECK(s.canonical_request.find("\nParam1=Value1&Param1=value2\n") != std::string::npos);
  CHECK(s.signature == "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1");
}

TEST_CASE("sigv4: test suite get-vanilla-utf8-query and get-unreserved", "[sigv4]") {
  Signed utf8 = Sign(SuiteGet("/", {{"\xe1\x88\xb4", "bar"}}), kSuiteKeys, kSuiteScope);
  CHECK(utf8.canonical_request.find("\n%E1%88%B4=bar\n") != std::string::npos);
  CHECK(utf8.signature == "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04");

  std::string unreserved = "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  Signed u = Sign(SuiteGet(unreserved, {}), kSuiteKeys, kSuiteScope);
  CHECK(u.canonical_request.find("\n" + unreserved + "\n") != std::string::npos);
  CHECK(u.signature == "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f");
}

TEST_CASE("sigv4: test suite get-space (a path segment encoded, '/' kept)", "[sigv4]") {
  Signed s = Sign(SuiteGet("/example space/", {}), kSuiteKeys, kSuiteScope);
  CHECK(s.canonical_request.find("\n/example%20space/\n") != std::string::npos);
  CHECK(s.signature == "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741");
}

TEST_CASE("sigv4: test suite header canonicalization (duplicates, order, trim)", "[sigv4]") {
  // get-header-key-duplicate: values of a repeated name joined in order.
  SigningRequest dup = SuiteGet("/", {});
  dup.headers = {{"Host", "example.amazonaws.com"},
                 {"My-Header1", "value2"},
                 {"My-Header1", "value2"},
                 {"My-Header1", "value1"},
                 {"X-Amz-Date", "20150830T123600Z"}};
  Signed d = Sign(dup, kSuiteKeys, kSuiteScope);
  CHECK(d.canonical_request.find("\nmy-header1:value2,value2,value1\n") != std::string::npos);
  CHECK(d.signature == "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea");

  // get-header-value-trim: outer blanks dropped, inner runs collapsed.
  SigningRequest trim = SuiteGet("/", {});
  trim.headers = {{"Host", "example.amazonaws.com"},
                  {"My-Header1", " value1"},
                  {"My-Header2", " \"a   b   c\""},
                  {"X-Amz-Date", "20150830T123600Z"}};
  Signed t = Sign(trim, kSuiteKeys, kSuiteScope);
  CHECK(t.canonical_request ==
        "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\n"
        "x-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(t.signature == "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736");
}

TEST_CASE("sigv4: test suite post-sts-header-before (a session token is signed)", "[sigv4]") {
  const char* token =
      "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPf"
      "IeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7W"
      "Z0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8F"
      "DrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
  SigningRequest r{"POST",
                   "/",
                   {},
                   {{"Host", "example.amazonaws.com"},
                    {"X-Amz-Date", "20150830T123600Z"},
                    {"X-Amz-Security-Token", token}},
                   kEmptyPayloadHash};
  Signed s = Sign(r, kSuiteKeys, kSuiteScope);
  CHECK(s.string_to_sign ==
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
        "c237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6");
  CHECK(s.authorization ==
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date;x-amz-security-token, "
        "Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead");
}

TEST_CASE("sigv4: URI encoding, S3 style, and the x-amz-date format", "[sigv4]") {
  CHECK(UriEncode("a b+c/d%e~_.-", true) == "a%20b%2Bc%2Fd%25e~_.-");
  CHECK(CanonicalUri("/bucket/packs/a b/\xc3\xbc") == "/bucket/packs/a%20b/%C3%BC");
  CHECK(CanonicalUri("/a//b/../c") == "/a//b/../c");  // S3: no normalization
  CHECK(CanonicalUri("") == "/");
  CHECK(CanonicalQueryString({{"continuation-token", "1/a+b="}, {"list-type", "2"}}) ==
        "continuation-token=1%2Fa%2Bb%3D&list-type=2");
  CHECK(AmzDate(1440938160) == "20150830T123600Z");
  CHECK(AmzDate(0) == "19700101T000000Z");
}

// ---------------------------------------------------------------------------
// The S3 client's pure parts.

TEST_CASE("s3 target: path style on an explicit endpoint, port in Host", "[sigv4][s3config]") {
  S3Config c;
  c.endpoint = "http://127.0.0.1:7480";
  c.bucket = "mybucket";
  auto t = TargetFor(c, "pre/packs/0001");
  REQUIRE(t.ok());
  CHECK(t->url == "http://127.0.0.1:7480/mybucket/pre/packs/0001");
  CHECK(t->host == "127.0.0.1:7480");
  CHECK(t->path == "/mybucket/pre/packs/0001");
  auto b = TargetFor(c, "");
  REQUIRE(b.ok());
  CHECK(b->url == "http://127.0.0.1:7480/mybucket");
  CHECK(b->path == "/mybucket");

  c.endpoint = "https://s3.example.net:443/";
  t = TargetFor(c, "k");
  REQUIRE(t.ok());
  CHECK(t->url == "https://s3.example.net:443/mybucket/k");
  CHECK(t->host == "s3.example.net");  // the default port is not in Host

  c.endpoint = "http://[::1]:9000";
  t = TargetFor(c, "k");
  REQUIRE(t.ok());
  CHECK(t->url == "http://[::1]:9000/mybucket/k");
  CHECK(t->host == "[::1]:9000");
}

TEST_CASE("s3 target: virtual-host style, and AWS by default", "[sigv4][s3config]") {
  S3Config c;
  c.endpoint = "https://s3.example.net";
  c.bucket = "mybucket";
  c.addressing = Addressing::kVirtualHost;
  auto t = TargetFor(c, "a b/c");
  REQUIRE(t.ok());
  CHECK(t->url == "https://mybucket.s3.example.net/a%20b/c");
  CHECK(t->host == "mybucket.s3.example.net");
  CHECK(t->path == "/a b/c");
  auto b = TargetFor(c, "");
  REQUIRE(b.ok());
  CHECK(b->url == "https://mybucket.s3.example.net/");
  CHECK(b->path == "/");

  c.endpoint = "http://minio.local:9000";
  t = TargetFor(c, "k");
  REQUIRE(t.ok());
  CHECK(t->url == "http://mybucket.minio.local:9000/k");
  CHECK(t->host == "mybucket.minio.local:9000");

  S3Config aws;
  aws.bucket = "mybucket";
  aws.region = "eu-west-1";
  t = TargetFor(aws, "k");
  REQUIRE(t.ok());
  CHECK(t->url == "https://mybucket.s3.eu-west-1.amazonaws.com/k");
  CHECK(t->host == "mybucket.s3.eu-west-1.amazonaws.com");
  aws.addressing = Addressing::kPath;
  t = TargetFor(aws, "k");
  REQUIRE(t.ok());
  CHECK(t->url == "https://s3.eu-west-1.amazonaws.com/mybucket/k");
}

TEST_CASE("s3 target: bad endpoints are EINVAL", "[sigv4][s3config]") {
  S3Config c;
  c.bucket = "mybucket";
  for (const char* e : {"127.0.0.1:7480", "ftp://host", "http://", "http://host:0",
                        "http://host:99999", "http://host:80x", "http://host/path",
                        "http://user@host", "http://[::1"}) {
    c.endpoint = e;
    auto t = TargetFor(c, "k");
    INFO(e);
    CHECK(t.err() == EINVAL);
  }
}

TEST_CASE("s3 store: Open checks the config and joins prefix and key once", "[sigv4][s3config]") {
  S3Config c;
  c.endpoint = "http://127.0.0.1:7480";
  c.bucket = "mybucket";
  c.prefix = "/a/b/";
  c.credentials = {"AK", "SK", ""};
  auto s = S3ObjectStore::Open(c);
  REQUIRE(s.ok());
  CHECK((*s)->config().prefix == "a/b");
  CHECK((*s)->Describe() == "s3://mybucket/a/b at http://127.0.0.1:7480");
  CHECK((*s)->Put("bad key", "x").err() == EINVAL);
  CHECK((*s)->Put("/lead", "x").err() == EINVAL);
  CHECK((*s)->Head("").err() == EINVAL);

  c.bucket = "My_Bucket";
  CHECK(S3ObjectStore::Open(c).err() == EINVAL);
  c.bucket = "mybucket";
  c.credentials = {};
  CHECK(S3ObjectStore::Open(c).err() == EINVAL);
}

TEST_CASE("s3 url: s3://BUCKET/PREFIX", "[sigv4][s3config]") {
  auto u = ParseBucketUrl("s3://my-bucket.1/some/prefix/");
  REQUIRE(u.ok());
  CHECK(u->bucket == "my-bucket.1");
  CHECK(u->prefix == "some/prefix");
  u = ParseBucketUrl("s3://abc");
  REQUIRE(u.ok());
  CHECK(u->bucket == "abc");
  CHECK(u->prefix == "");
  u = ParseBucketUrl("s3://abc/");
  REQUIRE(u.ok());
  CHECK(u->prefix == "");
  for (const char* bad : {"http://abc", "s3://", "s3://ab", "s3://Abc", "s3://a_b", "s3://-abc",
                          "s3://abc-", "s3://a..b", "s3://192.168.1.1", "s3://abc/x//y",
                          "s3://abc/x y",
                          "s3://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}) {
    INFO(bad);
    auto r = ParseBucketUrl(bad);
    CHECK(r.err() == EINVAL);
    CHECK(!r.status().message().empty());
  }
  CHECK(CheckBucketName(std::string(63, 'a')).ok());
}

TEST_CASE("s3 credentials: a private file in the shared-credentials format", "[sigv4][s3config]") {
  test::TempDir dir;
  std::string path = dir.path + "/credentials";
  std::ofstream(path) << "# test keys\n[default]\naws_access_key_id = AKIDFILE\n"
                         "aws_secret_access_key=secret/with+chars\n"
                         "  aws_session_token = tok  \n\n[other]\naws_access_key_id = NOTTHIS\n";
  REQUIRE(chmod(path.c_str(), 0600) == 0);
  auto c = LoadCredentials(path);
  REQUIRE(c.ok());
  CHECK(c->access_key == "AKIDFILE");
  CHECK(c->secret_key == "secret/with+chars");
  CHECK(c->session_token == "tok");

  REQUIRE(chmod(path.c_str(), 0640) == 0);
  c = LoadCredentials(path);
  CHECK(c.err() == EACCES);
  CHECK(c.status().message().find("chmod 600") != std::string::npos);
  CHECK(c.status().message().find("secret/with+chars") == std::string::npos);

  std::string fifo = dir.path + "/fifo";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  CHECK(LoadCredentials(fifo).err() == EACCES);

  std::string partial = dir.path + "/partial";
  std::ofstream(partial) << "aws_access_key_id = AKID\n";
  REQUIRE(chmod(partial.c_str(), 0600) == 0);
  c = LoadCredentials(partial);
  CHECK(c.err() == EINVAL);
  CHECK(c.status().message().find("aws_secret_access_key") != std::string::npos);
  CHECK(LoadCredentials(dir.path + "/missing").err() == ENOENT);
}

TEST_CASE("s3 credentials: the environment when no file is named", "[sigv4][s3config]") {
  auto keep = [](const char* name) {
    const char* v = getenv(name);
    return std::pair<std::string, bool>(v ? v : "", v != nullptr);
  };
  auto id = keep("AWS_ACCESS_KEY_ID"), secret = keep("AWS_SECRET_ACCESS_KEY"),
       token = keep("AWS_SESSION_TOKEN");
  unsetenv("AWS_ACCESS_KEY_ID");
  unsetenv("AWS_SECRET_ACCESS_KEY");
  unsetenv("AWS_SESSION_TOKEN");
  auto none = LoadCredentials("");
  CHECK(none.err() == EINVAL);
  CHECK(none.status().message().find("AWS_ACCESS_KEY_ID") != std::string::npos);
  setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
  CHECK(LoadCredentials("").err() == EINVAL);
  setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
  setenv("AWS_SESSION_TOKEN", "envtoken", 1);
  auto c = LoadCredentials("");
  REQUIRE(c.ok());
  CHECK(c->access_key == "AKIDENV");
  CHECK(c->secret_key == "envsecret");
  CHECK(c->session_token == "envtoken");
  auto restore = [](const char* name, const std::pair<std::string, bool>& v) {
    if (v.second) setenv(name, v.first.c_str(), 1);
    else unsetenv(name);
  };
  restore("AWS_ACCESS_KEY_ID", id);
  restore("AWS_SECRET_ACCESS_KEY", secret);
  restore("AWS_SESSION_TOKEN", token);
}
