#include "coordinator/s3_blob_backend.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace clmae {
namespace {

constexpr int64_t kMinPart = int64_t{5} << 20;  // S3: every part but the last
constexpr int64_t kMaxPart = int64_t{5} << 30;
constexpr int64_t kMaxParts = 10000;

absl::Status Bad(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("S3 checkpoint storage: ", field, " ", why));
}

}  // namespace

absl::StatusOr<std::unique_ptr<S3BlobBackend>> S3BlobBackend::Open(
    const S3BackendOptions& options) {
  if (options.part_bytes < kMinPart || options.part_bytes > kMaxPart) {
    return Bad("part size",
               absl::StrCat("is ", options.part_bytes, " bytes; S3 accepts 5 MiB to 5 GiB"));
  }
  if (options.url_ttl < absl::Seconds(1) || options.url_ttl > absl::Hours(24 * 7)) {
    return Bad("presigned URL lifetime",
               absl::StrCat("is ", absl::FormatDuration(options.url_ttl),
                            "; give 1s to 168h (S3 signs for at most 7 days)"));
  }
  if (options.orphan_grace < options.url_ttl) {
    return Bad("orphan grace", absl::StrCat("(", absl::FormatDuration(options.orphan_grace),
                                            ") is shorter than the presigned URL lifetime (",
                                            absl::FormatDuration(options.url_ttl),
                                            "): the sweep would delete uploads still in progress"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<S3Client> client,
                   S3Client::Create(options.config, options.stall_timeout));
  // One cheap request now: a wrong endpoint, bucket or key fails at start.
  absl::Status probe = options.create_bucket ? client->CreateBucket() : absl::OkStatus();
  if (probe.ok()) probe = client->List(absl::StrCat(options.config.prefix, "jobs/none")).status();
  if (!probe.ok()) {
    return absl::Status(
        probe.code(),
        absl::StrCat("S3 checkpoint storage at ", options.config.endpoint, ", bucket ",
                     options.config.bucket, " is not usable: ", probe.message()));
  }
  return std::unique_ptr<S3BlobBackend>(new S3BlobBackend(options, std::move(client)));
}

std::string S3BlobBackend::KeyOf(const std::string& job_id, const std::string& id) const {
  return absl::StrCat(options_.config.prefix, "jobs/", job_id, "/", id);
}

absl::StatusOr<std::string> S3BlobBackend::BeginUpload(const std::string& key,
                                                       const std::string& sha256, int64_t size,
                                                       std::vector<PresignedPart>& parts) {
  const int64_t part = std::max(options_.part_bytes, (size + kMaxParts - 1) / kMaxParts);
  ASSIGN_OR_RETURN(
      std::string upload_id,
      client_->CreateMultipartUpload(key, {{"sha256", sha256}, {"size", absl::StrCat(size)}}));
  parts.clear();
  int64_t offset = 0;
  do {
    PresignedPart p;
    p.part_number = static_cast<int>(parts.size()) + 1;
    p.offset = offset;
    p.size = std::min(part, size - offset);
    absl::StatusOr<std::string> url =
        client_->PresignPut(key, upload_id, p.part_number, options_.url_ttl);
    if (!url.ok()) {
      client_->AbortMultipartUpload(key, upload_id).IgnoreError();
      return url.status();
    }
    p.url = *std::move(url);
    offset += p.size;
    parts.push_back(std::move(p));
  } while (offset < size);
  return upload_id;
}

absl::StatusOr<std::string> S3BlobBackend::FinishUpload(const std::string& key,
                                                        const std::string& upload_id,
                                                        const std::string& sha256, int64_t size,
                                                        const std::vector<std::string>& part_md5s) {
  std::vector<S3CompletedPart> parts;
  for (size_t i = 0; i < part_md5s.size(); ++i) {
    parts.push_back({static_cast<int>(i) + 1, part_md5s[i]});
  }
  absl::StatusOr<std::string> completed = client_->CompleteMultipartUpload(key, upload_id, parts);
  if (!completed.ok()) {
    if (absl::IsFailedPrecondition(completed.status())) {
      client_->AbortMultipartUpload(key, upload_id).IgnoreError();
      return absl::AbortedError(
          absl::StrCat("the object store refused to assemble the upload from the parts' "
                       "digests the uploader computed (a part holds other bytes, or is "
                       "missing): ",
                       completed.status().message()));
    }
    return completed.status();
  }
  ASSIGN_OR_RETURN(S3ObjectInfo head, client_->Head(key));
  const std::string expected_etag = MultipartEtag(part_md5s);
  std::string mismatch;
  if (head.size != size) {
    mismatch = absl::StrCat("it holds ", head.size, " bytes, the upload declared ", size);
  } else if (head.metadata["sha256"] != sha256) {
    mismatch = absl::StrCat("its x-amz-meta-sha256 is \"", head.metadata["sha256"],
                            "\", the upload declared ", sha256);
  } else if (head.etag != expected_etag) {
    mismatch = absl::StrCat("its ETag is ", head.etag, ", the parts the uploader hashed give ",
                            expected_etag);
  }
  if (!mismatch.empty()) {
    client_->Delete(key).IgnoreError();
    return absl::AbortedError(absl::StrCat("checkpoint object ", key,
                                           " failed verification at commit: ", mismatch,
                                           "; it was deleted"));
  }
  return head.etag;
}

absl::Status S3BlobBackend::AbortUpload(const std::string& key, const std::string& upload_id) {
  return client_->AbortMultipartUpload(key, upload_id);
}

absl::StatusOr<std::string> S3BlobBackend::PresignDownload(const std::string& key, int64_t size,
                                                           const std::string& etag) {
  absl::StatusOr<S3ObjectInfo> head = client_->Head(key);
  if (absl::IsNotFound(head.status())) {
    return absl::DataLossError(absl::StrCat("its object ", key, " is missing from the bucket"));
  }
  if (!head.ok()) return head.status();
  if (head->size != size || head->etag != etag) {
    return absl::DataLossError(absl::StrCat(
        "its object ", key, " was changed after the commit: it holds ", head->size,
        " bytes with ETag ", head->etag, ", the record says ", size, " bytes with ETag ", etag));
  }
  return client_->PresignGet(key, options_.url_ttl);
}

absl::Status S3BlobBackend::Remove(const std::string& blob) { return client_->Delete(blob); }

absl::Status S3BlobBackend::Sweep(const std::set<std::string>& referenced) {
  const std::string prefix = absl::StrCat(options_.config.prefix, "jobs/");
  const absl::Time cutoff = options_.clock() - options_.orphan_grace;
  ASSIGN_OR_RETURN(std::vector<S3ObjectInfo> objects, client_->List(prefix));
  absl::Status status;
  for (const S3ObjectInfo& object : objects) {
    if (referenced.count(object.key) == 0 && object.last_modified < cutoff) {
      status.Update(client_->Delete(object.key));
    }
  }
  ASSIGN_OR_RETURN(std::vector<S3MultipartInfo> uploads, client_->ListMultipartUploads(prefix));
  for (const S3MultipartInfo& upload : uploads) {
    if (upload.initiated < cutoff) {
      status.Update(client_->AbortMultipartUpload(upload.key, upload.upload_id));
    }
  }
  return status;
}

}  // namespace clmae
