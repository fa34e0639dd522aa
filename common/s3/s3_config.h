#pragma once

// Where an S3-compatible object store is and how to sign for it: the
// checkpoint store's S3 backend (coordinator --checkpoint_backend=s3). The
// endpoint, bucket, prefix and region come from flags; the credentials from
// the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN) or a credentials file, never from a job spec.

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace clmae {

struct S3Config {
  // "http://host:port" or "https://host[:port]", no path. Requests use path
  // style (endpoint/bucket/key), which AWS S3, MinIO, Ceph RGW and SeaweedFS
  // all serve.
  std::string endpoint;
  std::string bucket;
  // Prepended to every object key ("clmae/checkpoints/"); letters, digits and
  // "/_.-" only; may be empty.
  std::string prefix;
  std::string region = "us-east-1";
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // temporary credentials; may be empty
};

// INVALID_ARGUMENT naming the field: an endpoint that is not http(s)://
// with a host and no path, an empty or malformed bucket (S3's rules: 3-63
// characters, lowercase letters, digits, '.', '-'), a prefix with other
// characters than letters, digits and "/_.-" or starting with '/', an empty
// region, or missing credentials.
absl::Status ValidateS3Config(const S3Config& config);

// Fills the credentials of `config`: from `credentials_file` when it is not
// empty (lines "aws_access_key_id = ...", "aws_secret_access_key = ...",
// "aws_session_token = ..."; '#' comments and [section] lines ignored: an
// AWS shared credentials file with one profile), else from the environment.
// NOT_FOUND / PERMISSION_DENIED naming an unreadable file; INVALID_ARGUMENT
// when the key id or the secret is missing, saying where they were looked
// for.
absl::Status LoadS3Credentials(const std::string& credentials_file, S3Config& config);

// "host[:port]" of the endpoint, and its scheme.
std::string S3EndpointHost(const S3Config& config);
std::string S3EndpointScheme(const S3Config& config);

}  // namespace clmae
