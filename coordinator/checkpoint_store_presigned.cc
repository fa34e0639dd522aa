// The CheckpointStore's S3 backend: uploads and downloads through presigned
// URLs (checkpoint_store.h). The index, retention and quarantine are the
// same as the local backend's (checkpoint_store.cc); only how the bytes
// arrive and leave differs, and the coordinator never holds them.

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "coordinator/checkpoint_store.h"
#include "coordinator/proto_time.h"

namespace clmae {
namespace {

absl::Status LocalBackend() {
  return absl::FailedPreconditionError(
      "this coordinator keeps checkpoints on its own disk: upload by "
      "WorkerControl.UploadCheckpoint and download by streaming, not through presigned URLs");
}

absl::Status UnknownUpload(const std::string& job_id, const std::string& upload_id) {
  // ABORTED, not NOT_FOUND: the job is there, the uploader should begin again.
  return absl::AbortedError(absl::StrCat(
      "job ", job_id, " has no presigned upload ", upload_id.substr(0, 40),
      " in progress (unknown, already committed or aborted, or begun before the coordinator "
      "restarted): begin the upload again"));
}

}  // namespace

absl::StatusOr<CheckpointStore::PresignedUpload> CheckpointStore::BeginPresignedUpload(
    const v1::CheckpointMetadata& metadata) {
  if (objects_ == nullptr) return LocalBackend();
  RETURN_IF_ERROR(ValidateCheckpointMetadata(metadata));
  if (metadata.sha256().empty()) {
    return absl::InvalidArgumentError(
        "checkpoint metadata: sha256 is empty; a presigned upload declares the SHA-256 of its "
        "bytes up front (it is stored with the object)");
  }
  if (metadata.size_bytes() > options_.max_checkpoint_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("checkpoint of ", metadata.size_bytes(),
                     " bytes is larger than this coordinator's limit of ",
                     options_.max_checkpoint_bytes, " bytes (max_checkpoint_bytes)"));
  }
  PresignedUpload upload;
  upload.upload_id = NewId();  // the id the checkpoint will have
  PendingUpload pending;
  pending.metadata = metadata;
  pending.key = objects_->KeyOf(metadata.job_id(), upload.upload_id);
  upload.expire_time = objects_->UrlExpiry();
  ASSIGN_OR_RETURN(
      pending.s3_upload_id,
      objects_->BeginUpload(pending.key, metadata.sha256(), metadata.size_bytes(), upload.parts));
  pending.parts = static_cast<int>(upload.parts.size());
  absl::MutexLock lock(&pending_mu_);
  pending_.emplace(upload.upload_id, std::move(pending));
  return upload;
}

absl::StatusOr<v1::CheckpointMetadata> CheckpointStore::PresignedUploadMetadata(
    const std::string& job_id, const std::string& upload_id) {
  absl::MutexLock lock(&pending_mu_);
  auto it = pending_.find(upload_id);
  if (it == pending_.end() || it->second.metadata.job_id() != job_id) {
    return UnknownUpload(job_id, upload_id);
  }
  return it->second.metadata;
}

absl::StatusOr<v1::Checkpoint> CheckpointStore::CommitPresignedUpload(
    const std::string& job_id, const std::string& upload_id,
    const std::vector<std::string>& part_md5s, const RetentionPolicy& policy, absl::Time now) {
  if (objects_ == nullptr) return LocalBackend();
  if (policy.keep_last < 0 || policy.keep_every < 0) {
    return absl::InvalidArgumentError(absl::StrCat("retention: keep_last (", policy.keep_last,
                                                   ") and keep_every (", policy.keep_every,
                                                   ") must be >= 0"));
  }
  PendingUpload pending;
  {
    // Taken out while it commits: a second commit of the same id is NOT_FOUND.
    absl::MutexLock lock(&pending_mu_);
    auto it = pending_.find(upload_id);
    if (it == pending_.end() || it->second.metadata.job_id() != job_id) {
      return UnknownUpload(job_id, upload_id);
    }
    pending = std::move(it->second);
    pending_.erase(it);
  }
  const auto give_back = [&] {
    absl::MutexLock lock(&pending_mu_);
    pending_.emplace(upload_id, pending);
  };
  if (static_cast<int>(part_md5s.size()) != pending.parts) {
    give_back();
    return absl::InvalidArgumentError(absl::StrCat("checkpoint commit: ", part_md5s.size(),
                                                   " part digests for an upload of ", pending.parts,
                                                   " parts"));
  }
  for (const std::string& md5 : part_md5s) {
    if (md5.size() != 32 || md5.find_first_not_of("0123456789abcdef") != std::string::npos) {
      give_back();
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint commit: part digest \"", md5.substr(0, 40),
          "\" is not an MD5 as 32 lowercase hex digits (the part's ETag without quotes)"));
    }
  }
  const v1::CheckpointMetadata& m = pending.metadata;
  absl::StatusOr<std::string> etag = objects_->FinishUpload(pending.key, pending.s3_upload_id,
                                                            m.sha256(), m.size_bytes(), part_md5s);
  if (!etag.ok()) {
    // The store could not be reached: the same commit may be tried again.
    if (absl::IsUnavailable(etag.status())) give_back();
    return etag.status();
  }
  v1::Checkpoint checkpoint;
  checkpoint.set_id(upload_id);
  *checkpoint.mutable_metadata() = m;
  *checkpoint.mutable_create_time() = ToProtoTime(now);
  return RecordObject(std::move(checkpoint), pending.key, *etag, policy);
}

absl::StatusOr<v1::Checkpoint> CheckpointStore::RecordObject(v1::Checkpoint checkpoint,
                                                             const std::string& key,
                                                             const std::string& etag,
                                                             const RetentionPolicy& policy) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> candidates;
  absl::Status status = db_->Begin();
  if (status.ok()) {
    SqliteTransaction txn(db_.get());
    status = RecordInTransaction(checkpoint, policy, candidates);
    if (status.ok()) {
      absl::StatusOr<std::unique_ptr<SqliteStatement>> name =
          db_->Prepare("UPDATE checkpoints SET object_key = ?, object_etag = ? WHERE id = ?");
      status = name.status();
      if (status.ok()) {
        (*name)->Bind(1, key).Bind(2, etag).Bind(3, checkpoint.id());
        status = (*name)->Run();
      }
    }
    if (status.ok()) status = txn.Commit();
  }
  if (!status.ok()) {
    backend_->Remove(key).IgnoreError();
    return status;
  }
  RemoveUnreferenced(candidates);
  return checkpoint;
}

absl::Status CheckpointStore::AbortPresignedUpload(const std::string& job_id,
                                                   const std::string& upload_id) {
  if (objects_ == nullptr) return LocalBackend();
  PendingUpload pending;
  {
    absl::MutexLock lock(&pending_mu_);
    auto it = pending_.find(upload_id);
    if (it == pending_.end() || it->second.metadata.job_id() != job_id) {
      return UnknownUpload(job_id, upload_id);
    }
    pending = std::move(it->second);
    pending_.erase(it);
  }
  return objects_->AbortUpload(pending.key, pending.s3_upload_id);
}

absl::StatusOr<CheckpointStore::PresignedDownload> CheckpointStore::PresignDownload(
    const v1::Checkpoint& checkpoint) const {
  if (objects_ == nullptr) return LocalBackend();
  if (!IsCheckpointId(checkpoint.id())) {
    return absl::InvalidArgumentError("checkpoint id is not one this store hands out");
  }
  const std::string& job_id = checkpoint.metadata().job_id();
  std::string key, etag;
  int64_t size = 0;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(auto stmt, db_->Prepare("SELECT object_key, object_etag, size_bytes, "
                                             "quarantined_us, quarantine_reason FROM checkpoints "
                                             "WHERE job_id = ? AND id = ?"));
    stmt->Bind(1, job_id).Bind(2, checkpoint.id());
    ASSIGN_OR_RETURN(bool row, stmt->Step());
    if (!row) {
      return absl::NotFoundError(
          absl::StrCat("job ", job_id, " has no checkpoint ", checkpoint.id(), " any more"));
    }
    if (!stmt->ColumnIsNull(3)) {
      return absl::FailedPreconditionError(
          absl::StrCat("checkpoint ", checkpoint.id(), " of job ", job_id, " was quarantined (",
                       stmt->ColumnText(4), "); it is not offered any more"));
    }
    if (stmt->ColumnIsNull(0)) {
      return absl::FailedPreconditionError(
          absl::StrCat("checkpoint ", checkpoint.id(),
                       " was stored on the coordinator's disk before it moved to object "
                       "storage; its bytes are not in the bucket"));
    }
    key = stmt->ColumnText(0);
    etag = stmt->ColumnText(1);
    size = stmt->ColumnInt(2);
  }
  PresignedDownload download;
  download.expire_time = objects_->UrlExpiry();
  absl::StatusOr<std::string> url = objects_->PresignDownload(key, size, etag);
  if (absl::IsDataLoss(url.status())) {
    return QuarantinedLoss(
        *anchor_, job_id, checkpoint.id(), url.status().message(),
        absl::StrCat("checkpoint ", checkpoint.id(), " failed verification in object storage: "));
  }
  if (!url.ok()) return url.status();
  download.url = *std::move(url);
  return download;
}

absl::Status CheckpointStore::SweepObjects() {
  if (objects_ == nullptr) return absl::OkStatus();
  std::set<std::string> referenced;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(referenced, ReferencedBlobs());
  }
  // Outside the lock: an object committed meanwhile is younger than the
  // grace period, so the sweep leaves it alone.
  return objects_->Sweep(referenced);
}

}  // namespace clmae
