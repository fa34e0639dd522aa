#pragma once

// The node agent (clmae-worker): registers the node's capacity with the
// coordinator, keeps the Attach stream up (reconnecting with backoff while
// trainers keep running), starts and stops one clmae-train per assigned rank
// and reports their starts and exits (docs/README.md, "Processes").

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "clmae/v1/worker_control.pb.h"
#include "grpcpp/channel.h"
#include "services/grpc_client.h"
#include "worker/agent/attach_session.h"
#include "worker/agent/checkpoint_fetcher.h"
#include "worker/agent/task_ledger.h"
#include "worker/agent/task_supervisor.h"

namespace clmae {

struct WorkerAgentOptions {
  std::string worker_id;          // stable across restarts (main.cc: the host name)
  std::string advertise_address;  // MASTER_ADDR for ranks placed here (main.cc: the host name)
  ClientOptions coordinator;      // address, worker token, TLS files
  // Capacity: the CUDA devices found through the driver (DiscoverCudaDevices)
  // when `discover_gpus`; with none found (or discovery off), `cpu_slots`
  // CPU ranks. A GPU node offers no CPU slots.
  bool discover_gpus = true;
  int cpu_slots = 1;
  std::string trainer_path;  // the clmae-train executable
  std::string work_dir;      // <work_dir>/<job_id>/attempt-<n>/{job.yaml,rank-<r>.log}
  // Folders jobs may read from (TrainerCommandOptions::data_roots).
  std::vector<std::string> data_roots;
  // Checkpoints kept in <work_dir>/checkpoint-cache/ for restarted attempts
  // (CheckpointFetcherOptions.max_files).
  int checkpoint_cache_files = 4;
  // SIGTERM -> SIGKILL for a Cancel without its own grace, and for the
  // trainers still running when the agent stops.
  absl::Duration cancel_grace = absl::Seconds(30);
  absl::Duration reconnect_backoff_min = absl::Milliseconds(500);
  absl::Duration reconnect_backoff_max = absl::Seconds(30);
  // On shutdown, how long the final exits may take to reach the coordinator.
  absl::Duration shutdown_flush = absl::Seconds(5);
  // Metrics (docs/metrics.md): the agent's families when set (not owned;
  // outlives the agent), and the port base its trainers serve theirs on
  // (+ device index; -1: trainers without metrics).
  AgentMetrics* metrics = nullptr;
  int trainer_metrics_port_base = -1;
};

// Thread-safe. Created running: the connection thread attaches at once, and
// the supervisor thread owns the trainers until Shutdown().
class WorkerAgent {
 public:
  // Checks the options (INVALID_ARGUMENT names the field: an empty worker id,
  // address, trainer path or work dir, cpu_slots < 0, a backoff min <= 0 or
  // above max), finds the devices (INTERNAL when the CUDA driver fails; use
  // discover_gpus = false to run CPU-only), creates the work folder and the
  // channel, and starts.
  static absl::StatusOr<std::unique_ptr<WorkerAgent>> Create(WorkerAgentOptions options);
  // Shutdown().
  ~WorkerAgent();

  WorkerAgent(const WorkerAgent&) = delete;
  WorkerAgent& operator=(const WorkerAgent&) = delete;

  // Tells the coordinator the agent is leaving, stops every trainer
  // (SIGTERM: they checkpoint and exit; SIGKILL after cancel_grace), waits up to
  // shutdown_flush for their exits to be sent, closes the stream and joins
  // the agent's threads. Leaves no trainer process behind. Idempotent.
  void Shutdown();

  // What the agent registers (without running_tasks).
  const v1::Register& registration() const { return registration_; }

 private:
  WorkerAgent(WorkerAgentOptions options, v1::Register registration,
              std::shared_ptr<grpc::Channel> channel);
  void ConnectLoop();

  const WorkerAgentOptions options_;
  const v1::Register registration_;
  const std::shared_ptr<grpc::Channel> channel_;
  TaskLedger ledger_;
  std::unique_ptr<CheckpointFetcher> fetcher_;  // outlives the supervisor
  std::unique_ptr<TaskSupervisor> supervisor_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<AttachSession> session_ ABSL_GUARDED_BY(mu_);

  absl::Mutex shutdown_mu_;  // serialises Shutdown()
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
  std::thread connect_thread_;
};

}  // namespace clmae
