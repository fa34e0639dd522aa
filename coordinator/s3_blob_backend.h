#pragma once

// Checkpoint bytes in an S3-compatible object store. The coordinator only
// signs and checks: ranks PUT the parts of a multipart upload straight to
// the store through presigned URLs, downloaders GET through presigned URLs,
// and no checkpoint byte passes through this process.
//
// An object is <prefix>jobs/<job id>/<checkpoint id>, a fresh key per
// upload (never shared, never overwritten), carrying the uploader's SHA-256
// as x-amz-meta-sha256, set when the coordinator creates the multipart
// upload from the digest the uploader declared. What Finish verifies is in
// its contract; docs/checkpoints.md says what that guarantees.

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/s3/s3_client.h"
#include "coordinator/checkpoint_backend.h"

namespace clmae {

struct S3BackendOptions {
  S3Config config;
  // Part size of uploads: 5 MiB .. 5 GiB (S3's limits); raised for files so
  // large that they would need more than 10,000 parts.
  int64_t part_bytes = int64_t{64} << 20;
  // How long a presigned URL stays valid: short, since it grants access to
  // one object without credentials.
  absl::Duration url_ttl = absl::Minutes(30);
  // Objects and multipart uploads without a record are deleted by the
  // sweep once they are this old (an upload that died before its commit).
  absl::Duration orphan_grace = absl::Hours(1);
  // An S3 request in which no byte moves this long fails UNAVAILABLE.
  absl::Duration stall_timeout = absl::Seconds(30);
  // Create the bucket at Open when missing (tests, the demo's SeaweedFS);
  // production buckets are made by their operators.
  bool create_bucket = false;
  absl::Time (*clock)() = absl::Now;
};

// One part of an upload: bytes [offset, offset + size) of the file go to
// `url` by HTTP PUT.
struct PresignedPart {
  int part_number = 0;
  int64_t offset = 0;
  int64_t size = 0;
  std::string url;
};

// Thread-safe (S3Client is; the rest is immutable).
class S3BlobBackend final : public CheckpointBackend {
 public:
  // Validates the options (INVALID_ARGUMENT naming the field), creates the
  // bucket when asked, and lists the prefix once so that a wrong endpoint,
  // bucket or key fails here with the store's reason (UNAVAILABLE,
  // PERMISSION_DENIED, NOT_FOUND) rather than at the first checkpoint.
  static absl::StatusOr<std::unique_ptr<S3BlobBackend>> Open(const S3BackendOptions& options);

  // The object key of checkpoint `id` of `job_id`.
  std::string KeyOf(const std::string& job_id, const std::string& id) const;

  // Starts a multipart upload of `size` bytes to `key` whose SHA-256 the
  // uploader declares, and presigns one PUT URL per part (at least one,
  // empty for size 0). Returns the S3 upload id.
  absl::StatusOr<std::string> BeginUpload(const std::string& key, const std::string& sha256,
                                          int64_t size, std::vector<PresignedPart>& parts);
  // Completes the upload from the parts' MD5s as the uploader computed them
  // over the bytes it read, then checks the object with a HEAD: its size is
  // `size`, its x-amz-meta-sha256 is `sha256`, and its ETag is the one S3
  // derives from those MD5s (so every part holds what the uploader hashed).
  // ABORTED naming the mismatch (the object is deleted: nothing half-checked
  // stays; the uploader should upload again); the store's errors otherwise.
  // Returns the ETag.
  absl::StatusOr<std::string> FinishUpload(const std::string& key, const std::string& upload_id,
                                           const std::string& sha256, int64_t size,
                                           const std::vector<std::string>& part_md5s);
  // Aborts an upload that will not be committed (frees its parts).
  absl::Status AbortUpload(const std::string& key, const std::string& upload_id);
  // A presigned GET of the object, after a HEAD shows it still has the
  // recorded size and ETag. DATA_LOSS naming what differs, or that it is
  // missing; the store's errors otherwise.
  absl::StatusOr<std::string> PresignDownload(const std::string& key, int64_t size,
                                              const std::string& etag);

  absl::Status Remove(const std::string& blob) override;
  absl::Status Sweep(const std::set<std::string>& referenced) override;
  int64_t stored_bytes() const override { return 0; }

  const S3BackendOptions& options() const { return options_; }
  // When URLs handed out now expire.
  absl::Time UrlExpiry() const { return options_.clock() + options_.url_ttl; }

 private:
  S3BlobBackend(S3BackendOptions options, std::unique_ptr<S3Client> client)
      : options_(std::move(options)), client_(std::move(client)) {}

  const S3BackendOptions options_;
  const std::unique_ptr<S3Client> client_;
};

}  // namespace clmae
