// WorkerControl's presigned checkpoint calls (BeginCheckpointUpload,
// CommitCheckpointUpload, AbortCheckpointUpload): rank 0 asks how to upload,
// PUTs the parts straight to object storage, then asks for the commit. Thin
// adapters: the Coordinator checks job and attempt, the CheckpointStore
// signs, verifies and records. The calls do the store's control requests
// (create, complete, HEAD) on the callback thread, as the streaming upload
// does its disk writes; no checkpoint byte passes through here.

#include <string>
#include <vector>

#include "common/status_macros.h"
#include "coordinator/proto_time.h"
#include "services/unary_call.h"
#include "services/worker_control_service.h"

namespace clmae {
namespace {

// Rank 0 of the job's attempt, on the worker it was placed on, may upload.
absl::Status CheckUploader(Coordinator& coordinator, const Principal& principal,
                           const v1::CheckpointMetadata& metadata) {
  RETURN_IF_ERROR(CheckTaskScope(principal, metadata.job_id(), metadata.attempt(), /*rank=*/0));
  if (principal.bound_to_node()) {
    RETURN_IF_ERROR(coordinator.CheckTaskOnWorker(principal.name, metadata.job_id(),
                                                  metadata.attempt(), /*rank=*/0,
                                                  /*require_running=*/false));
  }
  return absl::OkStatus();
}

}  // namespace

grpc::ServerUnaryReactor* WorkerControlService::BeginCheckpointUpload(
    grpc::CallbackServerContext* context, const v1::BeginCheckpointUploadRequest* request,
    v1::BeginCheckpointUploadResponse* response) {
  return RunUnary(context, *authorizer_, Access::kTrainer, [&](const Principal& p) -> absl::Status {
    const v1::CheckpointMetadata& metadata = request->metadata();
    RETURN_IF_ERROR(CheckUploader(*coordinator_, p, metadata));
    if (!coordinator_->CheckpointsPresigned()) {
      // The same checks as the stream's first message, so a refusal comes now.
      RETURN_IF_ERROR(coordinator_->BeginCheckpointUpload(metadata).status());
      response->set_stream(true);
      return absl::OkStatus();
    }
    if (metadata.sha256().empty()) {
      response->set_sha256_required(true);
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(CheckpointStore::PresignedUpload upload,
                     coordinator_->BeginPresignedCheckpointUpload(metadata));
    response->set_upload_id(upload.upload_id);
    for (const PresignedPart& part : upload.parts) {
      v1::PresignedPart* out = response->add_parts();
      out->set_part_number(part.part_number);
      out->set_offset(part.offset);
      out->set_size(part.size);
      out->set_url(part.url);
    }
    *response->mutable_expire_time() = ToProtoTime(upload.expire_time);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WorkerControlService::CommitCheckpointUpload(
    grpc::CallbackServerContext* context, const v1::CommitCheckpointUploadRequest* request,
    v1::UploadCheckpointResponse* response) {
  return RunUnary(context, *authorizer_, Access::kTrainer, [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(
        const v1::CheckpointMetadata metadata,
        coordinator_->PresignedCheckpointUploadMetadata(request->job_id(), request->upload_id()));
    RETURN_IF_ERROR(CheckUploader(*coordinator_, p, metadata));
    const std::vector<std::string> md5s(request->part_md5().begin(), request->part_md5().end());
    ASSIGN_OR_RETURN(*response->mutable_checkpoint(),
                     coordinator_->CommitPresignedCheckpointUpload(request->job_id(),
                                                                   request->upload_id(), md5s));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WorkerControlService::AbortCheckpointUpload(
    grpc::CallbackServerContext* context, const v1::AbortCheckpointUploadRequest* request,
    v1::AbortCheckpointUploadResponse*) {
  return RunUnary(context, *authorizer_, Access::kTrainer, [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(
        const v1::CheckpointMetadata metadata,
        coordinator_->PresignedCheckpointUploadMetadata(request->job_id(), request->upload_id()));
    RETURN_IF_ERROR(CheckUploader(*coordinator_, p, metadata));
    return coordinator_->AbortPresignedCheckpointUpload(request->job_id(), request->upload_id());
  });
}

}  // namespace clmae
