// Coordinator: scheduling passes (strict order, then conservative backfill
// behind a blocked head job) and placing a job's ranks.

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/job_progress.h"
#include "common/status_macros.h"
#include "coordinator/coordinator.h"
#include "coordinator/job_state_machine.h"
#include "coordinator/proto_time.h"

namespace clmae {
namespace {

// How many rendezvous ports of a job's latest attempts the next one avoids.
constexpr size_t kRecentPorts = 3;

// Whether a job in `state` holds (or is about to hold) its devices.
bool Holding(v1::JobState state) {
  return state == v1::JOB_STATE_SCHEDULED || state == v1::JOB_STATE_RUNNING ||
         state == v1::JOB_STATE_RESTARTING;
}

}  // namespace

void Coordinator::IndexPending(const ActiveJob& active, v1::JobState from, v1::JobState to) {
  if ((from == v1::JOB_STATE_PENDING) == (to == v1::JOB_STATE_PENDING)) return;
  const PendingKey key{.priority = active.resources.priority,
                       .submit_time = FromProtoTime(active.job.submit_time()),
                       .order = active.order,
                       .job_id = active.job.id()};
  std::set<PendingKey>& queue = pending_[active.resources.device_kind];
  if (to == v1::JOB_STATE_PENDING) {
    queue.insert(key);
  } else {
    queue.erase(key);
  }
}

void Coordinator::IndexHolding(const ActiveJob& active, v1::JobState from, v1::JobState to) {
  if (Holding(from) == Holding(to)) return;
  absl::flat_hash_set<std::string>& holding = holding_[active.resources.device_kind];
  if (Holding(to)) {
    holding.insert(active.job.id());
  } else {
    holding.erase(active.job.id());
  }
}

std::vector<RunningJob> Coordinator::RunningJobs(const std::string& kind, absl::Time now) const {
  std::vector<RunningJob> running;
  auto it = holding_.find(kind);
  if (it == holding_.end()) return running;
  running.reserve(it->second.size());
  for (const std::string& id : it->second) {
    const ActiveJob& active = jobs_.at(id);
    RunningJob& r = running.emplace_back();
    r.devices = active.resources.world_size;
    if (active.job.state() == v1::JOB_STATE_RESTARTING) {
      r.estimated_end = now;  // its ranks are being stopped
    } else if (std::optional<absl::Duration> left = EstimateRemaining(active.job)) {
      r.estimated_end = std::max(now, FromProtoTime(active.job.progress().update_time()) + *left);
    } else if (active.resources.estimate.has_value()) {
      const absl::Time started =
          active.job.state() == v1::JOB_STATE_RUNNING ? active.running_since : active.placed_at;
      // Past its estimate: it may end any moment (the earliest end is the
      // one that never lets a backfilled job delay the head).
      r.estimated_end = std::max(now, started + *active.resources.estimate);
    }
  }
  return running;
}

absl::Status Coordinator::Schedule(absl::Time now) {
  if (now < recovering_until_) return absl::OkStatus();
  // Most passes (a rank exited, a tick) find nothing waiting.
  if (std::all_of(pending_.begin(), pending_.end(),
                  [](const auto& kind) { return kind.second.empty(); })) {
    return absl::OkStatus();
  }
  std::vector<NodeCapacity> nodes = registry_.Capacity(now);
  // Only workers with a live stream can be told about an assignment.
  std::erase_if(nodes, [&](const NodeCapacity& n) { return !sinks_.contains(n.worker_id); });
  if (nodes.empty()) return absl::OkStatus();
  // GangScheduler::Schedule's rules (strict order per device kind, then
  // conservative backfill behind the first job that does not fit), walking
  // each queue only up to that job plus the backfill depth: a pass costs
  // what it places, not the length of the queue.
  std::vector<GangPlacement> placements;
  for (const auto& [kind, queue] : pending_) {
    SchedulingPass pass(
        scheduler_, kind, nodes,
        [this, &kind, now]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return RunningJobs(kind, now); },
        now);
    for (const PendingKey& key : queue) {
      const ActiveJob& active = jobs_.at(key.job_id);
      // Backing off after a failure: not eligible yet, and not in the way of
      // the jobs behind it.
      if (active.job.has_not_before() && FromProtoTime(active.job.not_before()) > now) continue;
      const PendingJob job{.job_id = key.job_id,
                           .priority = key.priority,
                           .submit_time = key.submit_time,
                           .order = key.order,
                           .world_size = active.resources.world_size,
                           .device_kind = kind,
                           .attempt = active.job.attempt(),
                           .avoid_ports = active.recent_ports,
                           .estimate = active.resources.estimate};
      GangPlacement placement;
      const SchedulingPass::Verdict verdict = pass.Offer(job, placement);
      if (verdict == SchedulingPass::Verdict::kDone) break;
      if (verdict == SchedulingPass::Verdict::kPlaced) placements.push_back(std::move(placement));
    }
  }
  // Placing changes the queues, so only after the walk.
  absl::Status first;
  for (const GangPlacement& placement : placements) {
    first.Update(Place(jobs_.at(placement.job_id), placement, now));
  }
  return first;
}

absl::Status Coordinator::Place(ActiveJob& active, const GangPlacement& placement, absl::Time now) {
  std::map<std::string, int> per_worker;
  for (const v1::RankPlacement& r : placement.placement.ranks()) ++per_worker[r.worker_id()];
  std::vector<std::string> parts;
  for (const auto& [worker, count] : per_worker) {
    parts.push_back(absl::StrCat(worker, " (", count, count == 1 ? " rank)" : " ranks)"));
  }
  v1::Job next = active.job;
  next.set_state(v1::JOB_STATE_SCHEDULED);
  *next.mutable_placement() = placement.placement;
  RETURN_IF_ERROR(
      Commit(active, next, absl::StrCat("placed on ", absl::StrJoin(parts, ", ")), now));
  active.placed_at = now;
  active.ranks.assign(placement.placement.ranks_size(), RankState{});
  for (RankState& rank : active.ranks) {
    rank.confirm_by = now + options_.lease;
    rank.heard_at = now;
  }
  active.recent_ports.push_back(placement.placement.master_port());
  if (active.recent_ports.size() > kRecentPorts) {
    active.recent_ports.erase(active.recent_ports.begin());
  }

  // A newer attempt starts: the superseded one's ranks still running stop.
  if (active.superseded.has_value()) {
    const ActiveJob::Superseded& late = *active.superseded;
    for (int r = 0; r < late.placement.ranks_size(); ++r) {
      if (r < static_cast<int>(late.ranks.size()) &&
          late.ranks[r].phase == RankState::Phase::kExited) {
        continue;
      }
      SendCancel(late.placement.ranks(r).worker_id(), TaskKey{active.job.id(), late.attempt, r},
                 absl::StrCat("attempt ", active.job.attempt(), " has started"),
                 options_.cancel_grace);
    }
    active.superseded.reset();
  }
  const v1::Placement& p = active.job.placement();
  const std::optional<v1::Checkpoint> resume = ResumeCheckpoint(active);  // one for every rank
  std::vector<std::pair<std::string, v1::CoordinatorMessage>> assigns;
  for (const v1::RankPlacement& r : p.ranks()) {
    const TaskKey task{active.job.id(), active.job.attempt(), r.rank()};
    absl::Status occupied =
        registry_.Occupy(task, r.worker_id(), r.device_kind(), r.device_index(),
                         r.rank() == 0 ? std::optional<int>(p.master_port()) : std::nullopt);
    if (!occupied.ok()) {
      // The capacity snapshot was taken under the same lock, so this means a
      // bug; fail the attempt rather than double-book a device.
      return FailAttempt(active, absl::StrCat("placement failed: ", occupied.message()), now);
    }
    v1::CoordinatorMessage message;
    v1::TaskAssignment* task_msg = message.mutable_assign()->mutable_task();
    task_msg->set_job_id(active.job.id());
    task_msg->set_attempt(active.job.attempt());
    task_msg->set_rank(r.rank());
    task_msg->set_world_size(p.ranks_size());
    task_msg->set_device_index(r.device_index());
    task_msg->set_device_kind(r.device_kind());
    task_msg->set_master_addr(p.master_addr());
    task_msg->set_master_port(p.master_port());
    task_msg->set_task_token(task_tokens_->Issue(task));
    *task_msg->mutable_spec() = active.job.spec();
    if (resume.has_value()) {
      task_msg->set_resume_checkpoint(resume->id());
      task_msg->set_resume_sha256(resume->metadata().sha256());
      task_msg->set_resume_size_bytes(resume->metadata().size_bytes());
    }
    assigns.emplace_back(r.worker_id(), std::move(message));
  }
  for (auto& [worker, message] : assigns) {
    auto sink = sinks_.find(worker);
    if (sink != sinks_.end()) outbox_.ToAgent(sink->second, std::move(message));
  }
  return absl::OkStatus();
}

}  // namespace clmae
