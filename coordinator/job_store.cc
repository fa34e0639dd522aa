#include "coordinator/job_store.h"

#include <limits>
#include <random>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "coordinator/job_state_machine.h"
#include "coordinator/job_store_schema.h"
#include "coordinator/proto_time.h"
#include "google/protobuf/util/message_differencer.h"

namespace clmae {
namespace {

constexpr absl::string_view kTokenPrefix = "clmae-jobs-v1:";

std::string PageToken(int64_t last_seq) {
  return absl::WebSafeBase64Escape(absl::StrCat(kTokenPrefix, last_seq));
}

absl::StatusOr<int64_t> ParsePageToken(absl::string_view token) {
  std::string raw;
  int64_t seq = 0;
  if (!absl::WebSafeBase64Unescape(token, &raw) || !absl::StartsWith(raw, kTokenPrefix) ||
      !absl::SimpleAtoi(absl::string_view(raw).substr(kTokenPrefix.size()), &seq)) {
    return absl::InvalidArgumentError(
        "page_token: not a token from a previous ListJobs answer; omit it for the first page");
  }
  return seq;
}

}  // namespace

absl::StatusOr<std::unique_ptr<JobStore>> JobStore::Open(const JobStoreOptions& options) {
  if (options.path.empty()) return absl::InvalidArgumentError("job store: path is empty");
  if (options.extra_commit_latency < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("job store: extra_commit_latency is negative");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SqliteDb> db,
                   SqliteDb::Open(options.path, options.busy_timeout));
  std::unique_ptr<JobStore> store(new JobStore(std::move(db), options.extra_commit_latency));
  absl::MutexLock lock(&store->mu_);
  store->id_state_ = (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}() ^
                     static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  RETURN_IF_ERROR(store->Migrate());
  RETURN_IF_ERROR(store->PrepareStatements());
  return store;
}

JobStore::~JobStore() {
  absl::MutexLock lock(&mu_);
  // Statements must be finalised before the connection closes.
  by_request_.reset();
  id_exists_.reset();
  insert_job_.reset();
  insert_label_.reset();
  insert_event_.reset();
  get_job_.reset();
  get_state_.reset();
  update_job_.reset();
  db_.reset();
}

absl::Status JobStore::Migrate() {
  if (static_cast<int>(JobStoreMigrations().size()) != kSchemaVersion) {
    return absl::InternalError("job store: migration list and schema version disagree");
  }
  return MigrateSchema(*db_, "job store", JobStoreMigrations());
}

absl::Status JobStore::PrepareStatements() {
  ASSIGN_OR_RETURN(by_request_, db_->Prepare("SELECT job FROM jobs WHERE request_id = ?"));
  ASSIGN_OR_RETURN(id_exists_, db_->Prepare("SELECT 1 FROM jobs WHERE id = ?"));
  ASSIGN_OR_RETURN(insert_job_,
                   db_->Prepare("INSERT INTO jobs (id, request_id, state, priority, "
                                "submit_time_us, job, owner) VALUES (?, ?, ?, ?, ?, ?, ?)"));
  ASSIGN_OR_RETURN(insert_label_,
                   db_->Prepare("INSERT INTO job_labels (job_seq, key, value) VALUES (?, ?, ?)"));
  ASSIGN_OR_RETURN(insert_event_,
                   db_->Prepare("INSERT INTO events (job_id, time_us, from_state, to_state, "
                                "attempt, message, principal) VALUES (?, ?, ?, ?, ?, ?, ?)"));
  ASSIGN_OR_RETURN(get_job_, db_->Prepare("SELECT job FROM jobs WHERE id = ?"));
  ASSIGN_OR_RETURN(get_state_, db_->Prepare("SELECT state FROM jobs WHERE id = ?"));
  ASSIGN_OR_RETURN(update_job_, db_->Prepare("UPDATE jobs SET state = ?, job = ? WHERE id = ?"));
  return absl::OkStatus();
}

absl::StatusOr<std::string> JobStore::NewJobId() {
  for (int tries = 0; tries < 8; ++tries) {
    // splitmix64: ids need to be unique and opaque, not secret.
    uint64_t z = (id_state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    std::string id = absl::StrFormat("job-%012x", z & 0xffffffffffffULL);
    id_exists_->Bind(1, id);
    absl::StatusOr<bool> taken = id_exists_->Step();
    id_exists_->Reset();
    if (!taken.ok()) return taken.status();
    if (!*taken) return id;
  }
  return absl::InternalError("job store: could not draw an unused job id");
}

absl::StatusOr<v1::JobEvent> JobStore::AppendEvent(const v1::Job& job, v1::JobState from,
                                                   absl::string_view message, absl::Time now,
                                                   absl::string_view principal) {
  insert_event_->Bind(1, job.id())
      .Bind(2, absl::ToUnixMicros(now))
      .Bind(3, int64_t{from})
      .Bind(4, int64_t{job.state()})
      .Bind(5, int64_t{job.attempt()})
      .Bind(6, message)
      .Bind(7, principal);
  RETURN_IF_ERROR(insert_event_->Run());
  v1::JobEvent event;
  event.set_job_id(job.id());
  event.set_seq(db_->LastInsertRowId());
  *event.mutable_time() = ToProtoTime(now);
  event.set_from_state(from);
  event.set_to_state(job.state());
  event.set_attempt(job.attempt());
  event.set_message(std::string(message));
  event.set_principal(std::string(principal));
  return event;
}

absl::StatusOr<SubmitOutcome> JobStore::Submit(const v1::JobSpec& spec,
                                               absl::string_view request_id, absl::Time now,
                                               absl::string_view owner) {
  SubmitOutcome outcome;
  const std::function<absl::Status()> body = [&] {
    mu_.AssertHeld();
    return SubmitInTransaction(spec, request_id, owner, now, outcome);
  };
  RETURN_IF_ERROR(Write(body));
  return outcome;
}

absl::Status JobStore::SubmitInTransaction(const v1::JobSpec& spec, absl::string_view request_id,
                                           absl::string_view owner, absl::Time now,
                                           SubmitOutcome& outcome) {
  if (!request_id.empty()) {
    by_request_->Bind(1, request_id);
    absl::StatusOr<bool> found = by_request_->Step();
    std::string blob = found.ok() && *found ? by_request_->ColumnBlob(0) : std::string();
    by_request_->Reset();
    if (!found.ok()) return found.status();
    if (*found) {
      if (!outcome.job.ParseFromString(blob)) {
        return absl::DataLossError(
            absl::StrCat("job store: unreadable job for request id '", request_id, "'"));
      }
      if (outcome.job.owner() != owner) {
        return absl::AlreadyExistsError(
            absl::StrCat("request id '", request_id,
                         "' was already used by another principal; use a new request id"));
      }
      if (!google::protobuf::util::MessageDifferencer::Equals(outcome.job.spec(), spec)) {
        return absl::AlreadyExistsError(absl::StrCat(
            "request id '", request_id, "' was already used for job ", outcome.job.id(),
            " with a different spec; use a new request id to submit another job"));
      }
      return absl::OkStatus();  // only read: nothing to commit
    }
  }
  outcome.created = true;
  v1::Job& job = outcome.job;
  ASSIGN_OR_RETURN(std::string id, NewJobId());
  job.set_id(id);
  *job.mutable_spec() = spec;
  job.set_state(v1::JOB_STATE_PENDING);
  job.set_attempt(1);
  job.set_request_id(std::string(request_id));
  job.set_owner(std::string(owner));
  *job.mutable_submit_time() = ToProtoTime(now);
  *job.mutable_update_time() = job.submit_time();
  insert_job_->Bind(1, job.id());
  if (request_id.empty()) {
    insert_job_->BindNull(2);
  } else {
    insert_job_->Bind(2, request_id);
  }
  insert_job_->Bind(3, int64_t{job.state()})
      .Bind(4, int64_t{spec.resources().priority()})
      .Bind(5, absl::ToUnixMicros(now))
      .BindBlob(6, job.SerializeAsString())
      .Bind(7, owner);
  RETURN_IF_ERROR(insert_job_->Run());
  const int64_t seq = db_->LastInsertRowId();
  for (const auto& [key, value] : spec.labels()) {
    insert_label_->Bind(1, seq).Bind(2, key).Bind(3, value);
    RETURN_IF_ERROR(insert_label_->Run());
  }
  ASSIGN_OR_RETURN(outcome.event,
                   AppendEvent(job, v1::JOB_STATE_UNSPECIFIED, "submitted", now, owner));
  return absl::OkStatus();
}

absl::Status JobStore::Write(const std::function<absl::Status()>& body) {
  PendingWrite self{.body = &body, .status = absl::OkStatus()};
  std::vector<PendingWrite*> batch;
  {
    absl::MutexLock lock(&batch_mu_);
    batch_.push_back(&self);
    // Either a commit in progress takes this write along with the next
    // batch's leader, or this caller leads that batch.
    const auto done_or_free = [&] {
      batch_mu_.AssertReaderHeld();
      return self.done || !committing_;
    };
    batch_mu_.Await(absl::Condition(&done_or_free));
    if (self.done) return self.status;
    committing_ = true;
    batch.swap(batch_);  // holds `self`: only a leader takes writes, and marks them done
  }
  CommitBatch(batch);
  absl::MutexLock lock(&batch_mu_);
  for (PendingWrite* write : batch) write->done = true;
  committing_ = false;
  return self.status;
}

void JobStore::CommitBatch(const std::vector<PendingWrite*>& batch) {
  absl::MutexLock lock(&mu_);
  const auto fail_all = [&](const absl::Status& status) {
    for (PendingWrite* write : batch) {
      if (write->status.ok()) write->status = status;
    }
  };
  if (absl::Status begun = db_->Begin(); !begun.ok()) return fail_all(begun);
  SqliteTransaction txn(db_.get());
  for (PendingWrite* write : batch) {
    // A savepoint per write: one that fails is undone without the others.
    if (absl::Status saved = db_->Exec("SAVEPOINT write"); !saved.ok()) {
      write->status = saved;
      continue;
    }
    write->status = (*write->body)();
    if (!write->status.ok()) db_->Exec("ROLLBACK TO write").IgnoreError();
    db_->Exec("RELEASE write").IgnoreError();
  }
  if (absl::Status committed = txn.Commit(); !committed.ok()) {
    db_->Rollback();
    fail_all(committed);
  }
  if (extra_commit_latency_ > absl::ZeroDuration()) absl::SleepFor(extra_commit_latency_);
}

absl::StatusOr<v1::Job> JobStore::Get(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  get_job_->Bind(1, id);
  ASSIGN_OR_RETURN(std::vector<v1::Job> jobs, ReadJobs(*get_job_));
  if (jobs.empty()) return absl::NotFoundError(absl::StrCat("no job with id '", Clip(id), "'"));
  return jobs.front();
}

absl::StatusOr<v1::JobEvent> JobStore::Transition(const v1::Job& job, v1::JobState from,
                                                  absl::string_view message, absl::Time now,
                                                  absl::string_view principal) {
  v1::JobEvent event;
  const std::function<absl::Status()> body = [&] {
    mu_.AssertHeld();
    return TransitionInTransaction(job, from, message, now, principal, event);
  };
  RETURN_IF_ERROR(Write(body));
  return event;
}

absl::Status JobStore::TransitionInTransaction(const v1::Job& job, v1::JobState from,
                                               absl::string_view message, absl::Time now,
                                               absl::string_view principal, v1::JobEvent& event) {
  get_state_->Bind(1, job.id());
  absl::StatusOr<bool> found = get_state_->Step();
  const auto stored =
      static_cast<v1::JobState>(found.ok() && *found ? get_state_->ColumnInt(0) : 0);
  get_state_->Reset();
  if (!found.ok()) return found.status();
  if (!*found) return absl::NotFoundError(absl::StrCat("no job with id '", Clip(job.id()), "'"));
  if (stored != from) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job.id(), " is ", JobStateName(stored), ", not ", JobStateName(from)));
  }
  RETURN_IF_ERROR(CheckTransition(from, job.state()));
  update_job_->Bind(1, int64_t{job.state()}).BindBlob(2, job.SerializeAsString()).Bind(3, job.id());
  RETURN_IF_ERROR(update_job_->Run());
  ASSIGN_OR_RETURN(event, AppendEvent(job, from, message, now, principal));
  return absl::OkStatus();
}

absl::Status JobStore::Apply(const std::vector<JobWrite>& writes) {
  const std::function<absl::Status()> body = [&]() -> absl::Status {
    mu_.AssertHeld();
    for (const JobWrite& write : writes) {
      if (!write.transition) {
        RETURN_IF_ERROR(UpdateInTransaction(write.job));
        continue;
      }
      v1::JobEvent appended;
      RETURN_IF_ERROR(TransitionInTransaction(write.job, write.from, write.message, write.time,
                                              write.principal, appended));
      if (write.event != nullptr) write.event->set_seq(appended.seq());
    }
    return absl::OkStatus();
  };
  return Write(body);
}

absl::Status JobStore::Update(const v1::Job& job) {
  const std::function<absl::Status()> body = [&] {
    mu_.AssertHeld();
    return UpdateInTransaction(job);
  };
  return Write(body);
}

absl::Status JobStore::UpdateInTransaction(const v1::Job& job) {
  ASSIGN_OR_RETURN(auto stmt, db_->Prepare("UPDATE jobs SET job = ? WHERE id = ? AND state = ?"));
  stmt->BindBlob(1, job.SerializeAsString()).Bind(2, job.id()).Bind(3, int64_t{job.state()});
  RETURN_IF_ERROR(stmt->Run());
  if (db_->Changes() == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job.id(), " is unknown or no longer ", JobStateName(job.state())));
  }
  return absl::OkStatus();
}

absl::StatusOr<JobPage> JobStore::List(const ListJobsQuery& query) {
  if (query.page_size < 1 || query.page_size > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size: ", query.page_size, " is outside 1..1000"));
  }
  int64_t before = std::numeric_limits<int64_t>::max();
  if (!query.page_token.empty()) {
    ASSIGN_OR_RETURN(before, ParsePageToken(query.page_token));
  }
  std::string sql = "SELECT job, seq FROM jobs WHERE seq < ?";
  if (!query.states.empty()) {
    std::vector<int> states(query.states.begin(), query.states.end());
    absl::StrAppend(&sql, " AND state IN (", absl::StrJoin(states, ","), ")");
  }
  if (query.owner.has_value()) absl::StrAppend(&sql, " AND owner = ?");
  for (size_t i = 0; i < query.labels.size(); ++i) {
    absl::StrAppend(&sql, " AND EXISTS (SELECT 1 FROM job_labels l WHERE l.job_seq = jobs.seq",
                    " AND l.key = ? AND l.value = ?)");
  }
  absl::StrAppend(&sql, " ORDER BY seq DESC LIMIT ?");
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto stmt, db_->Prepare(sql));
  int index = 1;
  stmt->Bind(index++, before);
  if (query.owner.has_value()) stmt->Bind(index++, *query.owner);
  for (const auto& [key, value] : query.labels) {
    stmt->Bind(index, key).Bind(index + 1, value);
    index += 2;
  }
  stmt->Bind(index, int64_t{query.page_size} + 1);  // one more: is there a next page?
  JobPage page;
  int64_t last_seq = 0;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, stmt->Step());
    if (!row) break;
    if (static_cast<int>(page.jobs.size()) == query.page_size) {
      page.next_page_token = PageToken(last_seq);
      break;
    }
    if (!page.jobs.emplace_back().ParseFromString(stmt->ColumnBlob(0))) {
      return absl::DataLossError("job store: unreadable job record");
    }
    last_seq = stmt->ColumnInt(1);
  }
  return page;
}

absl::StatusOr<std::vector<v1::Job>> JobStore::LoadActive() {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto stmt, db_->Prepare(absl::StrCat(
                                  "SELECT job FROM jobs WHERE state IN (", v1::JOB_STATE_PENDING,
                                  ",", v1::JOB_STATE_SCHEDULED, ",", v1::JOB_STATE_RUNNING, ",",
                                  v1::JOB_STATE_RESTARTING, ") ORDER BY seq")));
  return ReadJobs(*stmt);
}

absl::StatusOr<std::vector<v1::JobEvent>> JobStore::Events(absl::string_view job_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto stmt,
                   db_->Prepare("SELECT seq, time_us, from_state, to_state, attempt, "
                                "message, principal FROM events WHERE job_id = ? ORDER BY seq"));
  stmt->Bind(1, job_id);
  std::vector<v1::JobEvent> events;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, stmt->Step());
    if (!row) break;
    v1::JobEvent& event = events.emplace_back();
    event.set_job_id(std::string(job_id));
    event.set_seq(stmt->ColumnInt(0));
    *event.mutable_time() = ToProtoTime(absl::FromUnixMicros(stmt->ColumnInt(1)));
    event.set_from_state(static_cast<v1::JobState>(stmt->ColumnInt(2)));
    event.set_to_state(static_cast<v1::JobState>(stmt->ColumnInt(3)));
    event.set_attempt(static_cast<int32_t>(stmt->ColumnInt(4)));
    event.set_message(stmt->ColumnText(5));
    event.set_principal(stmt->ColumnText(6));
  }
  return events;
}

absl::Status JobStore::SetDrained(absl::string_view worker_id, bool draining, bool move_jobs,
                                  absl::Time now) {
  const std::function<absl::Status()> body = [&]() -> absl::Status {
    mu_.AssertHeld();
    if (!draining) {
      ASSIGN_OR_RETURN(auto stmt, db_->Prepare("DELETE FROM drained_workers WHERE worker_id = ?"));
      stmt->Bind(1, worker_id);
      return stmt->Run();
    }
    ASSIGN_OR_RETURN(auto stmt, db_->Prepare("INSERT OR REPLACE INTO drained_workers "
                                             "(worker_id, move_jobs, time_us) VALUES (?, ?, ?)"));
    stmt->Bind(1, worker_id).Bind(2, int64_t{move_jobs ? 1 : 0}).Bind(3, absl::ToUnixMicros(now));
    return stmt->Run();
  };
  return Write(body);
}

absl::StatusOr<std::map<std::string, bool>> JobStore::LoadDrained() {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto stmt, db_->Prepare("SELECT worker_id, move_jobs FROM drained_workers"));
  std::map<std::string, bool> drained;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, stmt->Step());
    if (!row) break;
    drained[stmt->ColumnText(0)] = stmt->ColumnInt(1) != 0;
  }
  return drained;
}

absl::StatusOr<std::vector<v1::Job>> JobStore::ReadJobs(SqliteStatement& stmt) {
  std::vector<v1::Job> jobs;
  for (;;) {
    absl::StatusOr<bool> row = stmt.Step();
    if (!row.ok() || !*row) {
      stmt.Reset();
      if (!row.ok()) return row.status();
      return jobs;
    }
    if (!jobs.emplace_back().ParseFromString(stmt.ColumnBlob(0))) {
      stmt.Reset();
      return absl::DataLossError("job store: unreadable job record");
    }
  }
}

}  // namespace clmae
