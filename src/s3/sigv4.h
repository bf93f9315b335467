// AWS Signature Version 4 for S3 requests signed in the Authorization
// header (the payload in a single chunk): the canonical request, the string
// to sign, the signing key and the header value, as pure functions on
// OpenSSL's libcrypto (SHA-256, HMAC-SHA256).
//
// The steps follow AWS's "Signature Calculations for the Authorization
// Header: Transferring Payload in a Single Chunk" (S3 API reference) and
// are tested against its published examples and against AWS's SigV4 test
// suite (tests/s3/sigv4_test.cc). S3 differs from the other services in one
// place only: the path is not normalized ("//", "." and ".." stay) and each
// segment is URI-encoded once, with '/' kept.
//
// The caller builds the request's headers, including host, x-amz-date,
// x-amz-content-sha256 and (with temporary credentials)
// x-amz-security-token; every header given is signed. The same encoded
// path and query string (CanonicalUri, CanonicalQueryString) must be what
// goes on the wire: S3 recomputes the signature from what it receives.
//
// Nothing here keeps state or logs; the secret key appears only in
// SigningKey's input. Every function is thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace muscle::s3 {

struct Credentials {
  std::string access_key;
  std::string secret_key;
  std::string session_token;  // empty unless temporary (STS) credentials
};

// Name/value pairs in the order given. Query parameters are unencoded
// ("prefix", "a b"); header names may be in any case.
using ParamList = std::vector<std::pair<std::string, std::string>>;

struct SigningRequest {
  std::string method;        // "GET", "PUT", ...
  std::string path;          // unencoded: "/bucket/key" or "/key"
  ParamList query;           // unencoded names and values
  ParamList headers;         // every one is signed
  std::string payload_hash;  // hex SHA-256 of the body, or "UNSIGNED-PAYLOAD"
};

struct SigningScope {
  std::string region;    // "us-east-1"
  std::string service;   // "s3"
  std::string amz_date;  // "20130524T000000Z", as in the x-amz-date header
};

// Every intermediate result, so that tests can compare each step with the
// published one.
struct Signed {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signed_headers;  // "host;range;x-amz-content-sha256;x-amz-date"
  std::string signature;       // 64 lowercase hex digits
  std::string authorization;   // the Authorization header's value
};

// Percent-encodes every byte except A-Z a-z 0-9 - . _ ~ (and '/' unless
// encode_slash), with upper-case hex digits: AWS's UriEncode.
std::string UriEncode(std::string_view in, bool encode_slash);
// S3's canonical URI: each '/'-separated segment encoded, '/' kept, no
// normalization; "" becomes "/".
std::string CanonicalUri(std::string_view path);
// Names and values encoded, sorted by name then value, joined with '&';
// a parameter without a value is "name=".
std::string CanonicalQueryString(const ParamList& query);
// "name:value\n" per header: names lower-cased, values trimmed with inner
// runs of spaces collapsed, repeated names joined with ',' in the order
// given, sorted by name. Also sets *signed_headers ("a;b;c").
std::string CanonicalHeaders(const ParamList& headers, std::string* signed_headers);
std::string CanonicalRequest(const SigningRequest& request, std::string* signed_headers = nullptr);
// "20130524/us-east-1/s3/aws4_request"
std::string CredentialScope(const SigningScope& scope);
std::string StringToSign(const SigningScope& scope, std::string_view canonical_request);
// HMAC chain "AWS4" + secret -> date -> region -> service -> "aws4_request".
std::array<uint8_t, 32> SigningKey(std::string_view secret_key, const SigningScope& scope);
// The whole computation; authorization is
// "AWS4-HMAC-SHA256 Credential=AK/scope, SignedHeaders=..., Signature=...".
Signed Sign(const SigningRequest& request, const Credentials& credentials,
            const SigningScope& scope);

// "YYYYMMDDTHHMMSSZ" (UTC) for x-amz-date.
std::string AmzDate(time_t t);
// Lower-case hex of SHA-256 (the x-amz-content-sha256 value of a body).
std::string Sha256Hex(std::string_view data);
std::string HexEncode(const uint8_t* data, size_t len);
// SHA-256 of the empty string, the payload hash of a request without body.
inline constexpr const char* kEmptyPayloadHash =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

}  // namespace muscle::s3
