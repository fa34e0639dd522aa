#include "worker/agent/worker_agent.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "worker/agent/agent_log.h"
#include "worker/agent/backoff.h"
#include "worker/agent/device_discovery.h"

namespace clmae {
namespace {

// How long a closing stream waits for the coordinator to end it.
constexpr absl::Duration kCloseLinger = absl::Seconds(2);

absl::Status Validate(const WorkerAgentOptions& o) {
  if (o.worker_id.empty()) return absl::InvalidArgumentError("worker_id: empty");
  if (o.advertise_address.empty()) return absl::InvalidArgumentError("advertise_address: empty");
  if (o.trainer_path.empty()) return absl::InvalidArgumentError("trainer: empty path");
  if (o.work_dir.empty()) return absl::InvalidArgumentError("work_dir: empty");
  for (const std::string& root : o.data_roots) {
    // An empty entry would resolve to the working directory and let jobs
    // read all of it.
    if (root.empty()) {
      return absl::InvalidArgumentError(
          "data_roots: an empty entry (a stray comma?); give folders, comma-separated");
    }
  }
  if (o.cpu_slots < 0) {
    return absl::InvalidArgumentError(absl::StrCat("cpu_slots: ", o.cpu_slots, " is negative"));
  }
  if (o.checkpoint_cache_files < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint_cache_files: ", o.checkpoint_cache_files, " is below 1"));
  }
  if (o.reconnect_backoff_min <= absl::ZeroDuration() ||
      o.reconnect_backoff_max < o.reconnect_backoff_min) {
    return absl::InvalidArgumentError(absl::StrCat(
        "reconnect backoff: min ", absl::FormatDuration(o.reconnect_backoff_min), ", max ",
        absl::FormatDuration(o.reconnect_backoff_max), " (need 0 < min <= max)"));
  }
  if (o.cancel_grace < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("cancel_grace: negative");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<WorkerAgent>> WorkerAgent::Create(WorkerAgentOptions options) {
  if (absl::Status valid = Validate(options); !valid.ok()) return valid;
  v1::Register registration;
  registration.set_worker_id(options.worker_id);
  registration.set_address(options.advertise_address);
  if (options.discover_gpus) {
    absl::StatusOr<std::vector<v1::Device>> devices = DiscoverCudaDevices();
    if (!devices.ok()) {
      return absl::Status(devices.status().code(),
                          absl::StrCat(devices.status().message(),
                                       " (run with --gpus none to offer CPU slots instead)"));
    }
    for (v1::Device& d : *devices) *registration.add_devices() = std::move(d);
  }
  if (registration.devices_size() == 0) registration.set_cpu_slots(options.cpu_slots);
  if (registration.devices_size() == 0 && options.cpu_slots == 0) {
    return absl::InvalidArgumentError("no CUDA device found and cpu_slots is 0: nothing to offer");
  }
  std::error_code ec;
  std::filesystem::create_directories(options.work_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("work_dir: cannot create ", options.work_dir, ": ", ec.message()));
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeClientChannel(options.coordinator);
  if (!channel.ok()) return channel.status();

  std::unique_ptr<WorkerAgent> agent(
      new WorkerAgent(std::move(options), std::move(registration), *std::move(channel)));
  CheckpointFetcherOptions fetcher;
  fetcher.cache_dir = CheckpointCacheDir(agent->options_.work_dir);
  fetcher.max_files = agent->options_.checkpoint_cache_files;
  fetcher.client = agent->options_.coordinator;
  fetcher.channel = agent->channel_;
  absl::StatusOr<std::unique_ptr<CheckpointFetcher>> cache =
      CheckpointFetcher::Create(std::move(fetcher));
  if (!cache.ok()) return cache.status();
  agent->fetcher_ = *std::move(cache);
  TaskSupervisorOptions supervisor;
  supervisor.worker_id = agent->options_.worker_id;
  supervisor.command.trainer_path = agent->options_.trainer_path;
  supervisor.command.work_dir = agent->options_.work_dir;
  supervisor.command.data_roots = agent->options_.data_roots;
  supervisor.command.coordinator = agent->options_.coordinator;
  supervisor.command.checkpoint_cache_dir = agent->fetcher_->cache_dir();
  supervisor.ledger = &agent->ledger_;
  supervisor.fetcher = agent->fetcher_.get();
  supervisor.default_grace = agent->options_.cancel_grace;
  supervisor.metrics = agent->options_.metrics;
  supervisor.command.metrics_port_base = agent->options_.trainer_metrics_port_base;
  if (AgentMetrics* metrics = agent->options_.metrics) {
    metrics->SetCapacity(agent->registration_.devices_size(), agent->registration_.cpu_slots());
    WorkerAgent* self = agent.get();
    metrics->SetConnectedProbe([self] {
      absl::MutexLock lock(&self->mu_);
      return self->session_ != nullptr && self->session_->registered();
    });
  }
  absl::StatusOr<std::unique_ptr<TaskSupervisor>> made = TaskSupervisor::Create(supervisor);
  if (!made.ok()) return made.status();
  agent->supervisor_ = *std::move(made);

  std::string capacity;
  for (const v1::Device& d : agent->registration_.devices()) {
    absl::StrAppend(&capacity, capacity.empty() ? "" : ", ", "cuda:", d.index(), " ", d.name(),
                    " (", d.memory_bytes() >> 20, " MiB)");
  }
  if (capacity.empty()) capacity = absl::StrCat(agent->registration_.cpu_slots(), " CPU slot(s)");
  AgentLog(absl::StrCat("worker ", agent->options_.worker_id, " at ",
                        agent->options_.advertise_address, " offers ", capacity, "; coordinator ",
                        agent->options_.coordinator.address, "; trainer ",
                        agent->options_.trainer_path));
  agent->connect_thread_ = std::thread([a = agent.get()] { a->ConnectLoop(); });
  return agent;
}

WorkerAgent::WorkerAgent(WorkerAgentOptions options, v1::Register registration,
                         std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      registration_(std::move(registration)),
      channel_(std::move(channel)),
      ledger_(absl::Seconds(15)) {}

WorkerAgent::~WorkerAgent() {
  if (options_.metrics != nullptr) options_.metrics->SetConnectedProbe(nullptr);
  Shutdown();
}

void WorkerAgent::ConnectLoop() {
  Backoff backoff(options_.reconnect_backoff_min, options_.reconnect_backoff_max);
  for (;;) {
    AttachSessionOptions session_options;
    session_options.registration = registration_;
    session_options.client = options_.coordinator;
    session_options.channel = channel_;
    session_options.ledger = &ledger_;
    session_options.supervisor = supervisor_.get();
    session_options.default_cancel_grace = options_.cancel_grace;
    auto session = std::make_shared<AttachSession>(std::move(session_options));
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      session_ = session;
    }
    // A fresh attempt connects now, not at the end of the channel's own
    // (up to two-minute) reconnection backoff.
    grpc::experimental::ChannelResetConnectionBackoff(channel_.get());
    const absl::Status ended = session->Run();
    if (session->registered()) backoff.Reset();
    const absl::Duration delay = backoff.Next();
    absl::MutexLock lock(&mu_);
    session_ = nullptr;
    if (stopping_) return;
    AgentLog(absl::StrCat("stream to ", options_.coordinator.address, " ended: ", ended.ToString(),
                          "; ", ledger_.RunningCount(),
                          " trainer(s) keep running; reconnecting in ",
                          absl::FormatDuration(absl::Trunc(delay, absl::Milliseconds(1)))));
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), delay);
    if (stopping_) return;
  }
}

void WorkerAgent::Shutdown() {
  absl::MutexLock shutdown_lock(&shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  if (supervisor_ == nullptr) return;  // Create() failed before starting anything
  AgentLog(absl::StrCat("stopping ", ledger_.RunningCount(), " trainer(s)"));
  std::shared_ptr<AttachSession> leaving;
  {
    absl::MutexLock lock(&mu_);
    leaving = session_;
  }
  // Nothing new is placed here, and the trainers' exits on this SIGTERM (a
  // checkpoint, then 75) requeue their jobs as preemptions: said first.
  if (leaving != nullptr && !leaving->Leave("the agent is shutting down", absl::Seconds(2))) {
    AgentLog("could not tell the coordinator this agent is leaving");
  }
  supervisor_->StopAll(options_.cancel_grace);
  if (!ledger_.WaitDrained(absl::Now() + options_.shutdown_flush)) {
    AgentLog("some exits could not be reported to the coordinator before stopping");
  }
  std::shared_ptr<AttachSession> session;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    session = session_;
  }
  if (session != nullptr) session->Close(kCloseLinger);
  if (connect_thread_.joinable()) connect_thread_.join();
  AgentLog("stopped");
}

}  // namespace clmae
