#include "worker/agent/attach_session.h"

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "services/status_mapping.h"
#include "worker/agent/agent_log.h"

namespace clmae {
namespace {

constexpr absl::Duration kDefaultHeartbeat = absl::Seconds(5);
constexpr absl::Duration kLeavingPoll = absl::Milliseconds(250);

std::string StatusLine(const v1::TaskStatus& s) {
  const std::string name = TaskName({s.job_id(), s.attempt(), s.rank()});
  if (s.state() == v1::TaskStatus::RUNNING) return absl::StrCat("reported ", name, " RUNNING");
  if (s.signal() != 0) return absl::StrCat("reported ", name, " EXITED by signal ", s.signal());
  return absl::StrCat("reported ", name, " EXITED with code ", s.exit_code());
}

}  // namespace

absl::Duration FromProtoDuration(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

absl::Status AttachSession::Run() {
  grpc::ClientContext context;
  AuthorizeCall(context, options_.client);
  {
    absl::MutexLock lock(&mu_);
    if (closing_) return absl::CancelledError("the agent is stopping");
    context_ = &context;
  }
  std::unique_ptr<v1::WorkerControl::Stub> stub = v1::WorkerControl::NewStub(options_.channel);
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::CoordinatorMessage>> stream =
      stub->Attach(&context);

  v1::AgentMessage hello;
  *hello.mutable_register_() = options_.registration;
  for (v1::Task& task : options_.ledger->Attach()) {
    *hello.mutable_register_()->add_running_tasks() = std::move(task);
  }
  const int running = hello.register_().running_tasks_size();

  absl::Status ended;
  bool protocol_error = false;  // this side ended the call
  v1::CoordinatorMessage message;
  std::thread writer;
  if (!stream->Write(hello)) {
    ended = absl::UnavailableError("the stream broke before register was sent");
  } else if (!stream->Read(&message)) {
    ended = absl::UnavailableError("the stream ended before the coordinator answered register");
  } else if (!message.has_registered()) {
    ended = absl::InternalError(
        "the coordinator answered register with another message than registered");
    protocol_error = true;
    context.TryCancel();
  } else {
    const v1::Registered& registered = message.registered();
    absl::Duration interval = FromProtoDuration(registered.heartbeat_interval());
    if (interval <= absl::ZeroDuration()) interval = kDefaultHeartbeat;
    const absl::Duration lease = FromProtoDuration(registered.lease());
    if (lease > absl::ZeroDuration()) options_.ledger->set_resend_window(lease);
    AgentLog(absl::StrCat("registered with ", options_.client.address, " as ",
                          options_.registration.worker_id(), " (", running,
                          " running task(s) listed; heartbeat every ",
                          absl::FormatDuration(interval), ")"));
    {
      absl::MutexLock lock(&mu_);
      registered_ = true;
    }
    writer = std::thread([this, s = stream.get(), interval] { WriteLoop(s, interval); });
    while (stream->Read(&message)) Dispatch(message);
  }
  // The read side is done: stop the writer (it may be blocked in Peek).
  {
    absl::MutexLock lock(&mu_);
    ended_ = true;
  }
  options_.ledger->Interrupt();
  if (writer.joinable()) writer.join();
  options_.ledger->Detach(absl::Now());
  const grpc::Status finished = stream->Finish();
  {
    absl::MutexLock lock(&mu_);
    context_ = nullptr;
    if (closing_) return absl::CancelledError("the agent is stopping");
  }
  if (!ended.ok()) return finished.ok() || protocol_error ? ended : FromGrpcStatus(finished);
  return finished.ok() ? absl::UnavailableError("the coordinator ended the stream")
                       : FromGrpcStatus(finished);
}

void AttachSession::WriteLoop(
    grpc::ClientReaderWriter<v1::AgentMessage, v1::CoordinatorMessage>* stream,
    absl::Duration heartbeat_interval) {
  absl::Time next_heartbeat = absl::Now() + heartbeat_interval;
  bool broken = false;
  for (;;) {
    std::optional<std::string> leaving;
    {
      absl::MutexLock lock(&mu_);
      leaving.swap(leaving_);
    }
    if (leaving.has_value()) {
      v1::AgentMessage out;
      out.mutable_leaving()->set_reason(*leaving);
      if (!stream->Write(out)) {
        broken = true;
        break;
      }
      AgentLog("told the coordinator this agent is leaving");
      absl::MutexLock lock(&mu_);
      left_ = true;
    }
    // Wakes at least every kLeavingPoll to notice Leave().
    std::optional<v1::TaskStatus> status =
        options_.ledger->Peek(std::min(next_heartbeat, absl::Now() + kLeavingPoll));
    if (status.has_value()) {
      v1::AgentMessage out;
      *out.mutable_task_status() = *status;
      if (!stream->Write(out)) {
        broken = true;
        break;
      }
      options_.ledger->Written(absl::Now());
      AgentLog(StatusLine(*status));
      continue;
    }
    {
      absl::MutexLock lock(&mu_);
      if (closing_ || ended_) break;
    }
    const absl::Time now = absl::Now();
    if (now < next_heartbeat) continue;
    v1::AgentMessage out;
    out.mutable_heartbeat();
    if (!stream->Write(out)) {
      broken = true;
      break;
    }
    next_heartbeat = now + heartbeat_interval;
  }
  bool half_close = false;
  {
    absl::MutexLock lock(&mu_);
    if (broken) {
      // Wakes the reader, which ends the session.
      if (context_ != nullptr) context_->TryCancel();
    }
    half_close = !broken && closing_ && !ended_;
  }
  // Everything written so far reaches the coordinator before the end of the
  // stream, which the coordinator then ends from its side.
  if (half_close) stream->WritesDone();
}

void AttachSession::Dispatch(const v1::CoordinatorMessage& message) {
  switch (message.msg_case()) {
    case v1::CoordinatorMessage::kAssign: {
      const v1::TaskAssignment& task = message.assign().task();
      AgentLog(absl::StrCat("assigned ", TaskName({task.job_id(), task.attempt(), task.rank()}),
                            " of ", task.world_size(), " on ", task.device_kind(), ":",
                            task.device_index()));
      options_.supervisor->Start(task);
      break;
    }
    case v1::CoordinatorMessage::kCancel: {
      const v1::Cancel& cancel = message.cancel();
      const absl::Duration grace =
          cancel.has_grace() ? FromProtoDuration(cancel.grace()) : options_.default_cancel_grace;
      const TaskId id{cancel.job_id(), cancel.attempt(), cancel.rank()};
      AgentLog(absl::StrCat("cancel ", TaskName(id), ": ", cancel.reason()));
      options_.supervisor->Cancel(id, grace, cancel.reason());
      break;
    }
    case v1::CoordinatorMessage::kRegistered:
      AgentLog("ignored a second `registered` on one stream");
      break;
    case v1::CoordinatorMessage::MSG_NOT_SET:
      AgentLog("ignored an empty message from the coordinator");
      break;
  }
}

bool AttachSession::Leave(const std::string& reason, absl::Duration wait) {
  absl::MutexLock lock(&mu_);
  if (closing_ || ended_) return false;
  leaving_ = reason;
  auto written = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return left_ || closing_ || ended_; };
  mu_.AwaitWithTimeout(absl::Condition(&written), wait);
  return left_;
}

void AttachSession::Close(absl::Duration linger) {
  bool cancel_now = false;
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
    cancel_now = !registered_;
    if (cancel_now && context_ != nullptr) context_->TryCancel();
  }
  options_.ledger->Interrupt();
  if (cancel_now) return;
  absl::MutexLock lock(&mu_);
  auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return ended_ || context_ == nullptr; };
  if (!mu_.AwaitWithTimeout(absl::Condition(&done), linger) && context_ != nullptr) {
    context_->TryCancel();
  }
}

bool AttachSession::registered() const {
  absl::MutexLock lock(&mu_);
  return registered_;
}

}  // namespace clmae
