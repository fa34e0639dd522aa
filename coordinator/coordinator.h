#pragma once

// The control plane's domain facade: what the gRPC edge (services/) calls
// for clients (submit, get, list, cancel, watch, workers), for agents
// (attach, heartbeat, task status) and for trainers (progress). No gRPC here.
//
// Thread-safety: every public method may be called from any thread. Domain
// state sits behind one mutex. Transitions are decided under it and staged
// in a CommitQueue, which a committer thread commits in batches (one commit
// shared by every write staged while the previous one ran, see
// commit_queue.h). A method that answers someone waits, after releasing the
// lock, until what it shows is durable; the agent-stream calls, which answer
// nobody, return at once. Messages to agents and updates to watchers are
// queued under the lock and delivered after it is released, in decision
// order and only once the writes before them are durable (see outbox.h);
// sinks and watch callbacks must therefore not call back into the
// Coordinator. A failed commit is final: every later call answers its error
// (StoreFailure) and the process should restart to reload the store.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clmae/v1/checkpoint.pb.h"
#include "clmae/v1/coordinator.pb.h"
#include "clmae/v1/job.pb.h"
#include "clmae/v1/worker_control.pb.h"
#include "coordinator/checkpoint_store.h"
#include "coordinator/commit_queue.h"
#include "coordinator/gang_scheduler.h"
#include "coordinator/job_resources.h"
#include "coordinator/job_store.h"
#include "coordinator/outbox.h"
#include "coordinator/task_tokens.h"
#include "coordinator/worker_registry.h"

namespace clmae {

struct CoordinatorOptions {
  std::string store_path;  // SQLite job store
  // JobStoreOptions::extra_commit_latency: an artificial fsync time for
  // benchmarks. Zero in service.
  absl::Duration store_extra_commit_latency = absl::ZeroDuration();
  // The checkpoint store's folder (blobs and their index); empty = this
  // coordinator keeps no checkpoints (the checkpoint calls then answer
  // FAILED_PRECONDITION and restarts start from scratch).
  std::string checkpoint_dir;
  int64_t max_checkpoint_bytes = int64_t{64} << 30;        // larger uploads are refused
  int64_t checkpoint_min_free_bytes = int64_t{256} << 20;  // free space an upload must leave
  // Checkpoint bytes in S3-compatible object storage (presigned uploads and
  // downloads; checkpoint_dir then holds only the index). Unset: on disk.
  std::optional<S3BackendOptions> checkpoint_s3;
  absl::Duration lease = absl::Seconds(15);              // agent lost without a heartbeat this long
  absl::Duration heartbeat_interval = absl::Seconds(5);  // told to agents on attach
  // A running rank whose reported step has not advanced this long is hung;
  // absl::ZeroDuration() turns the check off.
  absl::Duration hang_timeout = absl::Minutes(10);
  absl::Duration cancel_grace = absl::Seconds(30);  // SIGTERM -> SIGKILL on agents
  // SIGTERM -> SIGKILL when a drain stops a job's ranks to move it: long
  // enough for the ranks to agree on a step, write and upload a checkpoint.
  absl::Duration preempt_grace = absl::Minutes(5);
  int master_port_min = 29500;  // MASTER_PORT range
  int master_port_max = 29999;
  // Conservative backfill (SchedulingPass): a job behind a blocked head job
  // of its device kind may start only if it cannot delay the head's
  // reservation. False: strict order. backfill_depth: jobs tried behind the
  // head per pass (at least 1).
  bool backfill = true;
  int backfill_depth = 100;
  // After a failed attempt the next one is not placed before this long,
  // doubling with every restart up to restart_backoff_max (preemptions do
  // not wait). Zero: at once.
  absl::Duration restart_backoff_min = absl::Seconds(5);
  absl::Duration restart_backoff_max = absl::Minutes(5);
  // After opening on a store with placed jobs, how long their ranks have to
  // be listed by their re-attaching agents before they count as lost: at
  // least the lease plus the agents' longest reconnection back-off. Zero:
  // the lease plus 30 s (the agents' default --reconnect_backoff_max).
  absl::Duration recovery_grace = absl::ZeroDuration();
  // A rendezvous port found taken on a worker is not handed out there again
  // for this long.
  absl::Duration busy_port_hold = absl::Minutes(10);
  // Where the coordinator tells operators what it did: every job transition,
  // lost, leaving and (re)attaching worker, drain; one line each, no newline.
  // Unset: stderr, with a UTC timestamp.
  std::function<void(absl::string_view)> log;
  // Full spec validation, run on Submit before anything is stored (the gRPC
  // edge passes ValidateJobSpecForService; the domain cannot depend on services/).
  std::function<absl::Status(const v1::JobSpec&)> validate_spec;
  std::function<absl::Time()> clock = [] { return absl::Now(); };
};

// Watch registrations are identified by this.
using WatchId = int64_t;

class Coordinator {
 public:
  // Opens the store and reloads every non-terminal job. For one lease after
  // opening, nothing is scheduled and no rank is declared lost: agents
  // re-attach and report what they run first (reconciliation).
  static absl::StatusOr<std::unique_ptr<Coordinator>> Open(CoordinatorOptions options);
  ~Coordinator();

  // --- Clients --------------------------------------------------------------

  // Stores the job durably (PENDING, attempt 1, owned by `owner`), then
  // tries to place it, and answers the job as stored (PENDING) once the
  // submission is durable: a placement commits with the committer's next
  // batch and its Assigns go out only after that (Get shows it then). A
  // retried request id answers the job as it durably is. INVALID_ARGUMENT for a bad spec or request
  // id (at most 128 characters); a retried request id: see JobStore::Submit.
  absl::StatusOr<v1::Job> Submit(const v1::JobSpec& spec, const std::string& request_id,
                                 const std::string& owner = "");
  // NOT_FOUND for an unknown id.
  absl::StatusOr<v1::Job> Get(const std::string& job_id);
  // Active jobs carry their live progress.
  absl::StatusOr<JobPage> List(const ListJobsQuery& query);
  // Ends the job CANCELLED and sends a Cancel to each of its ranks. A job in
  // a terminal state is returned unchanged. NOT_FOUND for an unknown id.
  // The event records `principal` as its cause.
  absl::StatusOr<v1::Job> Cancel(const std::string& job_id, const std::string& reason,
                                 const std::string& principal = kCoordinatorPrincipal);
  // Calls `callback` with a snapshot of the job, then with every state change
  // (event) and rank-0 progress, until Unwatch. An empty `job_id` watches
  // every job (snapshots of the active ones first). NOT_FOUND for an unknown
  // id. The edge ends a one-job stream after an event into a terminal state
  // (or a terminal snapshot).
  absl::StatusOr<WatchId> Watch(const std::string& job_id, WatchCallback callback);
  // After this returns the callback is not called again. Not from a callback.
  void Unwatch(WatchId id);
  std::vector<v1::Worker> ListWorkers();
  // A draining worker gets no new ranks, and every job with a rank on it is
  // asked to stop (SIGTERM to all its ranks, grace options_.preempt_grace):
  // its trainers checkpoint and exit kTrainerExitStopped, and the job is
  // requeued as a preemption onto other workers. Undraining lets it take
  // ranks again. `move_jobs` false only stops placing (a cordon).
  // NOT_FOUND for an unknown worker.
  absl::Status SetWorkerDraining(const std::string& worker_id, bool draining,
                                 bool move_jobs = true);

  // --- Agents (the Attach stream) -------------------------------------------

  // A `register` arrived on a stream whose outbound half is `sink`. Answers
  // `registered` through the sink, adopts the reported tasks that belong to
  // current attempts and cancels the others (orphans). Returns without
  // waiting for the writes it decided: the answer and the messages go out
  // once they are durable. A re-attach replaces
  // the previous sink. INVALID_ARGUMENT names a bad registration field.
  absl::Status AgentAttached(const v1::Register& registration, std::shared_ptr<AgentSink> sink);
  // The agent is shutting down and stops its own trainers: it gets no new
  // ranks (until it registers again), and the exits of its jobs' ranks on
  // SIGTERM count as preemptions. NOT_FOUND when never registered.
  absl::Status AgentLeaving(const std::string& worker_id, const std::string& reason);
  // The stream carrying `sink` ended. The worker keeps its ranks until its
  // lease runs out (its trainers keep running; it will re-attach).
  void AgentDetached(const std::string& worker_id, const AgentSink* sink);
  // FAILED_PRECONDITION when the lease already expired: the edge should end
  // the stream so the agent registers again. NOT_FOUND when never registered.
  absl::Status Heartbeat(const std::string& worker_id);
  // A rank started or exited on `worker_id`. Returns once the transition is
  // decided and staged, without waiting for its commit: the agent is not
  // answered, and what it causes (Assigns, Cancels, watch events) is sent
  // only once durable. The error of a failed commit shows on a later call.
  absl::Status TaskStatus(const std::string& worker_id, const v1::TaskStatus& status);

  // --- Trainers ---------------------------------------------------------------

  // NOT_FOUND for an unknown job; FAILED_PRECONDITION when the job or the
  // attempt is no longer running (the trainer should stop); INVALID_ARGUMENT
  // for a rank outside the world.
  absl::Status ReportProgress(const v1::ReportProgressRequest& request);

  // The task a trainer's credential (TaskAssignment.task_token) was issued
  // for, while that rank of that attempt is placed (the current attempt, or
  // the superseded one that may still report). UNAUTHENTICATED for a token
  // the coordinator did not issue; FAILED_PRECONDITION once the task has
  // ended, saying the trainer should stop.
  absl::StatusOr<TaskKey> VerifyTaskToken(absl::string_view token);

  // Whether the node `worker_id` may act for the job's attempt `attempt`
  // (0: the current one): OK when rank `rank` of it (any rank when `rank` is
  // negative) is placed on that node, in the current attempt or in the
  // superseded one that may still report. PERMISSION_DENIED otherwise,
  // naming the node and the task. For a job that is not running (ended,
  // unknown) the answer is OK unless `require_running`, so that the call
  // itself answers as it would (FAILED_PRECONDITION, NOT_FOUND) without
  // acting.
  absl::Status CheckTaskOnWorker(const std::string& worker_id, const std::string& job_id,
                                 int attempt, int rank, bool require_running);

  // --- Checkpoints (coordinator_checkpoints.cc) ---------------------------------

  // An upload of rank 0 begins: NOT_FOUND for an unknown job,
  // FAILED_PRECONDITION when `metadata.attempt` is not the job's current
  // attempt (or the job has ended), then CheckpointStore::BeginUpload's
  // errors (INVALID_ARGUMENT, RESOURCE_EXHAUSTED).
  absl::StatusOr<std::unique_ptr<CheckpointStore::Upload>> BeginCheckpointUpload(
      const v1::CheckpointMetadata& metadata);
  // Verifies and commits it (CheckpointStore::Commit) under the job's
  // retention (output.keep_checkpoints, output.keep_every, the final one).
  absl::StatusOr<v1::Checkpoint> CommitCheckpointUpload(
      std::unique_ptr<CheckpointStore::Upload> upload);
  // NOT_FOUND for an unknown job.
  absl::StatusOr<std::vector<v1::Checkpoint>> ListCheckpoints(const std::string& job_id,
                                                              v1::CheckpointKind kind);
  // The checkpoint a download names (by id, step + kind, or latest of kind;
  // no selector = latest; quarantined ones are passed over). NOT_FOUND for
  // an unknown job or checkpoint, INVALID_ARGUMENT for a malformed id,
  // FAILED_PRECONDITION for the id of a quarantined one.
  absl::StatusOr<v1::Checkpoint> FindCheckpoint(const v1::DownloadCheckpointRequest& request);
  // Its bytes from `offset` (INVALID_ARGUMENT past the end). The reader
  // verifies size and SHA-256 as it goes and ends with DATA_LOSS on a
  // mismatch; a checkpoint whose file is missing is DATA_LOSS at once. Either
  // way the checkpoint is quarantined.
  absl::StatusOr<std::unique_ptr<CheckpointStore::Reader>> OpenCheckpoint(
      const v1::Checkpoint& checkpoint, int64_t offset);
  // The S3 backend's calls (CheckpointStore's presigned ones), after the
  // same job and attempt checks as the streaming upload: a presigned upload
  // begins only for the running attempt (BeginCheckpointUpload's errors).
  // FAILED_PRECONDITION with the local backend or no store.
  absl::StatusOr<CheckpointStore::PresignedUpload> BeginPresignedCheckpointUpload(
      const v1::CheckpointMetadata& metadata);
  absl::StatusOr<v1::CheckpointMetadata> PresignedCheckpointUploadMetadata(
      const std::string& job_id, const std::string& upload_id);
  // Commits under the job's retention, as CommitCheckpointUpload.
  absl::StatusOr<v1::Checkpoint> CommitPresignedCheckpointUpload(
      const std::string& job_id, const std::string& upload_id,
      const std::vector<std::string>& part_md5s);
  absl::Status AbortPresignedCheckpointUpload(const std::string& job_id,
                                              const std::string& upload_id);
  absl::StatusOr<CheckpointStore::PresignedDownload> PresignCheckpointDownload(
      const v1::Checkpoint& checkpoint);
  // True when checkpoints move by presigned URLs (the S3 backend).
  bool CheckpointsPresigned() const;
  // CheckpointStore::SweepObjects (run periodically by the server's main).
  absl::Status SweepCheckpointObjects();
  // Checkpoints quarantined since this coordinator opened its store (they
  // failed verification or their file was missing).
  int64_t QuarantinedCheckpoints() const;
  // When each job's newest checkpoint (any kind) was committed.
  absl::flat_hash_map<std::string, absl::Time> LastCheckpointTimes();

  // --- Time -------------------------------------------------------------------

  // Call periodically (e.g. every heartbeat interval): expires leases, fails
  // attempts with lost or hung ranks, finishes restarts, schedules. Returns
  // the first store error met, if any (the work is retried next tick).
  absl::Status Tick(absl::Time now);

  // OK, or the error of the job store commit that failed: the coordinator's
  // memory is then ahead of its store, and it must be restarted.
  absl::Status StoreFailure() const { return commits_.failure(); }

  // Returns once every write decided so far is durable and every message and
  // update waiting for it has been delivered (tests and orderly shutdown;
  // the calls that answer someone already wait for what they show). The
  // commit's error, if it failed.
  absl::Status Settle() ABSL_LOCKS_EXCLUDED(mu_);

  // Job writes decided so far / batches committed (each one transaction
  // and one fsync): how many writes shared a commit.
  int64_t StagedWrites() const { return commits_.staged(); }
  int64_t CommittedBatches() const { return commits_.batches(); }

 private:
  struct RankState {
    enum class Phase { kAssigned, kRunning, kExited };
    Phase phase = Phase::kAssigned;
    // False until the rank's agent confirms it (RUNNING or EXITED, or listed
    // on re-attach); a rank still unconfirmed at `confirm_by` is lost.
    bool confirmed = false;
    absl::Time confirm_by;
    int exit_code = 0;
    int signal = 0;
    bool lost = false;      // its agent was lost: stopped, but not a success
    bool reported = false;  // any progress report yet
    int64_t step = -1;
    absl::Time advanced_at;  // when `step` last grew (or the rank started)
    // When its last progress report came. A rank blocked in a collective
    // behind a hung peer keeps reporting the same step; the hung one (stopped,
    // deadlocked) goes silent. The silent one is named as hung.
    absl::Time heard_at;
  };
  struct ActiveJob {
    v1::Job job;
    JobResources resources;
    int64_t order = 0;
    std::vector<RankState> ranks;  // current attempt; empty while PENDING
    absl::Time running_since;
    absl::Time placed_at;  // when the current attempt was placed
    // The coordinator asked the current attempt's ranks to stop (a drain):
    // their exits on SIGTERM/SIGKILL count as a preemption too.
    bool stop_requested = false;
    // The current attempt ended as a preemption (RESTARTING): requeued
    // without counting a restart.
    bool preempted = false;
    // The current attempt could not start for its node's reason (RESTARTING):
    // requeued without counting a restart, as a node requeue.
    bool node_problem = false;
    // The rendezvous ports of the job's latest attempts, newest last; the
    // next attempt gets another one.
    std::vector<int> recent_ports;
    // The previous attempt, failed for a rank that did not report in time,
    // while nothing newer has started (the job is PENDING): its ranks may
    // still be running. Their agents' reports are accepted, and when every
    // rank has exited 0 the job succeeded after all. Cleared when the next
    // attempt is placed, and its ranks still running are stopped then.
    struct Superseded {
      int attempt = 0;
      v1::Placement placement;
      std::vector<RankState> ranks;
    };
    std::optional<Superseded> superseded;
  };

  // A PENDING job's place in its device kind's queue, in GangScheduler's
  // order: priority descending, then submit time and order ascending.
  struct PendingKey {
    int priority = 0;
    absl::Time submit_time;
    int64_t order = 0;  // unique per job
    std::string job_id;
    friend bool operator<(const PendingKey& a, const PendingKey& b) {
      if (a.priority != b.priority) return a.priority > b.priority;
      if (a.submit_time != b.submit_time) return a.submit_time < b.submit_time;
      return a.order < b.order;
    }
  };

  Coordinator(CoordinatorOptions options, std::unique_ptr<JobStore> store);

  // After the domain lock is released: waits until every write staged up to
  // `barrier` (commits_.staged() read under the lock) is durable, then
  // delivers what waited for it. The commit's error, if it failed.
  absl::Status Deliver(int64_t barrier) ABSL_LOCKS_EXCLUDED(mu_);

  // Keeps pending_ in step with a job's state moving from `from` to `to`.
  void IndexPending(const ActiveJob& active, v1::JobState from, v1::JobState to)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Keeps holding_ in step with a job's state moving from `from` to `to`.
  void IndexHolding(const ActiveJob& active, v1::JobState from, v1::JobState to)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The jobs holding devices of `kind`, with their estimated ends (from
  // rank 0's progress, else the spec's estimate), for a reservation.
  std::vector<RunningJob> RunningJobs(const std::string& kind, absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // coordinator_jobs.cc: transitions and failure handling;
  // coordinator_schedule.cc: scheduling and placing.
  absl::Status Commit(ActiveJob& active, const v1::Job& next, const std::string& message,
                      absl::Time now, absl::string_view principal = kCoordinatorPrincipal)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Schedule(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Place(ActiveJob& active, const GangPlacement& placement, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // RESTARTING while restarts are left (and `may_restart`), else FAILED.
  absl::Status FailAttempt(ActiveJob& active, const std::string& reason, absl::Time now,
                           bool may_restart = true) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The attempt's ranks stopped on request after checkpointing: RESTARTING,
  // then PENDING at attempt + 1 without using a restart.
  absl::Status PreemptAttempt(ActiveJob& active, const std::string& reason, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A rank could not start for a reason of its node (exit
  // kTaskExitRendezvousBusy or kTaskExitCheckpointCorrupt): RESTARTING, then
  // PENDING at attempt + 1 without using a restart.
  absl::Status RequeueForNode(ActiveJob& active, const std::string& reason, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The superseded attempt's ranks have all exited 0: SUCCEEDED.
  absl::Status MaybeSucceedLate(ActiveJob& active, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The superseded attempt of the job `task` belongs to, when `task` is one
  // of its ranks placed on `worker_id`; else null.
  ActiveJob* SupersededAttempt(const TaskKey& task, const std::string& worker_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Why a rank's failure failed the attempt, naming the first cause this
  // coordinator knows of: a worker of the attempt that disconnected before
  // the rank exited is named first.
  std::string FailureReason(const ActiveJob& active, int rank, const std::string& worker_id,
                            const v1::TaskStatus& status) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Log(absl::string_view message) const;
  absl::Status MaybeFinishRestart(ActiveJob& active, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status MaybeAdvance(ActiveJob& active, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CancelRanks(const ActiveJob& active, const std::string& reason, absl::Duration grace)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendCancel(const std::string& worker_id, const TaskKey& task, const std::string& reason,
                  absl::Duration grace) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckRanks(ActiveJob& active, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status WorkerLost(const std::string& worker_id, const std::string& why, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The newest committed full checkpoint of the job, which a new attempt
  // resumes from; none: it starts from scratch.
  // Whether `metadata` may be uploaded now: its job is active and it names
  // the running attempt (or the superseded one that may still finish).
  absl::Status CheckUploadAttempt(const v1::CheckpointMetadata& metadata);
  std::optional<v1::Checkpoint> ResumeCheckpoint(const ActiveJob& active) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // To every watcher of the update's job; `event`, when set, becomes the
  // update's event once committed.
  void Publish(const v1::JobUpdate& update, std::shared_ptr<const v1::JobEvent> event = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Reap() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The active job whose current attempt is `task`'s, placed on `worker_id`.
  ActiveJob* CurrentAttempt(const TaskKey& task, const std::string& worker_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const CoordinatorOptions options_;
  std::unique_ptr<JobStore> store_;
  std::optional<TaskTokens> task_tokens_;         // set by Open
  std::unique_ptr<CheckpointStore> checkpoints_;  // null without options_.checkpoint_dir
  GangScheduler scheduler_;
  CommitQueue commits_;  // the job writes decided under mu_, committed after it
  Outbox outbox_;

  absl::Mutex mu_;
  WorkerRegistry registry_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, ActiveJob> jobs_ ABSL_GUARDED_BY(mu_);  // non-terminal
  std::vector<std::string> reap_ ABSL_GUARDED_BY(mu_);                     // became terminal
  // The PENDING jobs by device kind, in scheduling order, so a pass looks
  // only at the head of each queue instead of sorting every pending job.
  std::map<std::string, std::set<PendingKey>> pending_ ABSL_GUARDED_BY(mu_);
  // The jobs SCHEDULED, RUNNING or RESTARTING (holding devices) by device
  // kind: what a backfill reservation waits for.
  std::map<std::string, absl::flat_hash_set<std::string>> holding_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<AgentSink>> sinks_ ABSL_GUARDED_BY(mu_);
  struct WatchEntry {
    std::string job_id;  // empty: every job
    std::shared_ptr<Watcher> watcher;
  };
  absl::flat_hash_map<WatchId, WatchEntry> watchers_ ABSL_GUARDED_BY(mu_);
  WatchId next_watch_id_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t next_order_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time recovering_until_ ABSL_GUARDED_BY(mu_);  // no scheduling before
  // Operators' drains from the store, applied when the worker registers:
  // worker id -> move_jobs.
  std::map<std::string, bool> drained_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, absl::Time> last_checkpoint_ ABSL_GUARDED_BY(mu_);
};

}  // namespace clmae
