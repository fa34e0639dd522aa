#pragma once

// The object-store calls the coordinator makes itself, against an
// S3-compatible API (AWS S3, MinIO, Ceph RGW, SeaweedFS): HEAD, DELETE,
// listing, and the control half of multipart uploads (create, complete,
// abort, list), plus presigned URLs for the data half that other processes
// perform (part PUTs, ranged GETs). Requests go through libcurl, signed by
// its SigV4 (CURLOPT_AWS_SIGV4); presigned URLs by PresignUrl. Keys are
// relative to the bucket, prefix included.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/s3/http_call.h"
#include "common/s3/s3_config.h"
#include "common/s3/sigv4_presign.h"

namespace clmae {

struct S3ObjectInfo {
  std::string key;
  int64_t size = 0;
  std::string etag;  // without quotes
  absl::Time last_modified;
  std::map<std::string, std::string> metadata;  // x-amz-meta-*, names lowercase, without the prefix
};

struct S3MultipartInfo {
  std::string key;
  std::string upload_id;
  absl::Time initiated;
};

struct S3CompletedPart {
  int part_number = 0;
  std::string etag;  // as the part's PUT returned it, without quotes
};

// Thread-safe: every call is its own HTTP request.
class S3Client {
 public:
  // INVALID_ARGUMENT when ValidateS3Config fails.
  static absl::StatusOr<std::unique_ptr<S3Client>> Create(S3Config config,
                                                          absl::Duration stall_timeout);

  // Creates the bucket; OK when it exists already and is ours.
  absl::Status CreateBucket();
  // The object's size, ETag and metadata. NOT_FOUND when absent.
  absl::StatusOr<S3ObjectInfo> Head(const std::string& key);
  // Deletes the object; absent is fine (S3 answers 204 either way).
  absl::Status Delete(const std::string& key);
  // Every object whose key starts with `prefix` (all pages).
  absl::StatusOr<std::vector<S3ObjectInfo>> List(const std::string& prefix);
  // Puts a small object from memory (manifests, tests).
  absl::Status Put(const std::string& key, const std::string& bytes,
                   const std::map<std::string, std::string>& metadata = {});
  // The whole object into memory (tests and small objects only).
  absl::StatusOr<std::string> Get(const std::string& key);

  // Starts a multipart upload of `key` carrying `metadata` (x-amz-meta-*);
  // returns its upload id.
  absl::StatusOr<std::string> CreateMultipartUpload(
      const std::string& key, const std::map<std::string, std::string>& metadata);
  // Completes it from the parts in order. S3 checks each ETag against the
  // part it stored (FAILED_PRECONDITION "InvalidPart" otherwise). Returns
  // the object's ETag.
  absl::StatusOr<std::string> CompleteMultipartUpload(const std::string& key,
                                                      const std::string& upload_id,
                                                      const std::vector<S3CompletedPart>& parts);
  // Aborts it and frees its parts; an unknown upload id is fine.
  absl::Status AbortMultipartUpload(const std::string& key, const std::string& upload_id);
  // Multipart uploads in progress under `prefix`.
  absl::StatusOr<std::vector<S3MultipartInfo>> ListMultipartUploads(const std::string& prefix);

  // A presigned URL valid for `ttl`: GET of the object, or PUT of one part
  // (part_number >= 1 with upload_id) or of the whole object (part_number 0).
  absl::StatusOr<std::string> PresignGet(const std::string& key, absl::Duration ttl) const;
  absl::StatusOr<std::string> PresignPut(const std::string& key, const std::string& upload_id,
                                         int part_number, absl::Duration ttl) const;

  const S3Config& config() const { return config_; }

 private:
  S3Client(S3Config config, absl::Duration stall_timeout)
      : config_(std::move(config)), stall_timeout_(stall_timeout) {}
  // The URL of `key` ("" = the bucket) with `query` (already encoded).
  std::string Url(const std::string& key, const std::string& query) const;
  // A request signed by libcurl (SigV4) for `method` on `key`.
  HttpRequest Signed(const std::string& method, const std::string& key,
                     const std::string& query) const;
  // The presigning request for `method` on `key`, valid for `ttl` from now.
  PresignRequest PresignFor(const std::string& method, const std::string& key,
                            absl::Duration ttl) const;

  const S3Config config_;
  const absl::Duration stall_timeout_;
};

// The ETag S3 gives an object completed from parts with these MD5s (hex):
// the MD5 of their concatenated binary digests, "-", the number of parts.
std::string MultipartEtag(const std::vector<std::string>& part_md5_hex);

// Incremental MD5 (OpenSSL), as S3 computes a part's ETag: the uploader
// checks each part's ETag against the bytes it read. Not thread-safe.
class Md5 {
 public:
  Md5();
  ~Md5();
  Md5(const Md5&) = delete;
  Md5& operator=(const Md5&) = delete;
  void Update(absl::string_view bytes);
  // Lowercase hex of everything so far; resets.
  std::string HexDigest();

 private:
  void* context_;  // EVP_MD_CTX
};

// The lowercase hex MD5 of `bytes`.
std::string Md5Hex(absl::string_view bytes);

}  // namespace clmae
