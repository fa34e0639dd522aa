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
#include "worker/agent/task_ledger.h"
#include "worker/agent/trainer_command.h"
#include "worker/process/subprocess.h"

namespace clmae {

struct TaskSupervisorOptions {
  TrainerCommandOptions command;
  // Receives every start and exit; must outlive the supervisor.
  TaskLedger* ledger = nullptr;
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
  // spec, spawns the trainer and reports RUNNING; a rank that cannot start
  // is reported EXITED with exit code 127 and the reason as its message. An
  // assignment for a task already running is ignored.
  void Start(v1::TaskAssignment assignment);
  // Stops one rank (asynchronously): SIGTERM to its process group, SIGKILL
  // after `grace`; the exit is reported as usual. Unknown tasks are ignored.
  void Cancel(const TaskId& task, absl::Duration grace, std::string reason);
  // Stops every trainer the same way, waits until all are reaped and
  // reported, and ends the supervisor thread; later Start()s are reported
  // EXITED (127, "the agent is shutting down"). Idempotent.
  void StopAll(absl::Duration grace);

 private:
  struct Command {
    enum class Kind { kStart, kCancel, kStopAll } kind;
    v1::TaskAssignment assignment;  // kStart
    TaskId task;                    // kCancel
    absl::Duration grace;           // kCancel, kStopAll
    std::string reason;             // kCancel
  };
  struct Running {
    v1::Task task;
    std::string log_path;
    std::unique_ptr<Subprocess> process;
    absl::Time kill_at = absl::InfiniteFuture();  // SIGKILL then
    bool killed = false;
  };

  TaskSupervisor(TaskSupervisorOptions options, int wake_fd);
  void Post(Command command);
  void Loop();
  void StartTask(const v1::TaskAssignment& assignment);
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
  bool stopping_ = false;

  std::thread thread_;
};

}  // namespace clmae
