#pragma once

// How the node agent starts one rank: the files it prepares under its work
// folder and the command line and environment of `clmae-train` (the
// agent <-> trainer contract, documented on TrainerCommand).

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "clmae/v1/worker_control.pb.h"
#include "services/grpc_client.h"
#include "worker/process/subprocess.h"

namespace clmae {

struct TrainerCommandOptions {
  // The clmae-train executable.
  std::string trainer_path;
  // Per-attempt files live under <work_dir>/<job_id>/attempt-<n>/.
  std::string work_dir;
  // The coordinator the trainer reports to (its address, token and TLS files
  // are passed on; see TrainerCommand).
  ClientOptions coordinator;
  // The node's checkpoint cache (CheckpointFetcher), passed to the trainer
  // as CLMAE_CHECKPOINT_CACHE when set.
  std::string checkpoint_cache_dir;
  // When >= 0, the trainer serves metrics on this + LOCAL_RANK (its device
  // index; one rank per device, so the port is free).
  int metrics_port_base = -1;
  // The folders a job may read on this node: data.path, eval.path and
  // train.init_from must lie under one of them once symlinks are resolved
  // (ConfineJobPaths). Relative entries are taken from the agent's working
  // directory.
  std::vector<std::string> data_roots;
};

// Where one rank's files go.
struct TaskPaths {
  std::string attempt_dir;  // <work_dir>/<job_id>/attempt-<n>
  std::string spec_path;    // <attempt_dir>/job.yaml
  std::string log_path;     // <attempt_dir>/rank-<r>.log
};

// OK when `task` can be started here: a job id usable as one folder name
// (1..128 characters of [A-Za-z0-9._-], not "." or ".."), attempt >= 1,
// 0 <= rank < world_size, device_kind "cuda" or "cpu", device_index >= 0,
// master_port in 1..65535 and a master address. INVALID_ARGUMENT names the
// field otherwise.
absl::Status ValidateAssignment(const v1::TaskAssignment& task);

TaskPaths PathsFor(const TrainerCommandOptions& options, const v1::TaskAssignment& task);

// The trainer's command (the contract with clmae-train):
//   argv: <trainer_path> --config <spec_path> [--resume <resume_path>]
//         --device <"cpu" | "cuda:<device_index>">
//         --coordinator <coordinator.address> --job_id <job_id>
//         --attempt <attempt>
//         [--metrics_port <metrics_port_base + device_index>]
//         where `resume_path` is the local copy of the assignment's
//         resume_checkpoint (CheckpointFetcher::Ensure); empty: no --resume,
//         the trainer starts from scratch.
//   env (added to the agent's): RANK, WORLD_SIZE, LOCAL_RANK (= device_index),
//         MASTER_ADDR, MASTER_PORT, CLMAE_TOKEN (the agent's token), and
//         CLMAE_TLS_CA, CLMAE_TLS_CERT, CLMAE_TLS_KEY, CLMAE_TLS_SERVER_NAME
//         for those of the coordinator's TLS settings that are set, and
//         CLMAE_CHECKPOINT_CACHE when checkpoint_cache_dir is set;
//   output: stdout and stderr appended to log_path.
// The trainer leads its own process group and is killed if the thread that
// spawns it dies. `task` must have passed ValidateAssignment.
SpawnOptions TrainerCommand(const TrainerCommandOptions& options, const v1::TaskAssignment& task,
                            const std::string& resume_path = "");

// The job folder of `task`: <work_dir>/<job_id>, absolute.
std::string JobFolder(const TrainerCommandOptions& options, const v1::TaskAssignment& task);

// The spec this node runs `task` with, its paths confined:
// - output.dir is joined to the job folder (default "output"), so every
//   output lands in <work_dir>/<job_id>/<output.dir>; it must be relative
//   with no ".." component (the coordinator checks this on submit too);
// - data.path, eval.path and train.init_from, where set, must lie under one
//   of options.data_roots after symlinks are resolved (a link that points
//   out of a root is refused).
// PERMISSION_DENIED names the field, the path and the allowed roots.
absl::StatusOr<v1::JobSpec> ConfineJobPaths(const TrainerCommandOptions& options,
                                            const v1::TaskAssignment& task);

// Creates the attempt folder and writes `spec` (ConfineJobPaths) there as
// YAML (JobSpecToYaml), replacing an older file atomically. Errors name the
// path.
absl::Status PrepareTaskFiles(const TaskPaths& paths, const v1::JobSpec& spec);

// Whether `port` can be bound on this node the way rank 0's rendezvous
// store (c10d TCPStore) binds it: a TCP socket with SO_REUSEADDR on
// INADDR_ANY. The socket is closed before this returns, so the port is free
// again for the trainer. False when the port is in use (EADDRINUSE: another
// process listens there); INVALID_ARGUMENT for a port outside 1..65535;
// any other failure to make or bind the socket as ErrnoStatus. Thread-safe.
absl::StatusOr<bool> TcpPortBindable(int port);

// The last `max_lines` lines of the file at `path` (at most `max_bytes` of
// its end), joined with '\n'; "" when it cannot be read.
std::string LogTail(const std::string& path, int max_lines = 20, size_t max_bytes = 4096);

}  // namespace clmae
