#include "common/s3/sigv4_presign.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/sha256.h"

namespace clmae {
namespace {

constexpr absl::string_view kAlgorithm = "AWS4-HMAC-SHA256";

std::string Hmac(absl::string_view key, absl::string_view message) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), out, &length);
  return std::string(reinterpret_cast<const char*>(out), length);
}

std::string Hex(absl::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

}  // namespace

std::string AwsUriEncode(absl::string_view text, bool keep_slashes) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
                            c == '~' || (keep_slashes && c == '/');
    if (unreserved) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kDigits[c >> 4]);
      out.push_back(kDigits[c & 15]);
    }
  }
  return out;
}

std::string SigV4SigningKey(absl::string_view secret, absl::string_view date,
                            absl::string_view region, absl::string_view service) {
  std::string key = Hmac(absl::StrCat("AWS4", secret), date);
  key = Hmac(key, region);
  key = Hmac(key, service);
  return Hmac(key, "aws4_request");
}

absl::StatusOr<std::string> PresignUrl(const PresignRequest& r) {
  const auto bad = [](absl::string_view field, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("presigned URL: ", field, " ", why));
  };
  if (r.host.empty()) return bad("host", "is empty");
  if (r.path.empty() || r.path.front() != '/') {
    return bad("path", absl::StrCat("\"", r.path, "\" does not start with '/'"));
  }
  if (r.access_key_id.empty()) return bad("access key id", "is empty");
  if (r.secret_access_key.empty()) return bad("secret access key", "is empty");
  if (r.region.empty()) return bad("region", "is empty");
  const int64_t seconds = absl::ToInt64Seconds(r.expires);
  if (seconds < 1 || seconds > 7 * 24 * 3600) {
    return bad("expiry", absl::StrCat("is ", seconds, " s; S3 accepts 1 s to 7 days"));
  }
  const std::string timestamp = absl::FormatTime("%Y%m%dT%H%M%SZ", r.now, absl::UTCTimeZone());
  const std::string date = timestamp.substr(0, 8);
  const std::string scope = absl::StrCat(date, "/", r.region, "/", r.service, "/aws4_request");

  std::vector<std::pair<std::string, std::string>> query;
  for (const auto& [name, value] : r.query) {
    query.emplace_back(AwsUriEncode(name, false), AwsUriEncode(value, false));
  }
  query.emplace_back("X-Amz-Algorithm", std::string(kAlgorithm));
  query.emplace_back("X-Amz-Credential",
                     AwsUriEncode(absl::StrCat(r.access_key_id, "/", scope), false));
  query.emplace_back("X-Amz-Date", timestamp);
  query.emplace_back("X-Amz-Expires", absl::StrCat(seconds));
  if (!r.session_token.empty()) {
    query.emplace_back("X-Amz-Security-Token", AwsUriEncode(r.session_token, false));
  }
  query.emplace_back("X-Amz-SignedHeaders", "host");
  // Sorted by encoded name (then value), byte order, as the spec requires.
  std::sort(query.begin(), query.end());
  const std::string canonical_query = absl::StrJoin(
      query, "&",
      [](std::string* out, const auto& kv) { absl::StrAppend(out, kv.first, "=", kv.second); });

  const std::string path = AwsUriEncode(r.path, /*keep_slashes=*/true);
  const std::string canonical_request =
      absl::StrCat(r.method, "\n", path, "\n", canonical_query, "\n", "host:", r.host, "\n\n",
                   "host\n", "UNSIGNED-PAYLOAD");
  const std::string string_to_sign =
      absl::StrCat(kAlgorithm, "\n", timestamp, "\n", scope, "\n", Sha256Hex(canonical_request));
  const std::string signature =
      Hex(Hmac(SigV4SigningKey(r.secret_access_key, date, r.region, r.service), string_to_sign));
  return absl::StrCat(r.scheme, "://", r.host, path, "?", canonical_query,
                      "&X-Amz-Signature=", signature);
}

}  // namespace clmae
