// Coordinator: what agents (Attach stream) and trainers (ReportProgress)
// tell it, including reconciliation when an agent (re-)attaches.

#include <csignal>
#include <set>

#include "absl/strings/str_cat.h"
#include "coordinator/coordinator.h"
#include "coordinator/job_state_machine.h"
#include "coordinator/proto_time.h"
// Header-only: the trainer's exit codes.
#include "common/exit_codes.h"
#include "common/status_macros.h"

namespace clmae {
namespace {

std::string ExitReason(int rank, const std::string& worker_id, const v1::TaskStatus& status) {
  std::string reason = status.signal() != 0
                           ? absl::StrCat("rank ", rank, " on worker ", worker_id,
                                          " was killed by signal ", status.signal())
                           : absl::StrCat("rank ", rank, " on worker ", worker_id,
                                          " exited with code ", status.exit_code());
  if (!status.message().empty()) absl::StrAppend(&reason, ": ", status.message());
  return reason;
}

// A write of the job's record (its result) without a state change.
JobWrite RecordUpdate(const v1::Job& job) {
  JobWrite write;
  write.job = job;
  write.transition = false;
  return write;
}

}  // namespace

absl::Status Coordinator::AgentAttached(const v1::Register& registration,
                                        std::shared_ptr<AgentSink> sink) {
  if (sink == nullptr) return absl::InvalidArgumentError("AgentAttached: no sink");
  const std::string& worker_id = registration.worker_id();
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = options_.clock();
    // Forgets what the worker held; what it still runs is re-added below.
    RETURN_IF_ERROR(registry_.Register(registration, now));
    sinks_[worker_id] = sink;
    const auto drain = drained_.find(worker_id);
    if (drain != drained_.end()) registry_.SetDraining(worker_id, true).IgnoreError();
    Log(absl::StrCat("worker ", worker_id, " attached (", registration.running_tasks_size(),
                     " running ranks", drain != drained_.end() ? "; drained by an operator" : "",
                     ")"));
    v1::CoordinatorMessage registered;
    *registered.mutable_registered()->mutable_lease() = ToProtoDuration(options_.lease);
    *registered.mutable_registered()->mutable_heartbeat_interval() =
        ToProtoDuration(options_.heartbeat_interval);
    outbox_.ToAgent(sink, std::move(registered));

    std::set<TaskKey> reported;
    for (const v1::Task& t : registration.running_tasks()) {
      const TaskKey task{t.job_id(), t.attempt(), t.rank()};
      reported.insert(task);
      ActiveJob* active = CurrentAttempt(task, worker_id);
      bool adopted = false;
      if (active != nullptr && IsPlaced(active->job.state())) {
        const v1::Placement& p = active->job.placement();
        const v1::RankPlacement& r = p.ranks(task.rank);
        adopted = r.device_index() == t.device_index() && r.device_kind() == t.device_kind() &&
                  registry_
                      .Occupy(task, worker_id, r.device_kind(), r.device_index(),
                              task.rank == 0 ? std::optional<int>(p.master_port()) : std::nullopt)
                      .ok();
      }
      if (adopted) {
        RankState& rank = active->ranks[task.rank];
        if (rank.phase == RankState::Phase::kAssigned) rank.advanced_at = now;
        rank.heard_at = std::max(rank.heard_at, now);
        rank.phase = RankState::Phase::kRunning;
        rank.confirmed = true;
        // A drain that moves jobs was under way: the ranks' exits on its
        // SIGTERM still count as a preemption.
        if (drain != drained_.end() && drain->second) active->stop_requested = true;
        continue;
      }
      // A rank of the superseded attempt, late but alive: it may still
      // finish while nothing newer runs. Its device stays busy meanwhile.
      if (ActiveJob* late = SupersededAttempt(task, worker_id);
          late != nullptr && late->job.state() == v1::JOB_STATE_PENDING &&
          registry_.Occupy(task, worker_id, t.device_kind(), t.device_index()).ok()) {
        RankState& rank = late->superseded->ranks[task.rank];
        rank.phase = RankState::Phase::kRunning;
        rank.confirmed = true;
        continue;
      }
      // An orphan (its attempt is over, or unknown here): keep its device
      // busy until the agent reports it gone, and stop it.
      registry_.Occupy(task, worker_id, t.device_kind(), t.device_index()).IgnoreError();
      SendCancel(worker_id, task, absl::StrCat(TaskName(task), " is not a current task"),
                 options_.cancel_grace);
    }
    // Ranks placed here that the agent did not list: their exit may follow
    // as a task status; otherwise they are lost when the lease passes.
    for (auto& [id, active] : jobs_) {
      if (!IsPlaced(active.job.state())) continue;
      const v1::Placement& p = active.job.placement();
      for (size_t r = 0; r < active.ranks.size(); ++r) {
        RankState& rank = active.ranks[r];
        const TaskKey task{id, active.job.attempt(), static_cast<int>(r)};
        if (p.ranks(r).worker_id() != worker_id || rank.phase == RankState::Phase::kExited ||
            reported.contains(task)) {
          continue;
        }
        rank.confirmed = false;
        rank.confirm_by = std::max(now + options_.lease, recovering_until_);
      }
    }
    absl::Status first;
    for (auto& [id, active] : jobs_) {
      first.Update(MaybeAdvance(active, now));
      first.Update(MaybeFinishRestart(active, now));
    }
    first.Update(Schedule(now));
    Reap();
    // The registration itself succeeded; store errors are retried on Tick.
    first.IgnoreError();
  }
  // Not waited for: the committer commits what was decided and then sends
  // `registered`, the Assigns and the Cancels queued behind it. A failed
  // commit answers every later call.
  outbox_.Flush();
  return absl::OkStatus();
}

void Coordinator::AgentDetached(const std::string& worker_id, const AgentSink* sink) {
  absl::MutexLock lock(&mu_);
  auto it = sinks_.find(worker_id);
  // A stale stream closing after its replacement attached changes nothing.
  if (it != sinks_.end() && it->second.get() == sink) {
    sinks_.erase(it);
    Log(absl::StrCat("worker ", worker_id,
                     "'s stream closed; it keeps its ranks until its lease runs out"));
  }
}

std::string Coordinator::FailureReason(const ActiveJob& active, int rank,
                                       const std::string& worker_id,
                                       const v1::TaskStatus& status) const {
  const std::string exit = ExitReason(rank, worker_id, status);
  // A peer's collective fails when another rank's node goes away: the node
  // that went first is the cause.
  const v1::Placement& p = active.job.placement();
  for (int r = 0; r < p.ranks_size() && r < static_cast<int>(active.ranks.size()); ++r) {
    const std::string& other = p.ranks(r).worker_id();
    if (other == worker_id || active.ranks[r].phase == RankState::Phase::kExited) continue;
    if (!sinks_.contains(other)) {
      return absl::StrCat("worker ", other, " (rank ", r, ") disconnected; then ", exit);
    }
  }
  return exit;
}

absl::Status Coordinator::Heartbeat(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  return registry_.Heartbeat(worker_id, options_.clock());
}

absl::Status Coordinator::TaskStatus(const std::string& worker_id, const v1::TaskStatus& status) {
  if (status.state() != v1::TaskStatus::RUNNING && status.state() != v1::TaskStatus::EXITED) {
    return absl::InvalidArgumentError("task_status.state: must be RUNNING or EXITED");
  }
  absl::Status result;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = options_.clock();
    if (!registry_.IsAlive(worker_id)) {
      return absl::FailedPreconditionError(
          absl::StrCat("worker '", worker_id, "' is not attached; register again"));
    }
    const TaskKey task{status.job_id(), status.attempt(), status.rank()};
    ActiveJob* active = CurrentAttempt(task, worker_id);
    if (status.state() == v1::TaskStatus::EXITED) {
      registry_.Release(worker_id, task);
      if (active != nullptr) {
        RankState& rank = active->ranks[task.rank];
        const bool first_exit = rank.phase != RankState::Phase::kExited;
        if (first_exit) {
          rank.phase = RankState::Phase::kExited;
          rank.exit_code = status.exit_code();
          rank.signal = status.signal();
        }
        rank.confirmed = true;
        const bool failed = status.exit_code() != 0 || status.signal() != 0;
        const bool stopped =
            status.exit_code() == kTrainerExitStopped ||
            (active->stop_requested && (status.signal() == SIGTERM || status.signal() == SIGKILL));
        const bool node_problem =
            status.signal() == 0 && (status.exit_code() == kTaskExitRendezvousBusy ||
                                     status.exit_code() == kTaskExitCheckpointCorrupt);
        if (status.signal() == 0 && status.exit_code() == kTaskExitRendezvousBusy) {
          registry_.HoldPort(worker_id, active->job.placement().master_port(),
                             now + options_.busy_port_hold);
        }
        if (first_exit && stopped && IsPlaced(active->job.state())) {
          result.Update(PreemptAttempt(*active, ExitReason(task.rank, worker_id, status), now));
        } else if (first_exit && node_problem && IsPlaced(active->job.state())) {
          result.Update(RequeueForNode(*active, ExitReason(task.rank, worker_id, status), now));
        } else if (first_exit && failed && IsPlaced(active->job.state())) {
          const bool refused = status.signal() == 0 && status.exit_code() == kTaskExitPathRefused;
          result.Update(FailAttempt(*active, FailureReason(*active, task.rank, worker_id, status),
                                    now, /*may_restart=*/!refused));
        } else {
          result.Update(MaybeAdvance(*active, now));
        }
        result.Update(MaybeFinishRestart(*active, now));
      } else if (ActiveJob* late = SupersededAttempt(task, worker_id); late != nullptr) {
        RankState& rank = late->superseded->ranks[task.rank];
        rank.phase = RankState::Phase::kExited;
        rank.exit_code = status.exit_code();
        rank.signal = status.signal();
        result.Update(MaybeSucceedLate(*late, now));
      }
      result.Update(Schedule(now));  // its device is free again
    } else if (active != nullptr && IsPlaced(active->job.state())) {
      RankState& rank = active->ranks[task.rank];
      if (rank.phase == RankState::Phase::kAssigned) {
        rank.phase = RankState::Phase::kRunning;
        rank.advanced_at = now;
      }
      rank.confirmed = true;
      result.Update(MaybeAdvance(*active, now));
    } else if (SupersededAttempt(task, worker_id) != nullptr) {
      // Late, but running: left alone until a newer attempt starts.
    } else {
      SendCancel(worker_id, task, absl::StrCat(TaskName(task), " is not a current task"),
                 options_.cancel_grace);
    }
    Reap();
  }
  // Not waited for (the agent is not answered): the committer commits what
  // this decided and then delivers what it released, so the stream's next
  // message is read at once and the writes of many share a commit.
  outbox_.Flush();
  result.Update(commits_.failure());
  return result;
}

namespace {

// Whether the placement has rank `rank` (any rank when negative) on
// `worker_id` (on any worker when empty).
bool PlacedOn(const v1::Placement& placement, int rank, absl::string_view worker_id = "") {
  for (const v1::RankPlacement& r : placement.ranks()) {
    if ((worker_id.empty() || r.worker_id() == worker_id) && (rank < 0 || r.rank() == rank)) {
      return true;
    }
  }
  return false;
}

}  // namespace

absl::StatusOr<TaskKey> Coordinator::VerifyTaskToken(absl::string_view token) {
  ASSIGN_OR_RETURN(TaskKey task, task_tokens_->Verify(token));
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(task.job_id);
  if (it != jobs_.end()) {
    const ActiveJob& active = it->second;
    if (task.attempt == active.job.attempt() && IsPlaced(active.job.state()) &&
        PlacedOn(active.job.placement(), task.rank)) {
      return task;
    }
    if (active.superseded.has_value() && task.attempt == active.superseded->attempt &&
        PlacedOn(active.superseded->placement, task.rank)) {
      return task;
    }
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "the task credential of rank ", task.rank, " of job ", task.job_id, " attempt ", task.attempt,
      " is no longer valid: that task has ended; the trainer should stop"));
}

absl::Status Coordinator::CheckTaskOnWorker(const std::string& worker_id, const std::string& job_id,
                                            int attempt, int rank, bool require_running) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  const std::string task =
      rank < 0 ? absl::StrCat("job ", job_id) : absl::StrCat("rank ", rank, " of job ", job_id);
  if (it != jobs_.end()) {
    const ActiveJob& active = it->second;
    const bool current =
        (attempt == 0 || attempt == active.job.attempt()) && IsPlaced(active.job.state());
    const bool superseded = active.superseded.has_value() && attempt == active.superseded->attempt;
    if (current && PlacedOn(active.job.placement(), rank, worker_id)) return absl::OkStatus();
    if (superseded && PlacedOn(active.superseded->placement, rank, worker_id)) {
      return absl::OkStatus();
    }
    // An attempt that is not running: the call refuses it itself.
    if (!require_running && !current && !superseded) return absl::OkStatus();
  } else if (!require_running) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      absl::StrCat("worker '", worker_id, "' runs no ", task,
                   attempt == 0 ? std::string() : absl::StrCat(" attempt ", attempt),
                   "; a node's credential acts only for the ranks placed on it"));
}

absl::Status Coordinator::ReportProgress(const v1::ReportProgressRequest& request) {
  absl::Status status;
  int64_t barrier = 0;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = options_.clock();
    auto it = jobs_.find(request.job_id());
    if (it == jobs_.end()) {
      // Its last transition may still be committing (the committer never
      // takes our lock).
      RETURN_IF_ERROR(commits_.AwaitDurable(commits_.staged()));
      ASSIGN_OR_RETURN(v1::Job job, store_->Get(request.job_id()));  // NOT_FOUND
      return absl::FailedPreconditionError(absl::StrCat(
          "job ", job.id(), " is ", JobStateName(job.state()), "; the trainer should stop"));
    }
    ActiveJob& active = it->second;
    // The superseded attempt, failed for a rank that was only late, may
    // still report while nothing newer runs: its result counts if its ranks
    // all finish.
    if (active.superseded.has_value() && request.attempt() == active.superseded->attempt &&
        active.job.state() == v1::JOB_STATE_PENDING) {
      if (!request.has_result()) return absl::OkStatus();
      *active.job.mutable_result() = request.result();
      commits_.Stage(RecordUpdate(active.job));
      // Rare (a late attempt's result): waited for under the lock, which the
      // committer never takes.
      return commits_.AwaitDurable(commits_.staged());
    }
    if (request.attempt() != active.job.attempt() || !IsPlaced(active.job.state())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job ", active.job.id(), " attempt ", request.attempt(), " is no longer running (job is ",
          JobStateName(active.job.state()), " at attempt ", active.job.attempt(), ")"));
    }
    if (request.rank() < 0 || request.rank() >= static_cast<int>(active.ranks.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("rank: ", request.rank(), " is outside 0..", active.ranks.size() - 1));
    }
    RankState& rank = active.ranks[request.rank()];
    const std::string& phase = request.progress().phase();
    const bool training = phase.empty() || phase == "train";
    if (!rank.reported || request.progress().step() > rank.step || !training) {
      rank.step = request.progress().step();
      rank.advanced_at = now;
    }
    rank.reported = true;
    rank.heard_at = now;
    if (request.rank() == 0) {
      *active.job.mutable_progress() = request.progress();
      *active.job.mutable_progress()->mutable_update_time() = ToProtoTime(now);
      v1::JobUpdate update;
      update.set_job_id(active.job.id());
      *update.mutable_progress() = active.job.progress();
      Publish(update);
    }
    if (request.has_result()) {
      *active.job.mutable_result() = request.result();
      // The result outlives a coordinator restart.
      commits_.Stage(RecordUpdate(active.job));
    }
    barrier = commits_.staged();
  }
  status.Update(Deliver(barrier));
  return status;
}

}  // namespace clmae
