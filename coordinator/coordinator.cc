// Coordinator: opening, recovery and the client-facing methods. Agents and
// trainers: coordinator_agents.cc; lifecycle: coordinator_jobs.cc.

#include "coordinator/coordinator.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/job_state_machine.h"
#include "coordinator/proto_time.h"

namespace clmae {

Coordinator::Coordinator(CoordinatorOptions options, std::unique_ptr<JobStore> store)
    : options_(std::move(options)),
      store_(std::move(store)),
      scheduler_(SchedulerOptions{.master_port_min = options_.master_port_min,
                                  .master_port_max = options_.master_port_max,
                                  .backfill = options_.backfill,
                                  .backfill_depth = options_.backfill_depth}),
      commits_(store_.get()),
      outbox_(&commits_),
      registry_(WorkerRegistryOptions{options_.lease}) {}

Coordinator::~Coordinator() {
  // The committer flushes the outbox: it stops (committing what is staged)
  // before the outbox goes.
  commits_.StopCommitter();
}

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Open(CoordinatorOptions options) {
  if (options.master_port_min < 1 || options.master_port_max > 65535 ||
      options.master_port_min > options.master_port_max) {
    return absl::InvalidArgumentError(absl::StrCat("master port range ", options.master_port_min,
                                                   "..", options.master_port_max,
                                                   " is not a range within 1..65535"));
  }
  if (options.lease <= absl::ZeroDuration() || options.heartbeat_interval >= options.lease) {
    return absl::InvalidArgumentError(
        "the lease must be positive and longer than the heartbeat "
        "interval");
  }
  if (!options.clock) options.clock = [] { return absl::Now(); };
  if (options.recovery_grace <= absl::ZeroDuration()) {
    options.recovery_grace = options.lease + absl::Seconds(30);
  }
  if (options.backfill_depth < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("backfill_depth: ", options.backfill_depth, " is below 1"));
  }
  if (options.restart_backoff_min < absl::ZeroDuration() ||
      options.restart_backoff_max < options.restart_backoff_min) {
    return absl::InvalidArgumentError(
        "the restart back-off must be 0 or more and its maximum at least its minimum");
  }
  ASSIGN_OR_RETURN(
      std::unique_ptr<JobStore> store,
      JobStore::Open(JobStoreOptions{.path = options.store_path,
                                     .extra_commit_latency = options.store_extra_commit_latency}));
  ASSIGN_OR_RETURN(std::vector<v1::Job> active, store->LoadActive());
  using DrainedWorkers = std::map<std::string, bool>;
  ASSIGN_OR_RETURN(DrainedWorkers drained, store->LoadDrained());
  std::unique_ptr<CheckpointStore> checkpoints;
  if (!options.checkpoint_dir.empty()) {
    ASSIGN_OR_RETURN(checkpoints, CheckpointStore::Open(CheckpointStoreOptions{
                                      .dir = options.checkpoint_dir,
                                      .s3 = options.checkpoint_s3,
                                      .max_checkpoint_bytes = options.max_checkpoint_bytes,
                                      .min_free_bytes = options.checkpoint_min_free_bytes}));
  }
  // Next to the job store, so task credentials outlive a restart.
  ASSIGN_OR_RETURN(
      TaskTokens task_tokens,
      TaskTokens::Open(
          (std::filesystem::path(options.store_path).parent_path() / "task-token.key").string()));
  std::unique_ptr<Coordinator> coordinator(new Coordinator(std::move(options), std::move(store)));
  Coordinator& c = *coordinator;
  // Writes staged by callers that do not wait (agent messages, placements
  // after a submission) are committed by this thread, which then delivers
  // what they released.
  c.commits_.StartCommitter([&c] { c.outbox_.Flush(); });
  c.checkpoints_ = std::move(checkpoints);
  c.task_tokens_.emplace(std::move(task_tokens));
  absl::MutexLock lock(&c.mu_);
  const absl::Time now = c.options_.clock();
  c.recovering_until_ = active.empty() ? now : now + c.options_.lease;
  c.drained_ = std::move(drained);
  // Ranks of placed jobs have until then to be listed by their re-attaching
  // agents: an agent backing off its reconnections is not a lost one.
  const absl::Time confirm_by = now + c.options_.recovery_grace;
  if (!active.empty()) {
    c.Log(absl::StrCat("recovered ", active.size(), " active jobs; their agents have ",
                       absl::FormatDuration(c.options_.recovery_grace), " to re-attach"));
  }
  for (v1::Job& job : active) {
    ASSIGN_OR_RETURN(JobResources resources, ResolveJobResources(job.spec()));
    if (c.checkpoints_ != nullptr) {
      ASSIGN_OR_RETURN(std::vector<v1::Checkpoint> kept,
                       c.checkpoints_->List(job.id(), v1::CHECKPOINT_KIND_UNSPECIFIED));
      for (const v1::Checkpoint& k : kept) {
        absl::Time& last = c.last_checkpoint_[job.id()];
        last = std::max(last, FromProtoTime(k.create_time()));
      }
    }
    ActiveJob& a = c.jobs_[job.id()];
    a.resources = resources;
    a.order = c.next_order_++;
    a.running_since = now;
    a.job = std::move(job);
    if (a.job.placement().master_port() > 0)
      a.recent_ports.push_back(a.job.placement().master_port());
    a.placed_at = now;
    c.IndexPending(a, v1::JOB_STATE_UNSPECIFIED, a.job.state());
    c.IndexHolding(a, v1::JOB_STATE_UNSPECIFIED, a.job.state());
    if (a.job.state() == v1::JOB_STATE_SCHEDULED || a.job.state() == v1::JOB_STATE_RUNNING) {
      // Every rank is unknown until its agent re-attaches and lists it.
      a.ranks.resize(a.job.placement().ranks_size());
      for (RankState& rank : a.ranks) {
        rank.phase = a.job.state() == v1::JOB_STATE_RUNNING ? RankState::Phase::kRunning
                                                            : RankState::Phase::kAssigned;
        rank.confirm_by = confirm_by;
        rank.advanced_at = now;
        rank.heard_at = now;
      }
    }
  }
  return coordinator;
}

absl::StatusOr<v1::Job> Coordinator::Submit(const v1::JobSpec& spec, const std::string& request_id,
                                            const std::string& owner) {
  ASSIGN_OR_RETURN(JobResources resources, ResolveJobResources(spec));
  if (options_.validate_spec) RETURN_IF_ERROR(options_.validate_spec(spec));
  if (request_id.size() > 128) {
    return absl::InvalidArgumentError(
        absl::StrCat("request_id: ", request_id.size(), " characters; at most 128 are allowed"));
  }
  const absl::Time now = options_.clock();
  // The store has its own lock: durable submissions do not wait for the
  // domain lock, nor hold it during their commit.
  ASSIGN_OR_RETURN(SubmitOutcome outcome, store_->Submit(spec, request_id, now, owner));
  v1::Job job;
  bool active = false;
  int64_t barrier = 0;
  {
    absl::MutexLock lock(&mu_);
    if (outcome.created) {
      ActiveJob& a = jobs_[outcome.job.id()];
      a.job = outcome.job;
      a.resources = resources;
      a.order = next_order_++;
      IndexPending(a, v1::JOB_STATE_UNSPECIFIED, a.job.state());
      v1::JobUpdate update;
      update.set_job_id(a.job.id());
      *update.mutable_event() = outcome.event;
      Publish(update);
      // The submission is durable whatever happens here: a store error while
      // placing leaves the job PENDING, and Tick retries.
      Schedule(now).IgnoreError();
    }
    auto it = jobs_.find(outcome.job.id());
    active = it != jobs_.end();
    job = active ? it->second.job : outcome.job;
    Reap();
    barrier = commits_.staged();
  }
  if (outcome.created) {
    // Answered as soon as the submission is durable, as stored (PENDING):
    // its placement, if any, commits in the committer's next batch, and its
    // Assigns go out only after that.
    outbox_.Flush();
    RETURN_IF_ERROR(commits_.failure());
    return outcome.job;
  }
  // A retry: what it shows must be durable.
  RETURN_IF_ERROR(Deliver(barrier));
  // A retry of a job that has ended since: its final record.
  if (!active) return store_->Get(job.id());
  return job;
}

absl::StatusOr<v1::Job> Coordinator::Get(const std::string& job_id) {
  std::optional<v1::Job> job;
  int64_t barrier = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job_id);
    if (it != jobs_.end()) job = it->second.job;
    barrier = commits_.staged();
  }
  // Only what is durable is shown (and a job that ended is in the store only
  // once its last transition has committed).
  RETURN_IF_ERROR(commits_.AwaitDurable(barrier));
  if (job.has_value()) return *std::move(job);
  return store_->Get(job_id);
}

absl::StatusOr<JobPage> Coordinator::List(const ListJobsQuery& query) {
  ASSIGN_OR_RETURN(JobPage page, store_->List(query));
  int64_t barrier = 0;
  {
    absl::MutexLock lock(&mu_);
    for (v1::Job& job : page.jobs) {
      auto it = jobs_.find(job.id());
      // Only the same state: a listing filtered by state stays consistent.
      if (it != jobs_.end() && it->second.job.state() == job.state()) job = it->second.job;
    }
    barrier = commits_.staged();
  }
  RETURN_IF_ERROR(commits_.AwaitDurable(barrier));  // only what is durable is shown
  return page;
}

absl::StatusOr<v1::Job> Coordinator::Cancel(const std::string& job_id, const std::string& reason,
                                            const std::string& principal) {
  v1::Job result;
  int64_t barrier = 0;
  bool ended = false;  // terminal or unknown: the store answers
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job_id);
    ended = it == jobs_.end();
    if (!ended) {
      ActiveJob& active = it->second;
      const absl::Time now = options_.clock();
      v1::Job next = active.job;
      next.set_state(v1::JOB_STATE_CANCELLED);
      next.set_failure_message(reason.empty()
                                   ? absl::StrCat("cancelled by ", principal)
                                   : absl::StrCat("cancelled by ", principal, ": ", reason));
      RETURN_IF_ERROR(Commit(active, next, next.failure_message(), now, principal));
      CancelRanks(active, next.failure_message(), options_.cancel_grace);
      result = active.job;
      Reap();
    }
    barrier = commits_.staged();
  }
  // Answered once CANCELLED is durable; a job that ended is in the store
  // once its last transition has committed.
  RETURN_IF_ERROR(Deliver(barrier));
  if (ended) return store_->Get(job_id);
  return result;
}

absl::StatusOr<WatchId> Coordinator::Watch(const std::string& job_id, WatchCallback callback) {
  WatchId id;
  int64_t barrier = 0;
  {
    absl::MutexLock lock(&mu_);
    std::vector<v1::Job> snapshots;
    if (job_id.empty()) {
      for (const auto& [unused, active] : jobs_) snapshots.push_back(active.job);
    } else if (auto it = jobs_.find(job_id); it != jobs_.end()) {
      snapshots.push_back(it->second.job);
    } else {
      // Terminal (or unknown): the store has its final record once the
      // transition into it has committed. The committer never takes our
      // lock, and the store's nests inside it.
      RETURN_IF_ERROR(commits_.AwaitDurable(commits_.staged()));
      ASSIGN_OR_RETURN(snapshots.emplace_back(), store_->Get(job_id));
    }
    id = next_watch_id_++;
    auto watcher = std::make_shared<Watcher>(std::move(callback));
    watchers_[id] = WatchEntry{job_id, watcher};
    for (v1::Job& job : snapshots) {
      v1::JobUpdate update;
      update.set_job_id(job.id());
      *update.mutable_snapshot() = std::move(job);
      outbox_.ToWatcher(watcher, std::move(update));
    }
    barrier = commits_.staged();
  }
  Deliver(barrier).IgnoreError();  // registered; a store failure shows on every write
  return id;
}

void Coordinator::Unwatch(WatchId id) {
  std::shared_ptr<Watcher> watcher;
  {
    absl::MutexLock lock(&mu_);
    auto it = watchers_.find(id);
    if (it == watchers_.end()) return;
    watcher = it->second.watcher;
    watchers_.erase(it);
  }
  outbox_.Deactivate(watcher);
}

std::vector<v1::Worker> Coordinator::ListWorkers() {
  absl::MutexLock lock(&mu_);
  return registry_.List();
}

absl::Status Coordinator::AgentLeaving(const std::string& worker_id, const std::string& reason) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(registry_.SetDraining(worker_id, true, /*sticky=*/false));
  for (auto& [id, active] : jobs_) {
    for (const v1::RankPlacement& r : active.job.placement().ranks()) {
      if (r.worker_id() == worker_id) active.stop_requested = true;
    }
  }
  Log(absl::StrCat("worker ", worker_id, " is leaving", reason.empty() ? "" : ": ", reason));
  return absl::OkStatus();
}

absl::Status Coordinator::SetWorkerDraining(const std::string& worker_id, bool draining,
                                            bool move_jobs) {
  absl::Status status;
  int64_t barrier = 0;
  {
    absl::MutexLock lock(&mu_);
    status = registry_.SetDraining(worker_id, draining);
    // The drain outlasts a restart of this coordinator; it is recorded
    // before it takes effect.
    if (status.ok()) status = store_->SetDrained(worker_id, draining, move_jobs, options_.clock());
    if (status.ok()) {
      if (draining) {
        drained_[worker_id] = move_jobs;
      } else {
        drained_.erase(worker_id);
      }
      Log(absl::StrCat(
          "worker ", worker_id,
          draining ? (move_jobs ? " drained: its jobs move" : " cordoned") : " undrained"));
    }
    if (status.ok() && !draining) status = Schedule(options_.clock());
    if (status.ok() && draining && move_jobs) {
      // Move every job with a rank here: all its ranks stop at one step
      // after a checkpoint, and the job is requeued elsewhere.
      for (auto& [id, active] : jobs_) {
        if (active.stop_requested || !IsPlaced(active.job.state())) continue;
        bool here = false;
        for (const v1::RankPlacement& r : active.job.placement().ranks()) {
          here |= r.worker_id() == worker_id;
        }
        if (!here) continue;
        active.stop_requested = true;
        CancelRanks(active,
                    absl::StrCat("worker ", worker_id,
                                 " is draining: checkpoint and stop, to move the job"),
                    options_.preempt_grace);
      }
    }
    Reap();
    barrier = commits_.staged();
  }
  status.Update(Deliver(barrier));
  return status;
}

void Coordinator::Log(absl::string_view message) const {
  if (options_.log) {
    options_.log(message);
    return;
  }
  const std::string line =
      absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
                   " clmae-coordinator: ", message, "\n");
  std::fputs(line.c_str(), stderr);
}

void Coordinator::Publish(const v1::JobUpdate& update, std::shared_ptr<const v1::JobEvent> event) {
  for (const auto& [id, entry] : watchers_) {
    if (entry.job_id.empty() || entry.job_id == update.job_id()) {
      outbox_.ToWatcher(entry.watcher, update, event);
    }
  }
}

absl::Status Coordinator::Settle() {
  int64_t barrier = 0;
  {
    absl::MutexLock lock(&mu_);
    barrier = commits_.staged();
  }
  return Deliver(barrier);
}

absl::Status Coordinator::Deliver(int64_t barrier) {
  absl::Status durable = commits_.AwaitDurable(barrier);
  outbox_.Flush();
  return durable;
}

void Coordinator::Reap() {
  for (const std::string& id : reap_) jobs_.erase(id);
  reap_.clear();
}

}  // namespace clmae
