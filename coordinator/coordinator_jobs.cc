// Coordinator: the job lifecycle (transitions, placement, failure handling,
// restarts) and the periodic tick.

#include <algorithm>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "coordinator/coordinator.h"
#include "coordinator/job_state_machine.h"
#include "coordinator/proto_time.h"

namespace clmae {
namespace {

// Starts the failure message of an attempt that ended as a preemption.
constexpr char kPreemptedPrefix[] = "preempted: ";
// Starts the failure message of an attempt that could not start for a
// reason of its node.
constexpr char kNodeProblemPrefix[] = "requeued for a node problem: ";

// min * 2^(n - 1), at most max; zero for n < 1.
absl::Duration Backoff(absl::Duration min, absl::Duration max, int n) {
  if (n < 1 || min <= absl::ZeroDuration()) return absl::ZeroDuration();
  absl::Duration delay = min;
  for (int i = 1; i < n && delay < max; ++i) delay *= 2;
  return std::min(delay, max);
}

}  // namespace

absl::Status Coordinator::Commit(ActiveJob& active, const v1::Job& next_in,
                                 const std::string& message, absl::Time now,
                                 absl::string_view principal) {
  const v1::JobState from = active.job.state();
  RETURN_IF_ERROR(CheckTransition(from, next_in.state()));
  JobWrite write{.job = next_in,
                 .from = from,
                 .message = message,
                 .time = now,
                 .principal = std::string(principal),
                 .event = std::make_shared<v1::JobEvent>()};
  v1::Job& next = write.job;
  *next.mutable_update_time() = ToProtoTime(now);
  if (next.state() == v1::JOB_STATE_RUNNING && !next.has_start_time()) {
    *next.mutable_start_time() = ToProtoTime(now);
  }
  if (IsTerminal(next.state())) *next.mutable_end_time() = ToProtoTime(now);
  // The event as the store will append it; its seq is set by the commit.
  v1::JobEvent& event = *write.event;
  event.set_job_id(next.id());
  *event.mutable_time() = ToProtoTime(now);
  event.set_from_state(from);
  event.set_to_state(next.state());
  event.set_attempt(next.attempt());
  event.set_message(message);
  event.set_principal(std::string(principal));
  std::shared_ptr<const v1::JobEvent> published = write.event;
  active.job = next;
  // Nothing acts on it (Assigns, answers, events) before it has committed:
  // the outbox and the callers wait for this write (commit_queue.h).
  commits_.Stage(std::move(write));
  Log(absl::StrCat("job ", active.job.id(), " attempt ", active.job.attempt(), ": ",
                   JobStateName(from), " -> ", JobStateName(active.job.state()), ": ", message));
  IndexPending(active, from, active.job.state());
  IndexHolding(active, from, active.job.state());
  if (IsTerminal(active.job.state())) reap_.push_back(active.job.id());
  v1::JobUpdate update;
  update.set_job_id(active.job.id());
  Publish(update, std::move(published));
  return absl::OkStatus();
}

absl::Status Coordinator::FailAttempt(ActiveJob& active, const std::string& reason, absl::Time now,
                                      bool may_restart) {
  if (!IsPlaced(active.job.state())) return absl::OkStatus();
  const int max_restarts = active.resources.max_restarts;
  const bool restart = may_restart && active.job.restarts() < max_restarts;
  v1::Job next = active.job;
  next.set_failure_message(reason);
  next.set_state(restart ? v1::JOB_STATE_RESTARTING : v1::JOB_STATE_FAILED);
  const std::string message =
      restart ? absl::StrCat(reason, "; restart ", active.job.restarts() + 1, " of ", max_restarts)
      : !may_restart
          ? absl::StrCat(reason, "; not restarted: every attempt would be refused the same way")
          : absl::StrCat(reason, "; no restarts left (max_restarts ", max_restarts, ")");
  RETURN_IF_ERROR(Commit(active, next, message, now));
  // No partial restarts: every other rank of the attempt is stopped.
  CancelRanks(active, reason, options_.cancel_grace);
  return MaybeFinishRestart(active, now);
}

absl::Status Coordinator::PreemptAttempt(ActiveJob& active, const std::string& reason,
                                         absl::Time now) {
  if (!IsPlaced(active.job.state())) return absl::OkStatus();
  v1::Job next = active.job;
  next.set_state(v1::JOB_STATE_RESTARTING);
  next.set_failure_message(absl::StrCat(kPreemptedPrefix, reason));
  RETURN_IF_ERROR(
      Commit(active, next,
             absl::StrCat(kPreemptedPrefix, reason, "; requeued without counting a restart"), now));
  active.preempted = true;
  // The other ranks are stopping at the same step; give them the same time.
  CancelRanks(active, reason, options_.preempt_grace);
  return MaybeFinishRestart(active, now);
}

absl::Status Coordinator::RequeueForNode(ActiveJob& active, const std::string& reason,
                                         absl::Time now) {
  if (!IsPlaced(active.job.state())) return absl::OkStatus();
  v1::Job next = active.job;
  next.set_state(v1::JOB_STATE_RESTARTING);
  next.set_failure_message(absl::StrCat(kNodeProblemPrefix, reason));
  RETURN_IF_ERROR(Commit(
      active, next,
      absl::StrCat(kNodeProblemPrefix, reason, "; requeued without counting a restart"), now));
  active.node_problem = true;
  CancelRanks(active, reason, options_.cancel_grace);
  return MaybeFinishRestart(active, now);
}

absl::Status Coordinator::MaybeSucceedLate(ActiveJob& active, absl::Time now) {
  if (active.job.state() != v1::JOB_STATE_PENDING || !active.superseded.has_value()) {
    return absl::OkStatus();
  }
  for (const RankState& rank : active.superseded->ranks) {
    if (rank.phase != RankState::Phase::kExited || rank.exit_code != 0 || rank.signal != 0 ||
        rank.lost) {
      return absl::OkStatus();
    }
  }
  v1::Job next = active.job;
  next.set_state(v1::JOB_STATE_SUCCEEDED);
  next.set_attempt(active.superseded->attempt);
  *next.mutable_placement() = active.superseded->placement;
  next.clear_not_before();
  const std::string why = next.failure_message();
  next.clear_failure_message();
  active.superseded.reset();
  return Commit(active, next,
                absl::StrCat("every rank of attempt ", next.attempt(),
                             " exited with code 0 after all (it had been failed: ", why, ")"),
                now);
}

Coordinator::ActiveJob* Coordinator::SupersededAttempt(const TaskKey& task,
                                                       const std::string& worker_id) {
  auto it = jobs_.find(task.job_id);
  if (it == jobs_.end() || !it->second.superseded.has_value()) return nullptr;
  const ActiveJob::Superseded& late = *it->second.superseded;
  if (task.attempt != late.attempt || task.rank < 0 || task.rank >= late.placement.ranks_size() ||
      task.rank >= static_cast<int>(late.ranks.size()) ||
      late.placement.ranks(task.rank).worker_id() != worker_id) {
    return nullptr;
  }
  return &it->second;
}

absl::Status Coordinator::MaybeFinishRestart(ActiveJob& active, absl::Time now) {
  if (active.job.state() != v1::JOB_STATE_RESTARTING || now < recovering_until_ ||
      registry_.AttemptHoldsDevices(active.job.id(), active.job.attempt())) {
    return absl::OkStatus();
  }
  // After a coordinator restart the flags are gone; the committed failure
  // message still says how the attempt ended.
  const bool preempted =
      active.preempted || absl::StartsWith(active.job.failure_message(), kPreemptedPrefix);
  const bool node_problem =
      active.node_problem || absl::StartsWith(active.job.failure_message(), kNodeProblemPrefix);
  v1::Job next = active.job;
  next.set_state(v1::JOB_STATE_PENDING);
  next.set_attempt(active.job.attempt() + 1);
  absl::Duration wait = absl::ZeroDuration();
  std::string why = "";
  if (preempted) {
    next.set_preemptions(active.job.preemptions() + 1);
    why = " (preemption)";
  } else if (node_problem) {
    next.set_node_requeues(active.job.node_requeues() + 1);
    wait =
        Backoff(options_.restart_backoff_min, options_.restart_backoff_max, next.node_requeues());
    why = " (node problem; no restart counted)";
  } else {
    next.set_restarts(active.job.restarts() + 1);
    wait = Backoff(options_.restart_backoff_min, options_.restart_backoff_max, next.restarts());
  }
  if (wait > absl::ZeroDuration()) {
    *next.mutable_not_before() = ToProtoTime(now + wait);
    absl::StrAppend(&why, "; not placed for ", absl::FormatDuration(wait));
  } else {
    next.clear_not_before();
  }
  next.clear_placement();
  // A rank that did not report in time may only have been late: until the
  // next attempt starts, its agent may still report it finishing.
  const bool late = !preempted && !node_problem &&
                    std::any_of(active.ranks.begin(), active.ranks.end(), [](const RankState& r) {
                      return r.phase != RankState::Phase::kExited && !r.lost;
                    });
  std::optional<ActiveJob::Superseded> superseded;
  if (late)
    superseded = ActiveJob::Superseded{active.job.attempt(), active.job.placement(), active.ranks};
  RETURN_IF_ERROR(
      Commit(active, next,
             absl::StrCat("every rank stopped; requeued as attempt ", next.attempt(), why), now));
  active.superseded = std::move(superseded);
  active.ranks.clear();
  active.preempted = false;
  active.node_problem = false;
  active.stop_requested = false;
  return absl::OkStatus();
}

absl::Status Coordinator::MaybeAdvance(ActiveJob& active, absl::Time now) {
  if (!IsPlaced(active.job.state()) || active.ranks.empty()) return absl::OkStatus();
  bool all_started = true;
  bool all_succeeded = true;
  for (const RankState& rank : active.ranks) {
    all_started &= rank.phase != RankState::Phase::kAssigned;
    all_succeeded &= rank.phase == RankState::Phase::kExited && rank.exit_code == 0 &&
                     rank.signal == 0 && !rank.lost;
  }
  if (active.job.state() == v1::JOB_STATE_SCHEDULED && all_started) {
    v1::Job next = active.job;
    next.set_state(v1::JOB_STATE_RUNNING);
    RETURN_IF_ERROR(
        Commit(active, next, absl::StrCat("all ", active.ranks.size(), " ranks started"), now));
    active.running_since = now;
  }
  if (active.job.state() == v1::JOB_STATE_RUNNING && all_succeeded) {
    v1::Job next = active.job;
    next.set_state(v1::JOB_STATE_SUCCEEDED);
    next.clear_failure_message();
    RETURN_IF_ERROR(Commit(active, next, "every rank exited with code 0", now));
  }
  return absl::OkStatus();
}

void Coordinator::CancelRanks(const ActiveJob& active, const std::string& reason,
                              absl::Duration grace) {
  const v1::Placement& p = active.job.placement();
  for (int r = 0; r < p.ranks_size(); ++r) {
    if (r < static_cast<int>(active.ranks.size()) &&
        active.ranks[r].phase == RankState::Phase::kExited) {
      continue;
    }
    SendCancel(p.ranks(r).worker_id(), TaskKey{active.job.id(), active.job.attempt(), r}, reason,
               grace);
  }
}

void Coordinator::SendCancel(const std::string& worker_id, const TaskKey& task,
                             const std::string& reason, absl::Duration grace) {
  auto sink = sinks_.find(worker_id);
  if (sink == sinks_.end()) return;  // lost or detached: its lease decides
  v1::CoordinatorMessage message;
  v1::Cancel* cancel = message.mutable_cancel();
  cancel->set_job_id(task.job_id);
  cancel->set_attempt(task.attempt);
  cancel->set_rank(task.rank);
  *cancel->mutable_grace() = ToProtoDuration(grace);
  cancel->set_reason(reason);
  outbox_.ToAgent(sink->second, std::move(message));
}

absl::Status Coordinator::CheckRanks(ActiveJob& active, absl::Time now) {
  const v1::Placement& p = active.job.placement();
  for (size_t r = 0; r < active.ranks.size(); ++r) {
    const RankState& rank = active.ranks[r];
    if (!rank.confirmed && now > rank.confirm_by) {
      return FailAttempt(active,
                         absl::StrCat("rank ", r, " on worker ", p.ranks(r).worker_id(),
                                      " was not reported by its agent within the lease"),
                         now);
    }
  }
  if (active.job.state() != v1::JOB_STATE_RUNNING ||
      options_.hang_timeout <= absl::ZeroDuration()) {
    return absl::OkStatus();
  }
  bool any_reported = false;
  bool stalled = false;
  // Ranks waiting in a collective behind a hung peer stall too, but keep
  // reporting; the hung rank is the one silent longest (then the one
  // furthest behind).
  size_t hung = active.ranks.size();
  for (size_t r = 0; r < active.ranks.size(); ++r) {
    const RankState& rank = active.ranks[r];
    if (rank.phase != RankState::Phase::kRunning || !rank.reported) continue;
    any_reported = true;
    stalled |= now - rank.advanced_at > options_.hang_timeout;
    if (hung == active.ranks.size() || rank.heard_at < active.ranks[hung].heard_at ||
        (rank.heard_at == active.ranks[hung].heard_at && rank.step < active.ranks[hung].step)) {
      hung = r;
    }
  }
  if (stalled) {
    const RankState& rank = active.ranks[hung];
    return FailAttempt(
        active,
        absl::StrCat(
            "rank ", hung, " on worker ", p.ranks(hung).worker_id(), " is hung: step ", rank.step,
            " has not advanced for ",
            absl::FormatDuration(absl::Trunc(now - rank.advanced_at, absl::Milliseconds(100))),
            " and its last report came ",
            absl::FormatDuration(absl::Trunc(now - rank.heard_at, absl::Milliseconds(100))),
            " ago"),
        now);
  }
  if (!any_reported && now - active.running_since > options_.hang_timeout) {
    return FailAttempt(active,
                       absl::StrCat("no rank reported progress within ",
                                    absl::FormatDuration(options_.hang_timeout), " of starting"),
                       now);
  }
  return absl::OkStatus();
}

absl::Status Coordinator::WorkerLost(const std::string& worker_id, const std::string& why,
                                     absl::Time now) {
  sinks_.erase(worker_id);
  Log(absl::StrCat("worker ", worker_id, " lost: ", why));
  absl::Status first;
  for (const TaskKey& task : registry_.ReleaseWorker(worker_id)) {
    auto it = jobs_.find(task.job_id);
    if (it == jobs_.end()) continue;
    ActiveJob& active = it->second;
    if (ActiveJob* current = CurrentAttempt(task, worker_id)) {
      RankState& rank = current->ranks[task.rank];
      if (rank.phase != RankState::Phase::kExited) {
        rank.phase = RankState::Phase::kExited;
        rank.lost = true;
      }
      first.Update(
          FailAttempt(active, absl::StrCat("worker ", worker_id, " lost (", why, ")"), now));
    }
    first.Update(MaybeFinishRestart(active, now));
  }
  return first;
}

Coordinator::ActiveJob* Coordinator::CurrentAttempt(const TaskKey& task,
                                                    const std::string& worker_id) {
  auto it = jobs_.find(task.job_id);
  if (it == jobs_.end()) return nullptr;
  ActiveJob& active = it->second;
  const v1::Placement& p = active.job.placement();
  if (task.attempt != active.job.attempt() || task.rank < 0 || task.rank >= p.ranks_size() ||
      task.rank >= static_cast<int>(active.ranks.size()) ||
      p.ranks(task.rank).worker_id() != worker_id) {
    return nullptr;
  }
  return &active;
}

absl::Status Coordinator::Tick(absl::Time now) {
  absl::Status first;
  int64_t barrier = 0;
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& worker_id : registry_.ExpireLeases(now)) {
      first.Update(WorkerLost(worker_id, "no heartbeat within the lease", now));
    }
    for (auto& [id, active] : jobs_) {
      if (IsPlaced(active.job.state())) {
        first.Update(CheckRanks(active, now));
      } else if (active.job.state() == v1::JOB_STATE_RESTARTING) {
        first.Update(MaybeFinishRestart(active, now));
      }
    }
    first.Update(Schedule(now));
    Reap();
    barrier = commits_.staged();
  }
  first.Update(Deliver(barrier));
  return first;
}

}  // namespace clmae
