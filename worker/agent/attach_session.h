#pragma once

// One WorkerControl.Attach stream, from `register` to its end: sends the
// registration (with what the agent still runs), then the queued task
// statuses and heartbeats from a writer thread, while the calling thread
// reads assignments and cancels and hands them to the TaskSupervisor.

#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "clmae/v1/worker_control.grpc.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "services/grpc_client.h"
#include "worker/agent/task_ledger.h"
#include "worker/agent/task_supervisor.h"

namespace clmae {

struct AttachSessionOptions {
  // The registration: worker id, address, devices and CPU slots.
  // running_tasks is filled in from the ledger.
  v1::Register registration;
  ClientOptions client;  // for the call's token
  std::shared_ptr<grpc::Channel> channel;
  // Both must outlive the session.
  TaskLedger* ledger = nullptr;
  TaskSupervisor* supervisor = nullptr;
  // For a Cancel that carries no grace.
  absl::Duration default_cancel_grace = absl::Seconds(30);
};

// Used by one connection attempt; Run() once. Close() may be called from any
// thread, before, during or after Run().
class AttachSession {
 public:
  explicit AttachSession(AttachSessionOptions options) : options_(std::move(options)) {}

  // Runs the stream until it ends or Close() ends it, and returns how it
  // ended (the RPC's status, FromGrpcStatus; INTERNAL when the coordinator
  // answered `register` with something else; CANCELLED after Close()).
  absl::Status Run();

  // Ends Run(): the writer stops after the status it is writing, half-closes
  // the stream (so what was written is delivered in order) and Run() waits
  // up to `linger` for the coordinator to end the call before cancelling it.
  void Close(absl::Duration linger);

  // Whether the coordinator answered `register` on this stream.
  bool registered() const;

  // Tells the coordinator that the agent is shutting down, so nothing new
  // is placed here, and waits up to `wait` until that was written (so it
  // arrives before the exits of the trainers the agent then stops). Returns
  // whether it was written. A no-op after Close().
  bool Leave(const std::string& reason, absl::Duration wait);

 private:
  void WriteLoop(grpc::ClientReaderWriter<v1::AgentMessage, v1::CoordinatorMessage>* stream,
                 absl::Duration heartbeat_interval);
  void Dispatch(const v1::CoordinatorMessage& message);

  const AttachSessionOptions options_;

  mutable absl::Mutex mu_;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;  // the read loop has ended
  bool registered_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<std::string> leaving_ ABSL_GUARDED_BY(mu_);  // to be written
  bool left_ ABSL_GUARDED_BY(mu_) = false;                   // it was written
};

// A protobuf Duration as an absl::Duration.
absl::Duration FromProtoDuration(const google::protobuf::Duration& d);

}  // namespace clmae
