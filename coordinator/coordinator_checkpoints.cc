// The Coordinator's checkpoint calls: uploads are checked against the job's
// current attempt, committed under the job's retention, and the newest full
// checkpoint that is not quarantined is what a restarted attempt resumes
// from.

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/coordinator.h"
#include "coordinator/job_state_machine.h"
#include "coordinator/proto_time.h"
// Header-only constants shared with the validator and the trainer.
#include "common/job_spec/job_spec_defaults.h"
#include "common/status_macros.h"

namespace clmae {
namespace {

absl::Status NoStore() {
  return absl::FailedPreconditionError(
      "this coordinator keeps no checkpoints (it was started without a checkpoint folder)");
}

absl::Status CheckKind(v1::CheckpointKind kind) {
  if (v1::CheckpointKind_IsValid(kind)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("kind: ", static_cast<int>(kind),
                   " is not a checkpoint kind (FULL, WEIGHTS, ENCODER, "
                   "PREVIEW, or UNSPECIFIED for every kind)"));
}

RetentionPolicy RetentionOf(const v1::JobSpec& spec) {
  const v1::OutputSpec& o = spec.output();
  RetentionPolicy policy;
  policy.keep_last =
      o.has_keep_checkpoints() ? o.keep_checkpoints() : job_spec_defaults::kKeepCheckpoints;
  policy.keep_every = o.keep_every();
  return policy;
}

}  // namespace

absl::Status Coordinator::CheckUploadAttempt(const v1::CheckpointMetadata& metadata) {
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(metadata.job_id());
    if (it == jobs_.end()) {
      // Not active: unknown, or already ended.
      if (absl::StatusOr<v1::Job> job = store_->Get(metadata.job_id()); job.ok()) {
        return absl::FailedPreconditionError(absl::StrCat("job ", metadata.job_id(), " has ended (",
                                                          v1::JobState_Name(job->state()),
                                                          "); its checkpoints are closed"));
      } else {
        return job.status();
      }
    }
    const v1::Job& job = it->second.job;
    // The superseded attempt (failed for a late rank; nothing newer runs)
    // may still store its checkpoints: it may yet finish the job.
    const bool superseded = it->second.superseded.has_value() &&
                            metadata.attempt() == it->second.superseded->attempt &&
                            job.state() == v1::JOB_STATE_PENDING;
    if (!superseded && (metadata.attempt() != job.attempt() || !IsPlaced(job.state()))) {
      return absl::FailedPreconditionError(
          absl::StrCat("attempt ", metadata.attempt(), " of job ", job.id(),
                       " is not running (the job is at attempt ", job.attempt(), ", ",
                       v1::JobState_Name(job.state()), ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CheckpointStore::Upload>> Coordinator::BeginCheckpointUpload(
    const v1::CheckpointMetadata& metadata) {
  if (checkpoints_ == nullptr) return NoStore();
  RETURN_IF_ERROR(CheckUploadAttempt(metadata));
  return checkpoints_->BeginUpload(metadata);
}

absl::StatusOr<CheckpointStore::PresignedUpload> Coordinator::BeginPresignedCheckpointUpload(
    const v1::CheckpointMetadata& metadata) {
  if (checkpoints_ == nullptr) return NoStore();
  RETURN_IF_ERROR(CheckUploadAttempt(metadata));
  return checkpoints_->BeginPresignedUpload(metadata);
}

absl::StatusOr<v1::CheckpointMetadata> Coordinator::PresignedCheckpointUploadMetadata(
    const std::string& job_id, const std::string& upload_id) {
  if (checkpoints_ == nullptr) return NoStore();
  return checkpoints_->PresignedUploadMetadata(job_id, upload_id);
}

absl::StatusOr<v1::Checkpoint> Coordinator::CommitPresignedCheckpointUpload(
    const std::string& job_id, const std::string& upload_id,
    const std::vector<std::string>& part_md5s) {
  if (checkpoints_ == nullptr) return NoStore();
  ASSIGN_OR_RETURN(const v1::Job job, Get(job_id));
  ASSIGN_OR_RETURN(v1::Checkpoint checkpoint,
                   checkpoints_->CommitPresignedUpload(job_id, upload_id, part_md5s,
                                                       RetentionOf(job.spec()), options_.clock()));
  absl::MutexLock lock(&mu_);
  last_checkpoint_[job_id] = FromProtoTime(checkpoint.create_time());
  return checkpoint;
}

absl::Status Coordinator::AbortPresignedCheckpointUpload(const std::string& job_id,
                                                         const std::string& upload_id) {
  if (checkpoints_ == nullptr) return NoStore();
  return checkpoints_->AbortPresignedUpload(job_id, upload_id);
}

absl::StatusOr<CheckpointStore::PresignedDownload> Coordinator::PresignCheckpointDownload(
    const v1::Checkpoint& checkpoint) {
  if (checkpoints_ == nullptr) return NoStore();
  return checkpoints_->PresignDownload(checkpoint);
}

bool Coordinator::CheckpointsPresigned() const {
  return checkpoints_ != nullptr && checkpoints_->presigned();
}

absl::Status Coordinator::SweepCheckpointObjects() {
  if (checkpoints_ == nullptr) return absl::OkStatus();
  return checkpoints_->SweepObjects();
}

absl::StatusOr<v1::Checkpoint> Coordinator::CommitCheckpointUpload(
    std::unique_ptr<CheckpointStore::Upload> upload) {
  if (checkpoints_ == nullptr) return NoStore();
  const std::string job_id = upload->metadata().job_id();
  ASSIGN_OR_RETURN(const v1::Job job, Get(job_id));
  ASSIGN_OR_RETURN(
      v1::Checkpoint checkpoint,
      checkpoints_->Commit(std::move(upload), RetentionOf(job.spec()), options_.clock()));
  absl::MutexLock lock(&mu_);
  last_checkpoint_[job_id] = FromProtoTime(checkpoint.create_time());
  return checkpoint;
}

absl::StatusOr<std::vector<v1::Checkpoint>> Coordinator::ListCheckpoints(const std::string& job_id,
                                                                         v1::CheckpointKind kind) {
  if (checkpoints_ == nullptr) return NoStore();
  RETURN_IF_ERROR(CheckKind(kind));
  RETURN_IF_ERROR(Get(job_id).status());
  return checkpoints_->List(job_id, kind);
}

absl::StatusOr<v1::Checkpoint> Coordinator::FindCheckpoint(
    const v1::DownloadCheckpointRequest& request) {
  if (checkpoints_ == nullptr) return NoStore();
  RETURN_IF_ERROR(CheckKind(request.kind()));
  RETURN_IF_ERROR(Get(request.job_id()).status());
  const v1::CheckpointKind kind =
      request.kind() == v1::CHECKPOINT_KIND_UNSPECIFIED ? v1::CHECKPOINT_KIND_FULL : request.kind();
  switch (request.selector_case()) {
    case v1::DownloadCheckpointRequest::kId:
      return checkpoints_->Get(request.job_id(), request.id());
    case v1::DownloadCheckpointRequest::kStep:
      return checkpoints_->AtStep(request.job_id(), request.step(), kind);
    case v1::DownloadCheckpointRequest::kLatest:
    case v1::DownloadCheckpointRequest::SELECTOR_NOT_SET:
      return checkpoints_->Latest(request.job_id(), kind);
  }
  return absl::InvalidArgumentError("unknown checkpoint selector");
}

absl::StatusOr<std::unique_ptr<CheckpointStore::Reader>> Coordinator::OpenCheckpoint(
    const v1::Checkpoint& checkpoint, int64_t offset) {
  if (checkpoints_ == nullptr) return NoStore();
  return checkpoints_->OpenReader(checkpoint, offset);
}

int64_t Coordinator::QuarantinedCheckpoints() const {
  return checkpoints_ == nullptr ? 0 : checkpoints_->quarantined_total();
}

absl::flat_hash_map<std::string, absl::Time> Coordinator::LastCheckpointTimes() {
  absl::MutexLock lock(&mu_);
  return last_checkpoint_;
}

std::optional<v1::Checkpoint> Coordinator::ResumeCheckpoint(const ActiveJob& active) const {
  if (checkpoints_ == nullptr) return std::nullopt;
  // Latest passes over quarantined checkpoints: after the newest failed
  // verification, the attempt resumes from the one before it.
  absl::StatusOr<v1::Checkpoint> latest =
      checkpoints_->Latest(active.job.id(), v1::CHECKPOINT_KIND_FULL);
  if (!latest.ok()) return std::nullopt;  // none yet, or all quarantined (NOT_FOUND)
  return *std::move(latest);
}

}  // namespace clmae
