// The checkpoint RPCs of both services: WorkerControl.UploadCheckpoint
// (client-streaming, rank 0 → store), Coordinator.ListCheckpoints and
// Coordinator.DownloadCheckpoint (clients), WorkerControl.FetchCheckpoint
// (agents). Thin adapters: the Coordinator checks the job and attempt, the
// CheckpointStore verifies, stores and reads the bytes.
//
// Disk work happens in the reactions, one read or write at a time: a chunk
// is written before the next one is read, and read before the previous one
// was sent, so memory stays at about one chunk per stream whatever the
// checkpoint's size (gRPC's flow control holds the sender back meanwhile).
//
// A download verifies what it sends: the store's reader hashes the whole
// blob (the part before the offset too) and, instead of the last chunk,
// answers DATA_LOSS when size or SHA-256 differ from the record, after
// quarantining the checkpoint; the stream then ends with that status, never
// OK.

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/proto_time.h"
#include "services/coordinator_service.h"
#include "services/status_mapping.h"
#include "services/unary_call.h"
#include "services/worker_control_service.h"

namespace clmae {
namespace {

// Upper bound of one chunk (the contract says at most 1 MiB).
constexpr size_t kMaxChunkBytes = size_t{1} << 20;

class UploadReactor final : public grpc::ServerReadReactor<v1::UploadCheckpointRequest> {
 public:
  UploadReactor(Coordinator* coordinator, const Authorizer& authorizer,
                grpc::CallbackServerContext* context, v1::UploadCheckpointResponse* response)
      : coordinator_(coordinator), context_(context), response_(response) {
    absl::StatusOr<Principal> auth = authorizer.Authorize(*context, Access::kTrainer);
    if (!auth.ok()) {
      Finish(ToGrpcStatus(auth.status()));
      return;
    }
    principal_ = *std::move(auth);
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The sender half-closed (the upload is complete as far as it knows),
      // or the call broke; a broken call records nothing.
      if (context_->IsCancelled()) {
        upload_.reset();
        Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the upload was cancelled"));
        return;
      }
      Finish(ToGrpcStatus(Commit()));
      return;
    }
    if (absl::Status handled = Handle(); !handled.ok()) {
      upload_.reset();  // removes the temporary file
      Finish(ToGrpcStatus(handled));
      return;
    }
    StartRead(&in_);
  }

  void OnDone() override { delete this; }

 private:
  absl::Status Handle() {
    if (upload_ == nullptr) {
      if (!in_.has_metadata()) {
        return absl::InvalidArgumentError(
            "an upload must start with the checkpoint's metadata, then its bytes");
      }
      RETURN_IF_ERROR(CheckTaskScope(principal_, in_.metadata().job_id(), in_.metadata().attempt(),
                                     /*rank=*/0));
      if (principal_.bound_to_node()) {  // rank 0 uploads
        RETURN_IF_ERROR(coordinator_->CheckTaskOnWorker(principal_.name, in_.metadata().job_id(),
                                                        in_.metadata().attempt(), /*rank=*/0,
                                                        /*require_running=*/false));
      }
      ASSIGN_OR_RETURN(upload_, coordinator_->BeginCheckpointUpload(in_.metadata()));
      return absl::OkStatus();
    }
    if (sha256_received_) {
      return absl::InvalidArgumentError("nothing may follow the SHA-256 at the end of an upload");
    }
    if (in_.part_case() == v1::UploadCheckpointRequest::kSha256) {
      sha256_received_ = true;
      return upload_->SetSha256(in_.sha256());
    }
    if (!in_.has_data()) {
      return absl::InvalidArgumentError("the metadata was sent twice; after it only data follows");
    }
    if (in_.data().size() > kMaxChunkBytes) {
      return absl::InvalidArgumentError(absl::StrCat("a chunk of ", in_.data().size(),
                                                     " bytes is over the limit of ", kMaxChunkBytes,
                                                     " (1 MiB)"));
    }
    return upload_->Append(in_.data());
  }

  absl::Status Commit() {
    if (upload_ == nullptr) {
      return absl::InvalidArgumentError("the upload ended before its metadata was sent");
    }
    ASSIGN_OR_RETURN(*response_->mutable_checkpoint(),
                     coordinator_->CommitCheckpointUpload(std::move(upload_)));
    return absl::OkStatus();
  }

  Coordinator* const coordinator_;
  grpc::CallbackServerContext* const context_;
  v1::UploadCheckpointResponse* const response_;
  Principal principal_;  // set before the first read
  v1::UploadCheckpointRequest in_;
  std::unique_ptr<CheckpointStore::Upload> upload_;
  bool sha256_received_ = false;
};

// Sends one checkpoint: its record, then its bytes from the offset.
class DownloadReactor final : public grpc::ServerWriteReactor<v1::DownloadCheckpointResponse> {
 public:
  // `find(principal)` runs after authorization and names the checkpoint.
  // With object storage the record is followed by one presigned URL
  // instead of the bytes, for a client that set `accept_url`.
  template <typename Find>
  DownloadReactor(Coordinator* coordinator, const Authorizer& authorizer, Access access,
                  grpc::CallbackServerContext* context, int64_t offset, bool accept_url,
                  Find&& find) {
    absl::StatusOr<Principal> principal = authorizer.Authorize(*context, access);
    absl::Status status = principal.ok() ? Open(coordinator, offset, accept_url, find(*principal))
                                         : principal.status();
    if (!status.ok()) {
      Finish(ToGrpcStatus(status));
      return;
    }
    *out_.mutable_checkpoint() = checkpoint_;
    StartWrite(&out_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
      return;
    }
    if (url_.has_value()) {
      if (url_sent_) {
        Finish(grpc::Status::OK);
        return;
      }
      url_sent_ = true;
      *out_.mutable_url() = *url_;
      StartWrite(&out_);
      return;
    }
    absl::StatusOr<std::string> chunk = reader_->Read(kMaxChunkBytes);
    if (!chunk.ok()) {
      Finish(ToGrpcStatus(chunk.status()));
      return;
    }
    if (chunk->empty()) {
      Finish(grpc::Status::OK);
      return;
    }
    out_.set_data(std::move(*chunk));
    StartWrite(&out_);
  }

  void OnDone() override { delete this; }

 private:
  absl::Status Open(Coordinator* coordinator, int64_t offset, bool accept_url,
                    absl::StatusOr<v1::Checkpoint> checkpoint) {
    if (!checkpoint.ok()) return checkpoint.status();
    checkpoint_ = std::move(*checkpoint);
    if (coordinator->CheckpointsPresigned()) {
      if (!accept_url) {
        return absl::FailedPreconditionError(
            "this coordinator keeps checkpoints in object storage and hands out presigned URLs "
            "only to clients that accept them (accept_url); update the client");
      }
      if (offset < 0 || offset > checkpoint_.metadata().size_bytes()) {
        return absl::InvalidArgumentError(
            absl::StrCat("offset ", offset, " is outside checkpoint ", checkpoint_.id(), " of ",
                         checkpoint_.metadata().size_bytes(), " bytes"));
      }
      ASSIGN_OR_RETURN(CheckpointStore::PresignedDownload download,
                       coordinator->PresignCheckpointDownload(checkpoint_));
      v1::PresignedDownload url;
      url.set_url(download.url);
      *url.mutable_expire_time() = ToProtoTime(download.expire_time);
      url_ = std::move(url);
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(reader_, coordinator->OpenCheckpoint(checkpoint_, offset));
    return absl::OkStatus();
  }

  v1::Checkpoint checkpoint_;
  std::optional<v1::PresignedDownload> url_;  // object storage: sent after the record
  bool url_sent_ = false;
  std::unique_ptr<CheckpointStore::Reader> reader_;
  v1::DownloadCheckpointResponse out_;
};

}  // namespace

grpc::ServerReadReactor<v1::UploadCheckpointRequest>* WorkerControlService::UploadCheckpoint(
    grpc::CallbackServerContext* context, v1::UploadCheckpointResponse* response) {
  return new UploadReactor(coordinator_, *authorizer_, context, response);
}

grpc::ServerWriteReactor<v1::DownloadCheckpointResponse>* WorkerControlService::FetchCheckpoint(
    grpc::CallbackServerContext* context, const v1::FetchCheckpointRequest* request) {
  return new DownloadReactor(coordinator_, *authorizer_, Access::kWorker, context,
                             request->offset(), request->accept_url(),
                             [&](const Principal& p) -> absl::StatusOr<v1::Checkpoint> {
                               RETURN_IF_ERROR(RequireJobId(request->job_id()));
                               // An agent fetches for the ranks placed on it.
                               if (p.bound_to_node()) {
                                 RETURN_IF_ERROR(coordinator_->CheckTaskOnWorker(
                                     p.name, request->job_id(), /*attempt=*/0, /*rank=*/-1,
                                     /*require_running=*/true));
                               }
                               v1::DownloadCheckpointRequest find;
                               find.set_job_id(request->job_id());
                               find.set_id(request->id());
                               return coordinator_->FindCheckpoint(find);
                             });
}

grpc::ServerUnaryReactor* CoordinatorService::ListCheckpoints(
    grpc::CallbackServerContext* context, const v1::ListCheckpointsRequest* request,
    v1::ListCheckpointsResponse* response) {
  return RunUnary(context, *authorizer_, Access::kClient, [&](const Principal& p) -> absl::Status {
    RETURN_IF_ERROR(RequireJobId(request->job_id()));
    RETURN_IF_ERROR(CheckOwner(*coordinator_, p, request->job_id()));
    ASSIGN_OR_RETURN(std::vector<v1::Checkpoint> checkpoints,
                     coordinator_->ListCheckpoints(request->job_id(), request->kind()));
    for (v1::Checkpoint& c : checkpoints) *response->add_checkpoints() = std::move(c);
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::DownloadCheckpointResponse>* CoordinatorService::DownloadCheckpoint(
    grpc::CallbackServerContext* context, const v1::DownloadCheckpointRequest* request) {
  return new DownloadReactor(coordinator_, *authorizer_, Access::kClient, context,
                             request->offset(), request->accept_url(),
                             [&](const Principal& p) -> absl::StatusOr<v1::Checkpoint> {
                               RETURN_IF_ERROR(RequireJobId(request->job_id()));
                               RETURN_IF_ERROR(CheckOwner(*coordinator_, p, request->job_id()));
                               return coordinator_->FindCheckpoint(*request);
                             });
}

}  // namespace clmae
