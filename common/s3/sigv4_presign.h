#pragma once

// Presigned URLs for S3-compatible object stores: AWS Signature Version 4 in
// its query-string form ("Authenticating Requests: Using Query Parameters",
// AWS S3 API reference). The coordinator hands such URLs to ranks and
// downloaders so that checkpoint bytes go straight between them and the
// store, never through the coordinator.
//
// Written by hand, on purpose and only this part: libcurl signs the requests
// this process sends itself (CURLOPT_AWS_SIGV4, the Authorization-header
// form), but a URL that another process uses later, without the secret key,
// must carry its signature in the query string, and no library we depend on
// produces that. The algorithm is small and exactly specified; the unit tests
// reproduce AWS's published example signature.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace clmae {

struct PresignRequest {
  std::string method = "GET";  // the HTTP method the URL will be used with
  std::string scheme = "https";
  std::string host;  // as the Host header will carry it: "name" or "name:port"
  std::string path;  // the object's path, not yet URI-encoded; starts with '/'
  // Further query parameters the request needs (partNumber, uploadId), not
  // yet encoded; they are signed with the rest.
  std::vector<std::pair<std::string, std::string>> query;
  std::string region = "us-east-1";
  std::string service = "s3";
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // temporary credentials (X-Amz-Security-Token); may be empty
  absl::Time now;
  absl::Duration expires = absl::Minutes(15);  // 1 s .. 7 days
};

// The URL: scheme://host + encoded path + the sorted, encoded query with
// X-Amz-Algorithm, -Credential, -Date, -Expires, -SignedHeaders (host only)
// and -Signature. The payload is UNSIGNED-PAYLOAD (the uploader's digest is
// checked at commit instead). INVALID_ARGUMENT naming the field for an empty
// host, key or secret, a path without a leading '/', or an expiry outside
// 1 s .. 7 days (the limits S3 accepts). Thread-safe.
absl::StatusOr<std::string> PresignUrl(const PresignRequest& request);

// RFC 3986 percent-encoding as SigV4 defines it: every byte but A-Z a-z 0-9
// '-' '_' '.' '~' becomes %XX (uppercase hex); '/' too unless
// `keep_slashes` (for paths).
std::string AwsUriEncode(absl::string_view text, bool keep_slashes);

// The signing key of SigV4 (HMAC-SHA256 chained over the date, region,
// service and "aws4_request"), as raw bytes.
std::string SigV4SigningKey(absl::string_view secret, absl::string_view date,
                            absl::string_view region, absl::string_view service);

}  // namespace clmae
