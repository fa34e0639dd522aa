#include "services/coordinator_service.h"

#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/job_spec/job_spec_validator.h"
#include "common/status_macros.h"
#include "coordinator/job_state_machine.h"
#include "services/status_mapping.h"
#include "services/stream_writer.h"
#include "services/unary_call.h"

namespace clmae {

absl::Status RequireJobId(const std::string& job_id) {
  if (job_id.empty()) return absl::InvalidArgumentError("job_id: required; give a job id");
  return absl::OkStatus();
}

absl::Status CheckOwner(clmae::Coordinator& coordinator, const Principal& principal,
                        const std::string& job_id) {
  if (principal.is_operator()) return absl::OkStatus();
  ASSIGN_OR_RETURN(v1::Job job, coordinator.Get(job_id));
  return CheckJobAccess(principal, job.id(), job.owner());
}

namespace {

constexpr int kDefaultPageSize = 100;

// Which jobs an all-jobs watch of a user may see: theirs. Updates carry the
// owner only in snapshots, so the answer for an event or progress comes from
// the job itself, once per job. Called on the coordinator's flushing
// threads.
class OwnedJobs {
 public:
  OwnedJobs(clmae::Coordinator* coordinator, std::string owner)
      : coordinator_(coordinator), owner_(std::move(owner)) {}

  bool Owns(const v1::JobUpdate& update) {
    absl::MutexLock lock(&mu_);
    auto it = known_.find(update.job_id());
    if (it != known_.end()) return it->second;
    bool owns = false;
    if (update.has_snapshot()) {
      owns = update.snapshot().owner() == owner_;
    } else if (absl::StatusOr<v1::Job> job = coordinator_->Get(update.job_id()); job.ok()) {
      owns = job->owner() == owner_;
    }
    known_[update.job_id()] = owns;
    return owns;
  }

 private:
  clmae::Coordinator* const coordinator_;
  const std::string owner_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, bool> known_ ABSL_GUARDED_BY(mu_);
};

// One WatchJob stream. Updates arrive on the coordinator's flushing thread
// and go to the StreamWriter; the watch is removed in OnDone, once nothing
// more can be written.
class WatchReactor final : public grpc::ServerWriteReactor<v1::JobUpdate> {
 public:
  WatchReactor(clmae::Coordinator* coordinator, const Authorizer& authorizer,
               grpc::CallbackServerContext* context, const v1::WatchJobRequest& request)
      : coordinator_(coordinator),
        job_id_(request.job_id()),
        writer_(std::make_shared<Writer>(
            this, CoordinatorService::kMaxQueuedUpdates,
            "the client reads updates too slowly; watch again for a fresh snapshot",
            /*held=*/true)) {
    absl::StatusOr<Principal> principal = authorizer.Authorize(*context, Access::kClient);
    absl::Status allowed = principal.status();
    if (principal.ok()) {
      // A user watches their own jobs: one of them, or (no job id) all of
      // them; an operator every job.
      if (!job_id_.empty()) {
        allowed = CheckOwner(*coordinator, *principal, job_id_);
      } else if (!principal->is_operator()) {
        owner_filter_ = principal->name;
      }
    }
    if (!allowed.ok()) {
      writer_->FinishNow(ToGrpcStatus(allowed));
      writer_->Release();
      return;
    }
    // The callback keeps only the writer, which outlives this reactor.
    std::shared_ptr<Writer> writer = writer_;
    const bool one_job = !job_id_.empty();
    std::shared_ptr<OwnedJobs> owned =
        owner_filter_.has_value() ? std::make_shared<OwnedJobs>(coordinator, *owner_filter_)
                                  : nullptr;
    absl::StatusOr<WatchId> id =
        coordinator_->Watch(job_id_, [writer, one_job, owned](const v1::JobUpdate& update) {
          if (owned != nullptr && !owned->Owns(update)) return;
          const bool ends =
              one_job && ((update.has_event() && IsTerminal(update.event().to_state())) ||
                          (update.has_snapshot() && IsTerminal(update.snapshot().state())));
          writer->Push(update, update.has_progress() ? "progress " + update.job_id() : "");
          if (ends) writer->FinishAfterQueued(grpc::Status::OK);
        });
    if (id.ok()) {
      watch_id_ = *id;
    } else {
      writer_->FinishNow(ToGrpcStatus(id.status()));
    }
    // Writes start only now, so nothing can finish (and delete) this reactor
    // before it is fully built.
    writer_->Release();
  }

  void OnWriteDone(bool ok) override { writer_->OnWriteDone(ok); }
  void OnCancel() override {
    writer_->FinishNow(grpc::Status(grpc::StatusCode::CANCELLED, "the watch was cancelled"));
  }
  void OnDone() override {
    if (watch_id_ != 0) coordinator_->Unwatch(watch_id_);
    delete this;
  }

 private:
  using Writer = StreamWriter<grpc::ServerWriteReactor<v1::JobUpdate>, v1::JobUpdate>;

  clmae::Coordinator* const coordinator_;
  const std::string job_id_;
  // Watching every job as a user: only the updates of their own jobs go out.
  std::optional<std::string> owner_filter_;
  const std::shared_ptr<Writer> writer_;
  WatchId watch_id_ = 0;  // 0: no watch registered
};

}  // namespace

grpc::ServerUnaryReactor* CoordinatorService::SubmitJob(grpc::CallbackServerContext* context,
                                                        const v1::SubmitJobRequest* request,
                                                        v1::Job* response) {
  // Waits for a durable commit: on the submission threads, so that many
  // submissions share one.
  return RunUnaryOn(
      submissions_, context, *authorizer_, Access::kClient,
      [this, request, response](const Principal& p) -> absl::Status {
        if (!request->has_spec()) {
          return absl::InvalidArgumentError("spec: required; give the job spec to run");
        }
        if (absl::Status valid = ValidateJobSpecForService(request->spec()); !valid.ok())
          return valid;
        absl::StatusOr<v1::Job> job =
            coordinator_->Submit(request->spec(), request->request_id(), p.name);
        if (!job.ok()) return job.status();
        *response = *std::move(job);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CoordinatorService::GetJob(grpc::CallbackServerContext* context,
                                                     const v1::GetJobRequest* request,
                                                     v1::Job* response) {
  return RunUnary(context, *authorizer_, Access::kClient, [&](const Principal& p) -> absl::Status {
    if (absl::Status ok = RequireJobId(request->job_id()); !ok.ok()) return ok;
    absl::StatusOr<v1::Job> job = coordinator_->Get(request->job_id());
    if (!job.ok()) return job.status();
    RETURN_IF_ERROR(CheckJobAccess(p, job->id(), job->owner()));
    *response = *std::move(job);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CoordinatorService::ListJobs(grpc::CallbackServerContext* context,
                                                       const v1::ListJobsRequest* request,
                                                       v1::ListJobsResponse* response) {
  return RunUnary(context, *authorizer_, Access::kClient, [&](const Principal& p) -> absl::Status {
    if (request->all_owners() && !p.is_operator()) {
      return absl::PermissionDeniedError(
          absl::StrCat("all_owners: principal '", p.name, "' (", RoleName(p.role),
                       ") may list only its own jobs; listing every owner's needs an operator"));
    }
    ListJobsQuery query;
    if (!request->all_owners()) query.owner = p.name;
    for (int state : request->states()) query.states.push_back(static_cast<v1::JobState>(state));
    query.labels.insert(request->label_selector().begin(), request->label_selector().end());
    query.page_size = request->page_size() == 0 ? kDefaultPageSize : request->page_size();
    query.page_token = request->page_token();
    absl::StatusOr<JobPage> page = coordinator_->List(query);
    if (!page.ok()) return page.status();
    for (v1::Job& job : page->jobs) *response->add_jobs() = std::move(job);
    response->set_next_page_token(page->next_page_token);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CoordinatorService::CancelJob(grpc::CallbackServerContext* context,
                                                        const v1::CancelJobRequest* request,
                                                        v1::Job* response) {
  return RunUnary(context, *authorizer_, Access::kClient, [&](const Principal& p) -> absl::Status {
    if (absl::Status ok = RequireJobId(request->job_id()); !ok.ok()) return ok;
    RETURN_IF_ERROR(CheckOwner(*coordinator_, p, request->job_id()));
    absl::StatusOr<v1::Job> job =
        coordinator_->Cancel(request->job_id(), request->reason(), p.name);
    if (!job.ok()) return job.status();
    *response = *std::move(job);
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::JobUpdate>* CoordinatorService::WatchJob(
    grpc::CallbackServerContext* context, const v1::WatchJobRequest* request) {
  return new WatchReactor(coordinator_, *authorizer_, context, *request);
}

grpc::ServerUnaryReactor* CoordinatorService::ListWorkers(grpc::CallbackServerContext* context,
                                                          const v1::ListWorkersRequest* /*request*/,
                                                          v1::ListWorkersResponse* response) {
  return RunUnary(context, *authorizer_, Access::kOperator, [&](const Principal&) -> absl::Status {
    for (v1::Worker& worker : coordinator_->ListWorkers()) {
      *response->add_workers() = std::move(worker);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CoordinatorService::DrainWorker(grpc::CallbackServerContext* context,
                                                          const v1::DrainWorkerRequest* request,
                                                          v1::Worker* response) {
  return RunUnary(context, *authorizer_, Access::kOperator, [&](const Principal&) -> absl::Status {
    RETURN_IF_ERROR(coordinator_->SetWorkerDraining(request->worker_id(), !request->undo(),
                                                    !request->keep_jobs()));
    for (v1::Worker& worker : coordinator_->ListWorkers()) {
      if (worker.id() == request->worker_id()) *response = std::move(worker);
    }
    return absl::OkStatus();
  });
}

}  // namespace clmae
