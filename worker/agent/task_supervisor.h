#pragma once

// The agent's trainer processes: starts one per assigned rank, watches them
// all from one long-lived thread (which is also the thread that spawns them,
// so their parent-death signal fires only when the agent dies), stops them
// on cancel with SIGTERM then SIGKILL after a grace period, and reports each
// start and exit to a TaskLedger.

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "clmae/v1/worker_control.pb.h"
#include "worker/agent/agent_metrics.h"
#include "worker/agent/checkpoint_fetcher.h"
#include "worker/agent/task_ledger.h"
#include "worker/agent/trainer_command.h"
#include "worker/process/subprocess.h"

namespace clmae {

struct TaskSupervisorOptions {
  TrainerCommandOptions command;
  // This node's worker id, for messages about the node ("... on worker <id>").
  std::string worker_id;
  // Receives every start and exit; must outlive the supervisor.
  TaskLedger* ledger = nullptr;
  // Provides the checkpoint an assignment resumes from (resume_checkpoint);
  // must outlive the supervisor. Without one, such assignments cannot start.
  CheckpointFetcher* fetcher = nullptr;
  // Hears each rank's start and exit too when set; must outlive the
  // supervisor.
  AgentMetrics* metrics = nullptr;
  // The grace used by the destructor when StopAll() was not called.
  absl::Duration default_grace = absl::Seconds(30);
};

// Thread-safe: Start/Cancel/StopAll may be called from any thread; they
// hand the work to the supervisor thread. A trainer that crashes is
// reported like any other exit; nothing about it stops the supervisor.
class TaskSupervisor {
 public:
  // Starts the supervisor thread. INVALID_ARGUMENT without a ledger or a
  // trainer path; INTERNAL when its wake-up descriptor cannot be made.
  static absl::StatusOr<std::unique_ptr<TaskSupervisor>> Create(TaskSupervisorOptions options);
  // StopAll(default_grace) unless already stopped.
  ~TaskSupervisor();

  TaskSupervisor(const TaskSupervisor&) = delete;
  TaskSupervisor& operator=(const TaskSupervisor&) = delete;

  // Starts the rank (asynchronously): validates the assignment, writes the
  // spec, ensures the checkpoint it resumes from is on this node (on a
  // thread of the task's own, so other tasks are not held up), spawns the
  // trainer and reports RUNNING; a rank that cannot start is reported
  // EXITED with exit code 127 and the reason as its message ("cannot fetch
  // checkpoint <id>: ..." when the checkpoint could not be had), or with
  // kTaskExitCheckpointCorrupt (65, "checkpoint <id> is corrupt on the
  // coordinator ...") when the coordinator refused the checkpoint
  // (IsCheckpointRefused: it failed verification there, or is quarantined).
  // Rank 0 hosts the rendezvous at master_port: when that port cannot be
  // bound on this node (TcpPortBindable: another process listens there),
  // the trainer is not started and the rank is reported EXITED with
  // kTaskExitRendezvousBusy (69, "rendezvous port <port> is in use on worker
  // <worker_id>"), checked before a fetch and again right before the spawn.
  // An assignment for a task already running or starting is ignored.
  void Start(v1::TaskAssignment assignment);
  // Stops one rank (asynchronously): SIGTERM to its process group, SIGKILL
  // after `grace`; the exit is reported as usual. A rank still waiting for
  // its checkpoint is reported EXITED (127) at once and never spawned.
  // Unknown tasks are ignored.
  void Cancel(const TaskId& task, absl::Duration grace, std::string reason);
  // Stops every trainer the same way, waits until all are reaped and
  // reported, and ends the supervisor thread; later Start()s are reported
  // EXITED (127, "the agent is shutting down"). Idempotent.
  void StopAll(absl::Duration grace);

 private:
  // The exit code of a rank that could not start, for a reason no other
  // code names (as a shell reports a command it could not run).
  static constexpr int kNotStartedExit = 127;

  struct Command {
    enum class Kind { kStart, kCancel, kStopAll, kFetched } kind;
    v1::TaskAssignment assignment;                            // kStart, kFetched
    TaskId task;                                              // kCancel
    absl::Duration grace;                                     // kCancel, kStopAll
    std::string reason;                                       // kCancel
    absl::StatusOr<std::string> resume_path = std::string();  // kFetched
  };
  struct Running {
    v1::Task task;
    std::string log_path;
    std::unique_ptr<Subprocess> process;
    absl::Time kill_at = absl::InfiniteFuture();  // SIGKILL then
    bool killed = false;
  };
  // A rank whose checkpoint is being fetched (by `thread`).
  struct Fetching {
    v1::Task task;
    std::thread thread;
    bool cancelled = false;  // its exit was reported already; never spawn it
  };

  TaskSupervisor(TaskSupervisorOptions options, int wake_fd);
  void Post(Command command);
  void Loop();
  void StartTask(const v1::TaskAssignment& assignment);
  // The checkpoint of a fetching rank is here (or could not be had).
  void Fetched(const v1::TaskAssignment& assignment, const absl::StatusOr<std::string>& path);
  // Reports the rank EXITED with `exit_code` and `why`, as one that could
  // not start.
  void NotStarted(const v1::Task& task, const std::string& why, int exit_code = kNotStartedExit);
  // True when `assignment` is rank 0 and its rendezvous port is taken on
  // this node; it has then been reported EXITED (kTaskExitRendezvousBusy).
  bool RendezvousPortBusy(const v1::TaskAssignment& assignment);
  // Spawns the trainer (`resume_path` empty: from scratch).
  void Spawn(const v1::TaskAssignment& assignment, const std::string& resume_path);
  void Stop(Running& running, absl::Duration grace, const std::string& reason);
  void ReapExited();
  void WaitForEvents();

  const TaskSupervisorOptions options_;
  const int wake_fd_;  // eventfd: commands are queued

  absl::Mutex mu_;
  std::vector<Command> commands_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;  // the loop has ended

  // Supervisor thread only.
  std::map<TaskId, Running> running_;
  std::map<TaskId, Fetching> fetching_;
  bool stopping_ = false;

  std::thread thread_;
};

}  // namespace clmae
