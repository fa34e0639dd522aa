#pragma once

// The `clmae.v1.WorkerControl` service for node agents (Attach) and trainers
// (ReportProgress): a thin adapter over the domain's Coordinator. Every RPC
// needs a worker token.

#include "clmae/v1/worker_control.grpc.pb.h"
#include "coordinator/coordinator.h"
#include "services/auth.h"

namespace clmae {

class WorkerControlService final : public v1::WorkerControl::CallbackService {
 public:
  // Messages waiting for one agent beyond this end its stream with
  // RESOURCE_EXHAUSTED (the agent reconnects, registers and lists what it
  // runs, so nothing is lost; assignments and cancels are never dropped
  // silently).
  static constexpr size_t kMaxQueuedMessages = 4096;

  // `coordinator` and `authorizer` are not owned and must outlive the server.
  WorkerControlService(clmae::Coordinator* coordinator, const Authorizer* authorizer)
      : coordinator_(coordinator), authorizer_(authorizer) {}

  // One stream per agent. The first message must be `register`
  // (FAILED_PRECONDITION otherwise, and for a second one); then heartbeats
  // and task statuses. The stream is ended with the domain's status when a
  // heartbeat finds the lease expired (FAILED_PRECONDITION: register again)
  // or a task status cannot be recorded; a task status the domain calls
  // INVALID_ARGUMENT is logged and skipped. When the stream ends the agent is
  // detached (it keeps its ranks until its lease runs out).
  grpc::ServerBidiReactor<v1::AgentMessage, v1::CoordinatorMessage>* Attach(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* ReportProgress(grpc::CallbackServerContext* context,
                                           const v1::ReportProgressRequest* request,
                                           v1::ReportProgressResponse* response) override;
  // checkpoint_handlers.cc. Metadata, then chunks of at most 1 MiB; the
  // checkpoint is committed when the trainer half-closes and is answered
  // only once durable. A broken or cancelled stream records nothing.
  grpc::ServerReadReactor<v1::UploadCheckpointRequest>* UploadCheckpoint(
      grpc::CallbackServerContext* context, v1::UploadCheckpointResponse* response) override;
  grpc::ServerWriteReactor<v1::DownloadCheckpointResponse>* FetchCheckpoint(
      grpc::CallbackServerContext* context, const v1::FetchCheckpointRequest* request) override;
  // Presigned uploads (checkpoint_presigned_handlers.cc).
  grpc::ServerUnaryReactor* BeginCheckpointUpload(
      grpc::CallbackServerContext* context, const v1::BeginCheckpointUploadRequest* request,
      v1::BeginCheckpointUploadResponse* response) override;
  grpc::ServerUnaryReactor* CommitCheckpointUpload(grpc::CallbackServerContext* context,
                                                   const v1::CommitCheckpointUploadRequest* request,
                                                   v1::UploadCheckpointResponse* response) override;
  grpc::ServerUnaryReactor* AbortCheckpointUpload(
      grpc::CallbackServerContext* context, const v1::AbortCheckpointUploadRequest* request,
      v1::AbortCheckpointUploadResponse* response) override;

 private:
  clmae::Coordinator* const coordinator_;
  const Authorizer* const authorizer_;
};

}  // namespace clmae
