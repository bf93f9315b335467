// AWS Signature Version 4 (sigv4.h): string building and libcrypto's
// HMAC-SHA256. Pure functions, no state.
#include "s3/sigv4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <map>

namespace muscle::s3 {

namespace {

constexpr const char* kAlgorithm = "AWS4-HMAC-SHA256";

std::array<uint8_t, 32> Hmac(const void* key, size_t key_len, std::string_view data) {
  std::array<uint8_t, 32> out{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key, int(key_len), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), out.data(), &len);
  return out;
}

bool Unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

char ToLower(char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; }

// Leading and trailing blanks dropped, inner runs of blanks become one
// space (AWS's Trimall).
std::string TrimAll(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  bool blank = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      blank = true;
      continue;
    }
    if (blank && !out.empty()) out += ' ';
    blank = false;
    out += c;
  }
  return out;
}

}  // namespace

std::string HexEncode(const uint8_t* data, size_t len) {
  static const char* kHex = "0123456789abcdef";
  std::string out(len * 2, '0');
  for (size_t i = 0; i < len; i++) {
    out[2 * i] = kHex[data[i] >> 4];
    out[2 * i + 1] = kHex[data[i] & 15];
  }
  return out;
}

std::string Sha256Hex(std::string_view data) {
  uint8_t md[32];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return HexEncode(md, sizeof md);
}

std::string UriEncode(std::string_view in, bool encode_slash) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  out.reserve(in.size() + in.size() / 4);
  for (char ch : in) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (Unreserved(c) || (c == '/' && !encode_slash)) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string CanonicalUri(std::string_view path) {
  if (path.empty()) return "/";
  // Encoding with '/' kept is exactly "each segment encoded, joined by '/'".
  std::string out = UriEncode(path, false);
  if (out[0] != '/') out.insert(out.begin(), '/');
  return out;
}

std::string CanonicalQueryString(const ParamList& query) {
  std::vector<std::pair<std::string, std::string>> encoded;
  encoded.reserve(query.size());
  for (auto& [name, value] : query) encoded.emplace_back(UriEncode(name, true), UriEncode(value, true));
  std::sort(encoded.begin(), encoded.end());
  std::string out;
  for (auto& [name, value] : encoded) {
    if (!out.empty()) out += '&';
    out += name;
    out += '=';
    out += value;
  }
  return out;
}

std::string CanonicalHeaders(const ParamList& headers, std::string* signed_headers) {
  // std::map sorts by lower-case name; values of a repeated name are
  // joined in the order given.
  std::map<std::string, std::string> merged;
  for (auto& [name, value] : headers) {
    std::string lower(name.size(), '\0');
    std::transform(name.begin(), name.end(), lower.begin(), ToLower);
    auto [it, fresh] = merged.try_emplace(lower, TrimAll(value));
    if (!fresh) it->second += "," + TrimAll(value);
  }
  std::string out, names;
  for (auto& [name, value] : merged) {
    out += name + ":" + value + "\n";
    if (!names.empty()) names += ';';
    names += name;
  }
  if (signed_headers) *signed_headers = names;
  return out;
}

std::string CanonicalRequest(const SigningRequest& request, std::string* signed_headers) {
  std::string names;
  std::string headers = CanonicalHeaders(request.headers, &names);
  if (signed_headers) *signed_headers = names;
  return request.method + "\n" + CanonicalUri(request.path) + "\n" +
         CanonicalQueryString(request.query) + "\n" + headers + "\n" + names + "\n" +
         request.payload_hash;
}

std::string CredentialScope(const SigningScope& scope) {
  return scope.amz_date.substr(0, 8) + "/" + scope.region + "/" + scope.service + "/aws4_request";
}

std::string StringToSign(const SigningScope& scope, std::string_view canonical_request) {
  return std::string(kAlgorithm) + "\n" + scope.amz_date + "\n" + CredentialScope(scope) + "\n" +
         Sha256Hex(canonical_request);
}

std::array<uint8_t, 32> SigningKey(std::string_view secret_key, const SigningScope& scope) {
  std::string k = "AWS4" + std::string(secret_key);
  auto date = Hmac(k.data(), k.size(), scope.amz_date.substr(0, 8));
  OPENSSL_cleanse(k.data(), k.size());
  auto region = Hmac(date.data(), date.size(), scope.region);
  auto service = Hmac(region.data(), region.size(), scope.service);
  auto signing = Hmac(service.data(), service.size(), "aws4_request");
  OPENSSL_cleanse(date.data(), date.size());
  OPENSSL_cleanse(region.data(), region.size());
  OPENSSL_cleanse(service.data(), service.size());
  return signing;
}

Signed Sign(const SigningRequest& request, const Credentials& credentials,
            const SigningScope& scope) {
  Signed s;
  s.canonical_request = CanonicalRequest(request, &s.signed_headers);
  s.string_to_sign = StringToSign(scope, s.canonical_request);
  auto key = SigningKey(credentials.secret_key, scope);
  auto mac = Hmac(key.data(), key.size(), s.string_to_sign);
  OPENSSL_cleanse(key.data(), key.size());
  s.signature = HexEncode(mac.data(), mac.size());
  s.authorization = std::string(kAlgorithm) + " Credential=" + credentials.access_key + "/" +
                    CredentialScope(scope) + ", SignedHeaders=" + s.signed_headers +
                    ", Signature=" + s.signature;
  return s;
}

std::string AmzDate(time_t t) {
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

}  // namespace muscle::s3
