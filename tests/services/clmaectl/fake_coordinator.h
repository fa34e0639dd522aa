#pragma once

// A scripted, in-process Coordinator service for clmaectl's tests, and a
// fixture that runs clmaectl against it with string streams.

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "clmae/v1/coordinator.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "services/clmaectl/clmaectl.h"

namespace clmae::ctl::testing {

// Answers from what a test put in it; records what it was asked. The
// members are guarded by mu_ where the service threads touch them.
class FakeCoordinator final : public v1::Coordinator::Service {
 public:
  // One job's watch stream: these updates, then `end` (a stream that
  // `hang`s instead waits until the client cancels it).
  struct WatchScript {
    std::vector<v1::JobUpdate> updates;
    grpc::Status end = grpc::Status::OK;
    bool hang = false;
  };

  // When set, every call must carry "authorization: Bearer <token>".
  std::string required_token;
  // When set, every call fails with it.
  std::optional<grpc::Status> fail_all;

  std::map<std::string, v1::Job> jobs;  // by id
  std::vector<v1::Job> list_order;      // what ListJobs pages through
  v1::ListWorkersResponse workers;
  std::map<std::string, WatchScript> watches;  // by job id ("" for every job)
  grpc::Status submit_status = grpc::Status::OK;
  // A job's committed checkpoints (ListCheckpoints lists them in this
  // order) and their bytes by checkpoint id. A job with no entry is
  // NOT_FOUND.
  std::map<std::string, std::vector<v1::Checkpoint>> checkpoints;
  std::map<std::string, std::string> checkpoint_bytes;
  // When set, the first DownloadCheckpoint stream sends the bytes before
  // `download_break_at` (counted from the file's start), then ends with it.
  std::optional<grpc::Status> download_break;
  int64_t download_break_at = 0;

  // What was asked.
  int calls() const {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  std::vector<v1::SubmitJobRequest> submits() const {
    std::lock_guard<std::mutex> lock(mu_);
    return submits_;
  }
  std::vector<v1::ListJobsRequest> list_requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return list_requests_;
  }
  std::vector<v1::CancelJobRequest> cancels() const {
    std::lock_guard<std::mutex> lock(mu_);
    return cancels_;
  }
  std::vector<v1::ListCheckpointsRequest> list_checkpoint_requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return list_checkpoint_requests_;
  }
  std::vector<v1::DownloadCheckpointRequest> downloads() const {
    std::lock_guard<std::mutex> lock(mu_);
    return downloads_;
  }

  grpc::Status SubmitJob(grpc::ServerContext* context, const v1::SubmitJobRequest* request,
                         v1::Job* job) override {
    if (grpc::Status s = Begin(context); !s.ok()) return s;
    std::lock_guard<std::mutex> lock(mu_);
    submits_.push_back(*request);
    if (!submit_status.ok()) return submit_status;
    job->set_id("j-new");
    *job->mutable_spec() = request->spec();
    job->set_state(v1::JOB_STATE_PENDING);
    job->set_attempt(1);
    job->set_request_id(request->request_id());
    return grpc::Status::OK;
  }

  grpc::Status GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                      v1::Job* job) override {
    if (grpc::Status s = Begin(context); !s.ok()) return s;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs.find(request->job_id());
    if (it == jobs.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "job " + request->job_id() + " not found");
    }
    *job = it->second;
    return grpc::Status::OK;
  }

  // Pages of page_size (default 2, to exercise paging); the token is the
  // offset.
  grpc::Status ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override {
    if (grpc::Status s = Begin(context); !s.ok()) return s;
    std::lock_guard<std::mutex> lock(mu_);
    list_requests_.push_back(*request);
    const size_t offset = request->page_token().empty() ? 0 : std::stoul(request->page_token());
    const size_t size = request->page_size() > 0 ? request->page_size() : 2;
    for (size_t i = offset; i < list_order.size() && i < offset + size; ++i) {
      *response->add_jobs() = list_order[i];
    }
    if (offset + size < list_order.size()) {
      response->set_next_page_token(std::to_string(offset + size));
    }
    return grpc::Status::OK;
  }

  grpc::Status CancelJob(grpc::ServerContext* context, const v1::CancelJobRequest* request,
                         v1::Job* job) override {
    if (grpc::Status s = Begin(context); !s.ok()) return s;
    std::lock_guard<std::mutex> lock(mu_);
    cancels_.push_back(*request);
    auto it = jobs.find(request->job_id());
    if (it == jobs.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "job " + request->job_id() + " not found");
    }
    const v1::JobState state = it->second.state();
    if (state != v1::JOB_STATE_SUCCEEDED && state != v1::JOB_STATE_FAILED) {
      it->second.set_state(v1::JOB_STATE_CANCELLED);
      it->second.set_failure_message(request->reason());
    }
    *job = it->second;
    return grpc::Status::OK;
  }

  grpc::Status WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::JobUpdate>* writer) override {
    if (grpc::Status s = Begin(context); !s.ok()) return s;
    WatchScript script;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = watches.find(request->job_id());
      if (it == watches.end()) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND, "job " + request->job_id() + " not found");
      }
      script = it->second;
    }
    for (const v1::JobUpdate& update : script.updates) {
      if (!writer->Write(update)) return grpc::Status::CANCELLED;
    }
    if (script.hang) {
      // Ends only when the client cancels; the test fails on its timeout
      // otherwise, which is the bug it looks for.
      while (!context->IsCancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      return grpc::Status::CANCELLED;
    }
    return script.end;
  }

  grpc::Status ListWorkers(grpc::ServerContext* context, const v1::ListWorkersRequest*,
                           v1::ListWorkersResponse* response) override {
    if (grpc::Status s = Begin(context); !s.ok()) return s;
    std::lock_guard<std::mutex> lock(mu_);
    *response = workers;
    return grpc::Status::OK;
  }

  // Sets the listed worker's state (NOT_FOUND for an unknown one).
  grpc::Status DrainWorker(grpc::ServerContext* context, const v1::DrainWorkerRequest* request,
                           v1::Worker* response) override {
    if (grpc::Status s = Begin(context); !s.ok()) return s;
    std::lock_guard<std::mutex> lock(mu_);
    for (v1::Worker& worker : *workers.mutable_workers()) {
      if (worker.id() != request->worker_id()) continue;
      worker.set_state(request->undo() ? v1::WORKER_STATE_READY : v1::WORKER_STATE_DRAINING);
      *response = worker;
      return grpc::Status::OK;
    }
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "worker '" + request->worker_id() + "' is not registered");
  }

  grpc::Status ListCheckpoints(grpc::ServerContext* context,
                               const v1::ListCheckpointsRequest* request,
                               v1::ListCheckpointsResponse* response) override {
    if (grpc::Status s = Begin(context); !s.ok()) return s;
    std::lock_guard<std::mutex> lock(mu_);
    list_checkpoint_requests_.push_back(*request);
    auto it = checkpoints.find(request->job_id());
    if (it == checkpoints.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "job " + request->job_id() + " not found");
    }
    for (const v1::Checkpoint& checkpoint : it->second) {
      if (request->kind() == v1::CHECKPOINT_KIND_UNSPECIFIED ||
          checkpoint.metadata().kind() == request->kind()) {
        *response->add_checkpoints() = checkpoint;
      }
    }
    return grpc::Status::OK;
  }

  // Selects like the coordinator (by id; by step or the newest, of `kind`,
  // FULL by default), then streams the record and 64 KiB chunks.
  grpc::Status DownloadCheckpoint(
      grpc::ServerContext* context, const v1::DownloadCheckpointRequest* request,
      grpc::ServerWriter<v1::DownloadCheckpointResponse>* writer) override {
    if (grpc::Status s = Begin(context); !s.ok()) return s;
    v1::Checkpoint found;
    std::string bytes;
    std::optional<grpc::Status> broken;
    int64_t end = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      downloads_.push_back(*request);
      auto job = checkpoints.find(request->job_id());
      if (job == checkpoints.end()) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND, "job " + request->job_id() + " not found");
      }
      const v1::CheckpointKind kind = request->kind() == v1::CHECKPOINT_KIND_UNSPECIFIED
                                          ? v1::CHECKPOINT_KIND_FULL
                                          : request->kind();
      const v1::Checkpoint* match = nullptr;
      for (const v1::Checkpoint& checkpoint : job->second) {
        const v1::CheckpointMetadata& m = checkpoint.metadata();
        if (request->has_id() ? checkpoint.id() == request->id()
            : request->has_step()
                ? m.kind() == kind && m.step() == request->step()
                : m.kind() == kind && (match == nullptr || m.step() >= match->metadata().step())) {
          match = &checkpoint;
        }
      }
      if (match == nullptr) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND,
                            "no such checkpoint of job " + request->job_id());
      }
      found = *match;
      bytes = checkpoint_bytes[found.id()];
      end = static_cast<int64_t>(bytes.size());
      if (download_break.has_value()) {
        broken = std::exchange(download_break, std::nullopt);
        end = std::min(end, download_break_at);
      }
    }
    if (request->offset() < 0 || request->offset() > static_cast<int64_t>(bytes.size())) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "offset past the end");
    }
    v1::DownloadCheckpointResponse message;
    *message.mutable_checkpoint() = found;
    if (!writer->Write(message)) return grpc::Status::CANCELLED;
    for (int64_t at = request->offset(); at < end; at += 64 << 10) {
      message.set_data(bytes.substr(at, std::min<int64_t>(64 << 10, end - at)));
      if (!writer->Write(message)) return grpc::Status::CANCELLED;
    }
    return broken.value_or(grpc::Status::OK);
  }

 private:
  grpc::Status Begin(grpc::ServerContext* context) {
    std::lock_guard<std::mutex> lock(mu_);
    ++calls_;
    if (fail_all.has_value()) return *fail_all;
    if (!required_token.empty()) {
      const auto& metadata = context->client_metadata();
      auto it = metadata.find("authorization");
      if (it == metadata.end()) {
        return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing bearer token");
      }
      if (std::string(it->second.data(), it->second.size()) != "Bearer " + required_token) {
        return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid bearer token");
      }
    }
    return grpc::Status::OK;
  }

  mutable std::mutex mu_;
  int calls_ = 0;
  std::vector<v1::SubmitJobRequest> submits_;
  std::vector<v1::ListJobsRequest> list_requests_;
  std::vector<v1::CancelJobRequest> cancels_;
  std::vector<v1::ListCheckpointsRequest> list_checkpoint_requests_;
  std::vector<v1::DownloadCheckpointRequest> downloads_;
};

// What one clmaectl run printed and returned.
struct RunResult {
  int code = -1;
  std::string out;
  std::string err;
};

// Starts the fake on an in-process channel; Run() executes clmaectl
// against it at a fixed "now".
class ClmaectlTest : public ::testing::Test {
 protected:
  static absl::Time Now() { return absl::FromUnixSeconds(1'800'000'000); }

  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.RegisterService(&fake_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }

  void TearDown() override { server_->Shutdown(); }

  // Runs `clmaectl args...` with `env` as the whole environment.
  RunResult Run(const std::vector<std::string>& args, bool tty = false) {
    std::ostringstream out, err;
    Terminal terminal{out, err, tty, /*width=*/0, [] { return Now(); }};
    terminal.err_is_tty = err_tty;
    const EnvLookup env_lookup = [this](const std::string& name) -> std::optional<std::string> {
      auto it = env.find(name);
      if (it == env.end()) return std::nullopt;
      return it->second;
    };
    const StubFactory factory = [this](const ClientOptions& options)
        -> absl::StatusOr<std::unique_ptr<v1::Coordinator::StubInterface>> {
      stub_options.push_back(options);
      return std::unique_ptr<v1::Coordinator::StubInterface>(
          v1::Coordinator::NewStub(server_->InProcessChannel(grpc::ChannelArguments())));
    };
    RunResult result;
    result.code = RunClmaectl(args, env_lookup, factory, terminal);
    result.out = out.str();
    result.err = err.str();
    return result;
  }

  // A job with a spec name, state and submit time `age` before Now().
  static v1::Job MakeJob(const std::string& id, const std::string& name, v1::JobState state,
                         absl::Duration age) {
    v1::Job job;
    job.set_id(id);
    job.mutable_spec()->set_name(name);
    job.set_state(state);
    job.set_attempt(1);
    job.mutable_submit_time()->set_seconds(absl::ToUnixSeconds(Now() - age));
    return job;
  }

  // Progress at `step` of `total` (epoch e of E), with every loss term set.
  static v1::Progress MakeProgress(int64_t step, int64_t total, int epoch, int epochs) {
    v1::Progress p;
    p.set_step(step);
    p.set_total_steps(total);
    p.set_epoch(epoch);
    p.set_total_epochs(epochs);
    p.set_curriculum_factor(0.2);
    p.set_loss_mae(0.4123);
    p.set_loss_masker_recon(0.21);
    p.set_loss_gauss(0.0123);
    p.set_loss_kl(0.0042);
    p.set_loss_div(0.15);
    p.set_lr(2.5e-4);
    p.set_images_per_sec(128);
    return p;
  }

  FakeCoordinator fake_;
  std::map<std::string, std::string> env;
  std::vector<ClientOptions> stub_options;  // what each run asked the factory for
  bool err_tty = false;                     // whether Run()'s stderr is a terminal

 private:
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace clmae::ctl::testing
