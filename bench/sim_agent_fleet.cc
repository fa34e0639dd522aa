#include "bench/sim_agent_fleet.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "grpc/grpc.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace clmae::bench {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string SimAgentFleet::WorkerId(int agent) { return absl::StrFormat("sim-node-%05d", agent); }

namespace {

constexpr char kProbePrefix[] = "probe-";
constexpr absl::Duration kTickPeriod = absl::Milliseconds(5);

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

bool HeapLater(int64_t a, int64_t b) { return a > b; }

}  // namespace

// One agent's Attach stream. Writes go through a queue with one write in
// flight (the callback API's rule); a hold keeps the reactor alive until
// reads have ended and the last write completed, so Send() from the ticker
// thread never races OnDone.
class AgentReactor final
    : public grpc::ClientBidiReactor<v1::AgentMessage, v1::CoordinatorMessage> {
 public:
  AgentReactor(SimAgentFleet* fleet, int index, const std::string& token)
      : fleet_(fleet), index_(index) {
    if (!token.empty()) context_.AddMetadata("authorization", absl::StrCat("Bearer ", token));
  }

  void Begin(v1::WorkerControl::Stub* stub, v1::Register registration) {
    stub->async()->Attach(&context_, this);
    AddHold();
    StartRead(&in_);
    v1::AgentMessage message;
    *message.mutable_register_() = std::move(registration);
    Send(std::move(message));
    StartCall();
  }

  // Thread-safe; dropped once the stream has ended.
  void Send(v1::AgentMessage message) {
    {
      absl::MutexLock lock(&mu_);
      if (closed_) return;
      if (writing_) {
        queue_.push_back(std::move(message));
        return;
      }
      writing_ = true;
      out_ = std::move(message);
    }
    StartWrite(&out_);
  }

  void Cancel() { context_.TryCancel(); }
  void WaitDone() { done_.WaitForNotification(); }

  // Touched by the ticker thread only.
  int64_t next_heartbeat_ns = 0;

  void OnReadDone(bool ok) override {
    if (!ok) {
      Close();
      return;
    }
    switch (in_.msg_case()) {
      case v1::CoordinatorMessage::kRegistered:
        fleet_->OnRegistered(FromProto(in_.registered().heartbeat_interval()));
        break;
      case v1::CoordinatorMessage::kAssign: {
        const v1::TaskAssignment& task = in_.assign().task();
        fleet_->OnAssign(index_, task);
        v1::AgentMessage running;
        v1::TaskStatus* status = running.mutable_task_status();
        status->set_job_id(task.job_id());
        status->set_attempt(task.attempt());
        status->set_rank(task.rank());
        status->set_state(v1::TaskStatus::RUNNING);
        Send(std::move(running));
        break;
      }
      case v1::CoordinatorMessage::kCancel: {
        const v1::Cancel& cancel = in_.cancel();
        if (absl::StartsWith(cancel.job_id(), kProbePrefix)) {
          fleet_->OnProbeAnswered();
          break;
        }
        fleet_->cancels_.fetch_add(1);
        v1::AgentMessage exited;
        v1::TaskStatus* status = exited.mutable_task_status();
        status->set_job_id(cancel.job_id());
        status->set_attempt(cancel.attempt());
        status->set_rank(cancel.rank());
        status->set_state(v1::TaskStatus::EXITED);
        status->set_signal(15);
        Send(std::move(exited));
        break;
      }
      case v1::CoordinatorMessage::MSG_NOT_SET:
        break;
    }
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    bool next = false;
    bool release = false;
    {
      absl::MutexLock lock(&mu_);
      if (ok && out_.has_heartbeat()) fleet_->heartbeats_sent_.fetch_add(1);
      if (!ok) closed_ = true;
      if (!closed_ && !queue_.empty()) {
        out_ = std::move(queue_.front());
        queue_.pop_front();
        next = true;
      } else {
        writing_ = false;
        queue_.clear();
        if (closed_ && !released_) release = released_ = true;
      }
    }
    if (next) StartWrite(&out_);
    if (release) RemoveHold();
  }

  void OnDone(const grpc::Status& status) override {
    fleet_->OnStreamEnded(!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED);
    done_.Notify();
  }

 private:
  void Close() {
    bool release = false;
    {
      absl::MutexLock lock(&mu_);
      closed_ = true;
      if (!writing_ && !released_) release = released_ = true;
    }
    if (release) RemoveHold();
  }

  SimAgentFleet* const fleet_;
  const int index_;
  grpc::ClientContext context_;
  v1::CoordinatorMessage in_;
  absl::Notification done_;
  absl::Mutex mu_;
  v1::AgentMessage out_;  // the write in flight
  std::deque<v1::AgentMessage> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
};

SimAgentFleet::SimAgentFleet(FleetOptions options) : options_(std::move(options)) {}

SimAgentFleet::~SimAgentFleet() { Stop(); }

absl::Status SimAgentFleet::Start(absl::Duration timeout) {
  started_ = true;
  const int connections =
      options_.connections > 0 ? std::min(options_.connections, options_.agents) : options_.agents;
  for (int c = 0; c < connections; ++c) {
    grpc::ChannelArguments args;
    // Without this, channels with equal arguments share one connection.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    channels_.push_back(
        grpc::CreateCustomChannel(options_.address, grpc::InsecureChannelCredentials(), args));
    stubs_.push_back(v1::WorkerControl::NewStub(channels_.back()));
  }
  for (int i = 0; i < options_.agents; ++i) {
    agents_.push_back(std::make_unique<AgentReactor>(this, i, options_.token));
  }
  for (int i = 0; i < options_.agents; ++i) {
    v1::Register registration;
    registration.set_worker_id(WorkerId(i));
    registration.set_address(
        absl::StrFormat("10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255));
    for (int g = 0; g < options_.gpus_per_agent; ++g) {
      v1::Device* device = registration.add_devices();
      device->set_index(g);
      device->set_name("Simulated H100");
      device->set_memory_bytes(int64_t{80} << 30);
      device->set_kind("cuda");
    }
    agents_[i]->Begin(stubs_[i % stubs_.size()].get(), std::move(registration));
  }
  absl::MutexLock lock(&mu_);
  auto all_registered = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return registered_ == options_.agents || ended_ > 0;
  };
  mu_.AwaitWithTimeout(absl::Condition(&all_registered), timeout);
  if (ended_ > 0) {
    return absl::UnavailableError(absl::StrCat(ended_, " Attach streams ended before registering"));
  }
  if (registered_ < options_.agents) {
    return absl::DeadlineExceededError(
        absl::StrCat(registered_, " of ", options_.agents, " agents registered in time"));
  }
  const absl::Duration interval =
      options_.heartbeat_interval > absl::ZeroDuration() ? options_.heartbeat_interval : interval_;
  // Spread the first heartbeats over one interval, as agents started at
  // different times would be.
  const int64_t now = NowNs();
  for (int i = 0; i < options_.agents; ++i) {
    agents_[i]->next_heartbeat_ns =
        now + absl::ToInt64Nanoseconds(interval) * i / std::max(1, options_.agents);
  }
  ticker_ = std::thread([this] { TickLoop(); });
  return absl::OkStatus();
}

void SimAgentFleet::Stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  stopping_.store(true);
  {
    absl::MutexLock lock(&mu_);
    ticker_stop_ = true;
  }
  if (ticker_.joinable()) ticker_.join();
  for (auto& agent : agents_) agent->Cancel();
  for (auto& agent : agents_) agent->WaitDone();
}

absl::Duration SimAgentFleet::coordinator_heartbeat_interval() const {
  absl::MutexLock lock(const_cast<absl::Mutex*>(&mu_));
  return interval_;
}

absl::StatusOr<double> SimAgentFleet::FloodHeartbeats(int per_agent, absl::Duration timeout) {
  {
    absl::MutexLock lock(&mu_);
    probes_answered_ = 0;
  }
  const int64_t start = NowNs();
  for (int i = 0; i < options_.agents; ++i) {
    for (int k = 0; k < per_agent; ++k) {
      v1::AgentMessage heartbeat;
      heartbeat.mutable_heartbeat();
      agents_[i]->Send(std::move(heartbeat));
    }
    v1::AgentMessage probe;
    v1::TaskStatus* status = probe.mutable_task_status();
    status->set_job_id(absl::StrCat(kProbePrefix, i));
    status->set_attempt(1);
    status->set_state(v1::TaskStatus::RUNNING);
    agents_[i]->Send(std::move(probe));
  }
  absl::MutexLock lock(&mu_);
  auto answered = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return probes_answered_ == options_.agents;
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&answered), timeout)) {
    return absl::DeadlineExceededError(absl::StrCat(probes_answered_, " of ", options_.agents,
                                                    " heartbeat probes answered in time"));
  }
  return static_cast<double>(NowNs() - start) * 1e-9;
}

bool SimAgentFleet::Lookup(const std::string& job_id, AssignRecord* out) {
  Shard& shard = shards_[absl::Hash<std::string>()(job_id) % std::size(shards_)];
  absl::MutexLock lock(&shard.mu);
  auto it = shard.records.find(job_id);
  if (it == shard.records.end()) return false;
  *out = it->second;
  return true;
}

void SimAgentFleet::OnRegistered(absl::Duration interval) {
  absl::MutexLock lock(&mu_);
  ++registered_;
  interval_ = interval;
}

void SimAgentFleet::OnAssign(int agent, const v1::TaskAssignment& task) {
  const int64_t now = NowNs();
  assigns_.fetch_add(1);
  {
    Shard& shard = shards_[absl::Hash<std::string>()(task.job_id()) % std::size(shards_)];
    absl::MutexLock lock(&shard.mu);
    AssignRecord& record = shard.records[task.job_id()];
    if (record.count++ == 0) record.first_ns = now;
    record.last_ns = now;
    record.ranks.push_back(
        AssignedRank{task.attempt(), task.rank(), WorkerId(agent), task.device_index()});
  }
  if (hold_.load()) return;
  // A job that says how long it runs runs that long.
  const int64_t estimated_s = task.spec().resources().estimated_seconds();
  const absl::Duration run_time = estimated_s > 0 ? absl::Seconds(estimated_s) : options_.task_time;
  absl::MutexLock lock(&mu_);
  exits_.push_back(PendingExit{now + absl::ToInt64Nanoseconds(run_time), agent, task});
  std::push_heap(exits_.begin(), exits_.end(), [](const PendingExit& a, const PendingExit& b) {
    return HeapLater(a.due_ns, b.due_ns);
  });
}

void SimAgentFleet::OnProbeAnswered() {
  absl::MutexLock lock(&mu_);
  ++probes_answered_;
}

void SimAgentFleet::OnStreamEnded(bool error) {
  if (error && !stopping_.load()) broken_streams_.fetch_add(1);
  absl::MutexLock lock(&mu_);
  ++ended_;
}

void SimAgentFleet::TickLoop() {
  const absl::Duration interval = options_.heartbeat_interval > absl::ZeroDuration()
                                      ? options_.heartbeat_interval
                                      : coordinator_heartbeat_interval();
  const int64_t interval_ns = absl::ToInt64Nanoseconds(interval);
  const auto later = [](const PendingExit& a, const PendingExit& b) {
    return HeapLater(a.due_ns, b.due_ns);
  };
  for (;;) {
    std::vector<PendingExit> due;
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&ticker_stop_), kTickPeriod)) return;
      const int64_t now = NowNs();
      while (!exits_.empty() && exits_.front().due_ns <= now) {
        std::pop_heap(exits_.begin(), exits_.end(), later);
        due.push_back(std::move(exits_.back()));
        exits_.pop_back();
      }
    }
    for (PendingExit& exit : due) {
      v1::AgentMessage message;
      v1::TaskStatus* status = message.mutable_task_status();
      status->set_job_id(exit.task.job_id());
      status->set_attempt(exit.task.attempt());
      status->set_rank(exit.task.rank());
      status->set_state(v1::TaskStatus::EXITED);
      status->set_exit_code(0);
      agents_[exit.agent]->Send(std::move(message));
    }
    if (!heartbeats_on_.load()) continue;
    const int64_t now = NowNs();
    for (auto& agent : agents_) {
      if (agent->next_heartbeat_ns > now) continue;
      // A late tick sends one heartbeat, not a burst.
      agent->next_heartbeat_ns += interval_ns;
      if (agent->next_heartbeat_ns <= now) agent->next_heartbeat_ns = now + interval_ns;
      v1::AgentMessage heartbeat;
      heartbeat.mutable_heartbeat();
      agent->Send(std::move(heartbeat));
    }
  }
}

}  // namespace clmae::bench
