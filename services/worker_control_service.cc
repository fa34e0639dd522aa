#include "services/worker_control_service.h"

#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "services/status_mapping.h"
#include "services/stream_writer.h"
#include "services/unary_call.h"

namespace clmae {
namespace {

using AttachReactorBase = grpc::ServerBidiReactor<v1::AgentMessage, v1::CoordinatorMessage>;
using AgentWriter = StreamWriter<AttachReactorBase, v1::CoordinatorMessage>;

// The coordinator's outbound half of one agent's stream: queues only (the
// AgentSink contract), the writer sends one message at a time.
class StreamSink final : public AgentSink {
 public:
  explicit StreamSink(std::shared_ptr<AgentWriter> writer) : writer_(std::move(writer)) {}
  void Send(const v1::CoordinatorMessage& message) override { writer_->Push(message); }

 private:
  const std::shared_ptr<AgentWriter> writer_;
};

class AttachReactor final : public AttachReactorBase {
 public:
  AttachReactor(clmae::Coordinator* coordinator, const Authorizer& authorizer,
                grpc::CallbackServerContext* context)
      : coordinator_(coordinator),
        writer_(std::make_shared<AgentWriter>(
            this, WorkerControlService::kMaxQueuedMessages,
            "the agent reads too slowly; reconnect and register again", /*held=*/false)) {
    absl::StatusOr<Principal> auth = authorizer.Authorize(*context, Access::kWorker);
    if (!auth.ok()) {
      writer_->FinishNow(ToGrpcStatus(auth.status()));
      return;
    }
    principal_ = *std::move(auth);
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The agent closed its half, went away, or the call was cancelled.
      writer_->FinishNow(grpc::Status::OK);
      return;
    }
    if (absl::Status handled = Handle(in_); !handled.ok()) {
      writer_->FinishNow(ToGrpcStatus(handled));
      return;
    }
    // Reading after a finish from another thread is harmless: the read
    // fails and lands above.
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override { writer_->OnWriteDone(ok); }

  void OnCancel() override {
    writer_->FinishNow(grpc::Status(grpc::StatusCode::CANCELLED, "the stream was cancelled"));
  }

  void OnDone() override {
    if (sink_ != nullptr) coordinator_->AgentDetached(worker_id_, sink_.get());
    delete this;
  }

 private:
  absl::Status Handle(const v1::AgentMessage& message) {
    if (sink_ == nullptr) {
      if (!message.has_register_()) {
        return absl::FailedPreconditionError(
            "the first message on an Attach stream must be `register`");
      }
      // A node's credential registers only as that node.
      if (principal_.bound_to_node() && message.register_().worker_id() != principal_.name) {
        return absl::PermissionDeniedError(
            absl::StrCat("worker principal '", principal_.name, "' may register only as worker '",
                         principal_.name, "', not '", message.register_().worker_id(), "'"));
      }
      auto sink = std::make_shared<StreamSink>(writer_);
      absl::Status attached = coordinator_->AgentAttached(message.register_(), sink);
      if (!attached.ok()) return attached;
      sink_ = std::move(sink);
      worker_id_ = message.register_().worker_id();
      return absl::OkStatus();
    }
    switch (message.msg_case()) {
      case v1::AgentMessage::kRegister:
        return absl::FailedPreconditionError(
            "`register` was sent twice on one stream; open a new stream to register again");
      case v1::AgentMessage::kHeartbeat:
        return coordinator_->Heartbeat(worker_id_);
      case v1::AgentMessage::kTaskStatus: {
        absl::Status recorded = coordinator_->TaskStatus(worker_id_, message.task_status());
        if (recorded.code() == absl::StatusCode::kInvalidArgument) {
          absl::FPrintF(stderr, "clmae-coordinator: worker %s: task status skipped: %s\n",
                        worker_id_, recorded.message());
          return absl::OkStatus();
        }
        return recorded;
      }
      case v1::AgentMessage::kLeaving:
        return coordinator_->AgentLeaving(worker_id_, message.leaving().reason());
      case v1::AgentMessage::MSG_NOT_SET:
        return absl::InvalidArgumentError("an empty AgentMessage; set one of its fields");
    }
    return absl::InvalidArgumentError(
        absl::StrCat("unknown AgentMessage field ", static_cast<int>(message.msg_case())));
  }

  clmae::Coordinator* const coordinator_;
  const std::shared_ptr<AgentWriter> writer_;
  v1::AgentMessage in_;
  Principal principal_;  // set before the first read
  // Set once `register` succeeded; touched only by reactions (serialized).
  std::shared_ptr<StreamSink> sink_;
  std::string worker_id_;
};

}  // namespace

grpc::ServerBidiReactor<v1::AgentMessage, v1::CoordinatorMessage>* WorkerControlService::Attach(
    grpc::CallbackServerContext* context) {
  return new AttachReactor(coordinator_, *authorizer_, context);
}

grpc::ServerUnaryReactor* WorkerControlService::ReportProgress(
    grpc::CallbackServerContext* context, const v1::ReportProgressRequest* request,
    v1::ReportProgressResponse* /*response*/) {
  return RunUnary(context, *authorizer_, Access::kTrainer, [&](const Principal& p) -> absl::Status {
    RETURN_IF_ERROR(CheckTaskScope(p, request->job_id(), request->attempt(), request->rank()));
    if (p.bound_to_node()) {
      RETURN_IF_ERROR(coordinator_->CheckTaskOnWorker(p.name, request->job_id(), request->attempt(),
                                                      request->rank(),
                                                      /*require_running=*/false));
    }
    return coordinator_->ReportProgress(*request);
  });
}

}  // namespace clmae
