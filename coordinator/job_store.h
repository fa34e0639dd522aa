#pragma once

// The coordinator's durable state: jobs and their append-only event log in
// one SQLite file (WAL, synchronous=FULL). Every write has committed when the
// call returns, so whatever a caller acts on or acknowledges survives a crash
// (docs/README.md "Job lifecycle").
//
// Group commit: writes from concurrent callers share one transaction, hence
// one fsync. The first caller to find no commit in progress commits every
// write queued so far, each in its own savepoint (a failing write is rolled
// back alone); the others wait until the transaction holding theirs has
// committed. One caller alone commits alone, as before.

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "clmae/v1/job.pb.h"
#include "clmae/v1/job_spec.pb.h"
#include "coordinator/sqlite_db.h"

namespace clmae {

struct JobStoreOptions {
  std::string path;  // the SQLite file; created with its schema when missing
  absl::Duration busy_timeout = absl::Seconds(5);  // wait for another connection's lock
  // Slept after every commit, before its writers are answered, as a slower
  // disk's fsync would take: benchmarks use it to show a slow disk's cost on
  // a fast one. Zero (the default) in service.
  absl::Duration extra_commit_latency = absl::ZeroDuration();
};

// What Submit did: `created` is false when a retry found the job that an
// earlier call with the same request id created.
struct SubmitOutcome {
  v1::Job job;
  bool created = false;
  v1::JobEvent event;  // the submission event, when created
};

// The principal of the events the coordinator causes itself (placements,
// failures it detects, restarts).
inline constexpr char kCoordinatorPrincipal[] = "coordinator";

struct ListJobsQuery {
  std::vector<v1::JobState> states;           // any of these; empty = all
  std::map<std::string, std::string> labels;  // all must match
  std::optional<std::string> owner;           // only this principal's jobs
  int page_size = 100;                        // 1..1000
  std::string page_token;                     // from JobPage::next_page_token
};

struct JobPage {
  std::vector<v1::Job> jobs;    // newest submission first
  std::string next_page_token;  // empty on the last page
};

// One write of a batch (JobStore::Apply): the job's record replaced by `job`
// and, for a transition, the event `from -> job.state()` appended.
struct JobWrite {
  v1::Job job;
  bool transition = true;  // false: a record update without a state change
  v1::JobState from = v1::JOB_STATE_UNSPECIFIED;
  std::string message;
  absl::Time time;
  std::string principal = kCoordinatorPrincipal;
  // A transition's event: every field but `seq` set by the writer; Apply
  // sets `seq` once it is appended. May be shared with whoever publishes
  // it after the commit.
  std::shared_ptr<v1::JobEvent> event;
};

// Thread-safe: one connection behind a mutex; writes are group-committed.
class JobStore {
 public:
  // The schema version this build writes. Migrations run in order on Open.
  static constexpr int kSchemaVersion = 3;

  // Opens or creates the store and brings its schema up to kSchemaVersion.
  // UNAVAILABLE when the file cannot be opened in WAL mode;
  // FAILED_PRECONDITION when a newer build wrote it (its version is higher).
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(const JobStoreOptions& options);
  ~JobStore();

  // Stores a new job PENDING at attempt 1, owned by `owner`, with its
  // submission event (caused by `owner`). With a non-empty `request_id`
  // already used: the same spec by the same owner returns that job
  // (created = false); a different spec, or another owner, is
  // ALREADY_EXISTS.
  absl::StatusOr<SubmitOutcome> Submit(const v1::JobSpec& spec, absl::string_view request_id,
                                       absl::Time now, absl::string_view owner = "");

  // NOT_FOUND for an unknown id.
  absl::StatusOr<v1::Job> Get(absl::string_view id);

  // Replaces the job with `job` (same id) and appends the event `from ->
  // job.state()` at `now`, in one transaction. FAILED_PRECONDITION when the
  // stored state is not `from` (someone else moved it) or the transition is
  // illegal; NOT_FOUND for an unknown id. Returns the appended event, which
  // records `principal` as its cause.
  absl::StatusOr<v1::JobEvent> Transition(const v1::Job& job, v1::JobState from,
                                          absl::string_view message, absl::Time now,
                                          absl::string_view principal = kCoordinatorPrincipal);

  // Applies `writes` in order, all in one group-committed transaction (so
  // one fsync, shared with concurrent writers): all of them or, with the
  // first error (Transition's and Update's), none. Each transition's event
  // gets its `seq`.
  absl::Status Apply(const std::vector<JobWrite>& writes);

  // Replaces the job's record without a state change (progress, result).
  // FAILED_PRECONDITION when `job.state()` is not the stored state.
  absl::Status Update(const v1::Job& job);

  // INVALID_ARGUMENT for a bad page size or token.
  absl::StatusOr<JobPage> List(const ListJobsQuery& query);

  // Every job not in a terminal state, oldest submission first (recovery).
  absl::StatusOr<std::vector<v1::Job>> LoadActive();

  // The job's events, oldest first.
  absl::StatusOr<std::vector<v1::JobEvent>> Events(absl::string_view job_id);

  // An operator's drain of a worker, kept across coordinator restarts:
  // `draining` true records it (replacing an earlier one), false forgets it.
  absl::Status SetDrained(absl::string_view worker_id, bool draining, bool move_jobs,
                          absl::Time now);
  // Every recorded drain: worker id -> move_jobs.
  absl::StatusOr<std::map<std::string, bool>> LoadDrained();

 private:
  // One queued write: `body` runs under mu_ inside the batch's transaction.
  struct PendingWrite {
    const std::function<absl::Status()>* body;
    absl::Status status;
    bool done = false;
  };

  JobStore(std::unique_ptr<SqliteDb> db, absl::Duration extra_commit_latency)
      : extra_commit_latency_(extra_commit_latency), db_(std::move(db)) {}
  // Runs `body` in a group-committed transaction and returns once that has
  // committed: `body`'s status, or the commit's error (then nothing of it
  // was stored).
  absl::Status Write(const std::function<absl::Status()>& body) ABSL_LOCKS_EXCLUDED(mu_, batch_mu_);
  void CommitBatch(const std::vector<PendingWrite*>& batch) ABSL_LOCKS_EXCLUDED(batch_mu_);
  // The bodies of Submit, Transition and Update, inside a transaction.
  absl::Status SubmitInTransaction(const v1::JobSpec& spec, absl::string_view request_id,
                                   absl::string_view owner, absl::Time now, SubmitOutcome& outcome)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status TransitionInTransaction(const v1::Job& job, v1::JobState from,
                                       absl::string_view message, absl::Time now,
                                       absl::string_view principal, v1::JobEvent& event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status UpdateInTransaction(const v1::Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Migrate() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status PrepareStatements() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::string> NewJobId() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<v1::JobEvent> AppendEvent(const v1::Job& job, v1::JobState from,
                                           absl::string_view message, absl::Time now,
                                           absl::string_view principal)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::vector<v1::Job>> ReadJobs(SqliteStatement& stmt)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const absl::Duration extra_commit_latency_;
  // Taken before mu_ is, never while holding it.
  absl::Mutex batch_mu_;
  std::vector<PendingWrite*> batch_ ABSL_GUARDED_BY(batch_mu_);  // waiting for a commit
  bool committing_ ABSL_GUARDED_BY(batch_mu_) = false;

  absl::Mutex mu_;
  std::unique_ptr<SqliteDb> db_ ABSL_GUARDED_BY(mu_);
  uint64_t id_state_ ABSL_GUARDED_BY(mu_) = 0;
  // Prepared once; the hot paths (submit, transition) reuse them.
  std::unique_ptr<SqliteStatement> by_request_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<SqliteStatement> id_exists_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<SqliteStatement> insert_job_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<SqliteStatement> insert_label_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<SqliteStatement> insert_event_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<SqliteStatement> get_job_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<SqliteStatement> get_state_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<SqliteStatement> update_job_ ABSL_GUARDED_BY(mu_);
};

}  // namespace clmae
