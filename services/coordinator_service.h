#pragma once

// The client-facing `clmae.v1.Coordinator` service: a thin adapter from the
// callback API to the domain's Coordinator (proto in, absl::Status out,
// mapped by status_mapping.h). Every RPC needs a client token.

#include <string>

#include "absl/status/status.h"
#include "clmae/v1/coordinator.grpc.pb.h"
#include "coordinator/coordinator.h"
#include "services/auth.h"
#include "services/blocking_call_pool.h"

namespace clmae {

// INVALID_ARGUMENT "job_id: required; ..." for an empty job id, else OK: the
// one check of every RPC that names a job (both services).
absl::Status RequireJobId(const std::string& job_id);

// OK for an operator; for a user, OK when they own the job `job_id`,
// PERMISSION_DENIED when another principal does (NOT_FOUND when there is
// no such job).
absl::Status CheckOwner(clmae::Coordinator& coordinator, const Principal& principal,
                        const std::string& job_id);

class CoordinatorService final : public v1::Coordinator::CallbackService {
 public:
  // Per WatchJob stream: updates waiting for a slow client beyond this end
  // the stream with RESOURCE_EXHAUSTED (the client watches again and gets a
  // fresh snapshot). Progress updates of one job coalesce while waiting, so
  // only state changes count against it in practice.
  static constexpr size_t kMaxQueuedUpdates = 1024;

  // `coordinator` and `authorizer` are not owned and must outlive the server
  // (shut the server down first).
  CoordinatorService(clmae::Coordinator* coordinator, const Authorizer* authorizer)
      : coordinator_(coordinator), authorizer_(authorizer), submissions_(kSubmitThreads) {}

  // SubmitJob handlers waiting for their commit at once (BlockingCallPool):
  // that many submissions can share one commit.
  static constexpr int kSubmitThreads = 32;

  // Validates the spec with ValidateJobSpecForService (INVALID_ARGUMENT naming the
  // field) before the domain stores it.
  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* context,
                                      const v1::SubmitJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context,
                                   const v1::GetJobRequest* request, v1::Job* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* context,
                                     const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* context,
                                      const v1::CancelJobRequest* request,
                                      v1::Job* response) override;
  // A snapshot, then events and progress; one job's stream ends (OK) after
  // its terminal state. Ends when the client cancels or the server shuts
  // down, unregistering its watch.
  grpc::ServerWriteReactor<v1::JobUpdate>* WatchJob(grpc::CallbackServerContext* context,
                                                    const v1::WatchJobRequest* request) override;
  grpc::ServerUnaryReactor* ListWorkers(grpc::CallbackServerContext* context,
                                        const v1::ListWorkersRequest* request,
                                        v1::ListWorkersResponse* response) override;
  grpc::ServerUnaryReactor* DrainWorker(grpc::CallbackServerContext* context,
                                        const v1::DrainWorkerRequest* request,
                                        v1::Worker* response) override;
  // checkpoint_handlers.cc.
  grpc::ServerUnaryReactor* ListCheckpoints(grpc::CallbackServerContext* context,
                                            const v1::ListCheckpointsRequest* request,
                                            v1::ListCheckpointsResponse* response) override;
  grpc::ServerWriteReactor<v1::DownloadCheckpointResponse>* DownloadCheckpoint(
      grpc::CallbackServerContext* context, const v1::DownloadCheckpointRequest* request) override;

 private:
  clmae::Coordinator* const coordinator_;
  const Authorizer* const authorizer_;
  BlockingCallPool submissions_;  // runs SubmitJob's domain call
};

}  // namespace clmae
