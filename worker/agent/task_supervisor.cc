#include "worker/agent/task_supervisor.h"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/exit_codes.h"
#include "worker/agent/agent_log.h"

namespace clmae {
namespace {

// Without a pidfd for some child, exits are polled this often.
constexpr absl::Duration kPollWithoutPidfd = absl::Milliseconds(100);
// The longest the loop sleeps when nothing is due (a safety net only).
constexpr absl::Duration kMaxSleep = absl::Seconds(1);

v1::TaskStatus ExitedStatus(const v1::Task& task, int exit_code, int signal, std::string message) {
  v1::TaskStatus status;
  status.set_job_id(task.job_id());
  status.set_attempt(task.attempt());
  status.set_rank(task.rank());
  status.set_state(v1::TaskStatus::EXITED);
  status.set_exit_code(exit_code);
  status.set_signal(signal);
  status.set_message(std::move(message));
  return status;
}

v1::Task TaskOf(const v1::TaskAssignment& a) {
  v1::Task task;
  task.set_job_id(a.job_id());
  task.set_attempt(a.attempt());
  task.set_rank(a.rank());
  task.set_device_index(a.device_index());
  task.set_device_kind(a.device_kind());
  return task;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TaskSupervisor>> TaskSupervisor::Create(
    TaskSupervisorOptions options) {
  if (options.ledger == nullptr) return absl::InvalidArgumentError("TaskSupervisor: no ledger");
  if (options.command.trainer_path.empty()) {
    return absl::InvalidArgumentError("trainer path: empty");
  }
  const int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return absl::ErrnoToStatus(errno, "TaskSupervisor: eventfd");
  std::unique_ptr<TaskSupervisor> supervisor(new TaskSupervisor(std::move(options), fd));
  supervisor->thread_ = std::thread([s = supervisor.get()] { s->Loop(); });
  return supervisor;
}

TaskSupervisor::TaskSupervisor(TaskSupervisorOptions options, int wake_fd)
    : options_(std::move(options)), wake_fd_(wake_fd) {}

TaskSupervisor::~TaskSupervisor() {
  StopAll(options_.default_grace);
  close(wake_fd_);
}

void TaskSupervisor::Start(v1::TaskAssignment assignment) {
  if (options_.metrics != nullptr) options_.metrics->Assigned(TaskOf(assignment));
  Command command{Command::Kind::kStart, std::move(assignment), {}, {}, {}};
  Post(std::move(command));
}

void TaskSupervisor::Cancel(const TaskId& task, absl::Duration grace, std::string reason) {
  Post(Command{Command::Kind::kCancel, {}, task, grace, std::move(reason)});
}

void TaskSupervisor::StopAll(absl::Duration grace) {
  Post(Command{Command::Kind::kStopAll, {}, {}, grace, {}});
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&finished_));
  }
  if (thread_.joinable()) thread_.join();
}

void TaskSupervisor::Post(Command command) {
  {
    absl::MutexLock lock(&mu_);
    if (!finished_) {
      commands_.push_back(std::move(command));
      const uint64_t one = 1;
      [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
      return;
    }
  }
  // The loop is gone: nothing runs any more, so only a start needs an answer.
  if (command.kind == Command::Kind::kStart) {
    const v1::Task task = TaskOf(command.assignment);
    AgentLog(absl::StrCat(TaskName(IdOf(task)), ": not started, the agent is shutting down"));
    options_.ledger->Exited(ExitedStatus(task, kNotStartedExit, 0, "the agent is shutting down"));
    if (options_.metrics != nullptr) options_.metrics->NotSpawned(task, /*reported_exit=*/true);
  }
}

void TaskSupervisor::Loop() {
  for (;;) {
    std::vector<Command> commands;
    {
      absl::MutexLock lock(&mu_);
      commands.swap(commands_);
    }
    for (Command& c : commands) {
      switch (c.kind) {
        case Command::Kind::kStart:
          StartTask(c.assignment);
          break;
        case Command::Kind::kCancel: {
          auto it = running_.find(c.task);
          auto fetching = fetching_.find(c.task);
          if (it != running_.end()) {
            Stop(it->second, c.grace, c.reason);
          } else if (fetching != fetching_.end() && !fetching->second.cancelled) {
            // Its fetch goes on for the cache; the trainer is never spawned.
            fetching->second.cancelled = true;
            NotStarted(fetching->second.task,
                       absl::StrCat("cancelled (", c.reason, ") while fetching its checkpoint"));
          } else {
            AgentLog(absl::StrCat("cancel of ", TaskName(c.task), " ignored: not running here"));
          }
          break;
        }
        case Command::Kind::kStopAll:
          if (!stopping_) {
            stopping_ = true;
            for (auto& [id, running] : running_) Stop(running, c.grace, "the agent is stopping");
            for (auto& [id, fetching] : fetching_) {
              if (fetching.cancelled) continue;
              fetching.cancelled = true;
              NotStarted(fetching.task, "the agent is shutting down");
            }
            if (options_.fetcher != nullptr) options_.fetcher->Shutdown();
          }
          break;
        case Command::Kind::kFetched:
          Fetched(c.assignment, c.resume_path);
          break;
      }
    }
    ReapExited();
    const absl::Time now = absl::Now();
    for (auto& [id, running] : running_) {
      if (!running.killed && now >= running.kill_at) {
        AgentLog(absl::StrCat(TaskName(id), ": still running after the grace period; SIGKILL"));
        running.process->Signal(SIGKILL).IgnoreError();  // reaped already: nothing to kill
        running.killed = true;
      }
    }
    if (stopping_ && running_.empty() && fetching_.empty()) {
      absl::MutexLock lock(&mu_);
      if (commands_.empty()) {
        finished_ = true;
        return;
      }
      continue;
    }
    WaitForEvents();
  }
}

void TaskSupervisor::StartTask(const v1::TaskAssignment& assignment) {
  const v1::Task task = TaskOf(assignment);
  const TaskId id = IdOf(task);
  if (stopping_) return NotStarted(task, "the agent is shutting down");
  if (running_.contains(id) || fetching_.contains(id)) {
    AgentLog(absl::StrCat(TaskName(id), ": assignment ignored: already running"));
    if (options_.metrics != nullptr) options_.metrics->NotSpawned(task, /*reported_exit=*/false);
    return;
  }
  if (absl::Status valid = ValidateAssignment(assignment); !valid.ok()) {
    return NotStarted(task, absl::StrCat("invalid assignment: ", valid.message()));
  }
  if (RendezvousPortBusy(assignment)) return;
  const TaskPaths paths = PathsFor(options_.command, assignment);
  absl::StatusOr<v1::JobSpec> spec = ConfineJobPaths(options_.command, assignment);
  if (!spec.ok()) {
    // The job asks for something this node refuses; another attempt would
    // be refused the same way, so the coordinator fails the job.
    return NotStarted(task, std::string(spec.status().message()), kTaskExitPathRefused);
  }
  if (absl::Status prepared = PrepareTaskFiles(paths, *spec); !prepared.ok()) {
    return NotStarted(task, std::string(prepared.message()));
  }
  if (assignment.resume_checkpoint().empty()) return Spawn(assignment, "");
  if (options_.fetcher == nullptr) {
    return NotStarted(task, absl::StrCat("cannot fetch checkpoint ", assignment.resume_checkpoint(),
                                         ": this agent has no checkpoint cache"));
  }
  // A fetch may take minutes: on a thread of its own, which hands the
  // spawn back to this one (the trainer's parent-death signal follows the
  // thread that spawns it).
  Fetching& fetching = fetching_[id];
  fetching.task = task;
  // Reported running from the start of the fetch: the coordinator must hear
  // from a placed rank within its lease however long the fetch takes (its
  // hang timeout still bounds it), and a re-register lists it.
  options_.ledger->Started(task);
  fetching.thread = std::thread([this, assignment] {
    absl::StatusOr<std::string> path =
        options_.fetcher->Ensure(assignment.job_id(), assignment.resume_checkpoint(),
                                 assignment.resume_sha256(), assignment.resume_size_bytes());
    Post(Command{Command::Kind::kFetched, assignment, {}, {}, {}, std::move(path)});
  });
}

void TaskSupervisor::Fetched(const v1::TaskAssignment& assignment,
                             const absl::StatusOr<std::string>& path) {
  const v1::Task task = TaskOf(assignment);
  auto it = fetching_.find(IdOf(task));
  if (it == fetching_.end()) return;
  it->second.thread.join();  // it has posted this; it ends now
  const bool cancelled = it->second.cancelled;
  fetching_.erase(it);
  if (cancelled) return;  // reported when it was cancelled
  if (IsCheckpointRefused(path.status())) {
    // The coordinator has quarantined it; the next attempt resumes from
    // another one, without spending a restart.
    return NotStarted(task,
                      absl::StrCat("checkpoint ", assignment.resume_checkpoint(),
                                   " is corrupt on the coordinator and cannot be resumed from: ",
                                   path.status().message()),
                      kTaskExitCheckpointCorrupt);
  }
  if (!path.ok()) {
    return NotStarted(task, absl::StrCat("cannot fetch checkpoint ", assignment.resume_checkpoint(),
                                         ": ", path.status().message()));
  }
  // The fetch may have taken minutes: the port is checked again.
  if (RendezvousPortBusy(assignment)) return;
  Spawn(assignment, *path);
}

bool TaskSupervisor::RendezvousPortBusy(const v1::TaskAssignment& assignment) {
  if (assignment.rank() != 0) return false;
  const absl::StatusOr<bool> bindable = TcpPortBindable(assignment.master_port());
  if (!bindable.ok()) {
    // Not known to be taken: the trainer tries, and reports its own failure.
    AgentLog(absl::StrCat(
        TaskName(IdOf(TaskOf(assignment))),
        ": cannot check the rendezvous port, starting anyway: ", bindable.status().message()));
    return false;
  }
  if (*bindable) return false;
  // The trainer would only fail to host the store there, at the cost of a
  // restart; this is the node's problem, and the coordinator places the
  // attempt elsewhere without spending one.
  NotStarted(TaskOf(assignment),
             absl::StrCat("rendezvous port ", assignment.master_port(), " is in use on worker ",
                          options_.worker_id),
             kTaskExitRendezvousBusy);
  return true;
}

void TaskSupervisor::NotStarted(const v1::Task& task, const std::string& why, int exit_code) {
  AgentLog(absl::StrCat(TaskName(IdOf(task)), ": cannot start (exit ", exit_code, "): ", why));
  options_.ledger->Exited(ExitedStatus(task, exit_code, 0, why));
  if (options_.metrics != nullptr) options_.metrics->NotSpawned(task, /*reported_exit=*/true);
}

void TaskSupervisor::Spawn(const v1::TaskAssignment& assignment, const std::string& resume_path) {
  const v1::Task task = TaskOf(assignment);
  const TaskId id = IdOf(task);
  const TaskPaths paths = PathsFor(options_.command, assignment);
  absl::StatusOr<std::unique_ptr<Subprocess>> process =
      Subprocess::Spawn(TrainerCommand(options_.command, assignment, resume_path));
  if (!process.ok()) return NotStarted(task, std::string(process.status().message()));
  AgentLog(absl::StrCat(TaskName(id), ": started pid ", (*process)->pid(), " on ",
                        task.device_kind(), ":", task.device_index(),
                        resume_path.empty() ? "" : absl::StrCat(", resuming from ", resume_path),
                        ", log ", paths.log_path));
  running_.emplace(id, Running{task, paths.log_path, *std::move(process)});
  options_.ledger->Started(task);
  if (options_.metrics != nullptr) options_.metrics->Spawned(task);
}

void TaskSupervisor::Stop(Running& running, absl::Duration grace, const std::string& reason) {
  AgentLog(absl::StrCat(TaskName(IdOf(running.task)), ": stopping (", reason, "), SIGTERM with ",
                        absl::FormatDuration(grace), " grace"));
  running.process->Signal(SIGTERM).IgnoreError();  // already ended: reaped below
  running.kill_at = std::min(running.kill_at, absl::Now() + grace);
}

void TaskSupervisor::ReapExited() {
  for (auto it = running_.begin(); it != running_.end();) {
    std::optional<ExitStatus> exit = it->second.process->TryWait();
    if (!exit.has_value()) {
      ++it;
      continue;
    }
    const v1::Task& task = it->second.task;
    AgentLog(absl::StrCat(TaskName(it->first), ": ", exit->ToString()));
    std::string message;
    if (!exit->success()) {
      message = absl::StrCat(exit->ToString(), "; last lines of ", it->second.log_path, ":\n",
                             LogTail(it->second.log_path));
    }
    options_.ledger->Exited(ExitedStatus(task, exit->exited ? exit->code : 0,
                                         exit->exited ? 0 : exit->signal, std::move(message)));
    if (options_.metrics != nullptr) {
      // Stopped by a cancel (or the agent stopping): cancelled, whatever
      // the trainer's code.
      options_.metrics->Exited(task, exit->success() ? AgentMetrics::Outcome::kSuccess
                                     : it->second.kill_at != absl::InfiniteFuture()
                                         ? AgentMetrics::Outcome::kCancelled
                                         : AgentMetrics::Outcome::kFailure);
    }
    it = running_.erase(it);
  }
}

void TaskSupervisor::WaitForEvents() {
  std::vector<pollfd> fds;
  fds.push_back({wake_fd_, POLLIN, 0});
  absl::Duration timeout = kMaxSleep;
  const absl::Time now = absl::Now();
  for (const auto& [id, running] : running_) {
    if (running.process->exit_fd() >= 0) {
      fds.push_back({running.process->exit_fd(), POLLIN, 0});
    } else {
      timeout = std::min(timeout, kPollWithoutPidfd);
    }
    if (!running.killed) timeout = std::min(timeout, running.kill_at - now);
  }
  timeout = std::max(timeout, absl::ZeroDuration());
  const int ms = static_cast<int>(absl::ToInt64Milliseconds(timeout + absl::Microseconds(999)));
  if (poll(fds.data(), fds.size(), ms) > 0 && (fds[0].revents & POLLIN) != 0) {
    uint64_t count = 0;
    [[maybe_unused]] ssize_t n = read(wake_fd_, &count, sizeof(count));
  }
}

}  // namespace clmae
