#include "worker/process/subprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/process/child_exec.h"
#include "worker/process/exec_plan.h"

extern char** environ;

namespace clmae {
namespace {

using process_internal::ChildError;
using process_internal::ChildSetup;
using process_internal::ExecPlan;
using process_internal::kStageChdir;
using process_internal::kStageDup;

void CloseFd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

// Moves `fd` to a number above 2 (keeping O_CLOEXEC), so that the child's
// dup2() onto 1 and 2 never clobbers a descriptor it still needs, even when
// the parent runs with stdout or stderr closed.
int AboveStdio(int fd) {
  if (fd < 0 || fd > 2) return fd;
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  close(fd);
  return moved;
}

absl::Status MakePipe(int fds[2], const char* what) {
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("creating the ", what, " pipe"));
  }
  fds[0] = AboveStdio(fds[0]);
  fds[1] = AboveStdio(fds[1]);
  if (fds[0] < 0 || fds[1] < 0) {
    int err = errno;
    CloseFd(fds[0]);
    CloseFd(fds[1]);
    return absl::ErrnoToStatus(err, absl::StrCat("creating the ", what, " pipe"));
  }
  return absl::OkStatus();
}

absl::Status ChildErrorStatus(const ChildError& report, const SpawnOptions& options,
                              const ExecPlan& plan) {
  switch (report.stage) {
    case kStageChdir:
      return absl::ErrnoToStatus(report.err,
                                 absl::StrCat("cannot start \"", plan.argv[0], "\": working_dir \"",
                                              options.working_dir, "\""));
    case kStageDup:
      return absl::ErrnoToStatus(
          report.err, absl::StrCat("cannot start \"", plan.argv[0], "\": redirecting its output"));
    default:
      if (report.err == ENOEXEC) {  // absl would call it UNKNOWN
        return absl::FailedPreconditionError(
            absl::StrCat("cannot execute \"", plan.path, "\": ", strerror(ENOEXEC),
                         " (neither a binary for this machine nor a script with a #! line)"));
      }
      return absl::ErrnoToStatus(report.err, absl::StrCat("cannot execute \"", plan.path, "\""));
  }
}

int OpenPidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd >= 0) fcntl(fd, F_SETFD, FD_CLOEXEC);  // pidfds are CLOEXEC already
  return fd;
#else
  return -1;
#endif
}

}  // namespace

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Spawn(const SpawnOptions& options) {
  ASSIGN_OR_RETURN(ExecPlan plan,
                   process_internal::MakeExecPlan(options.argv, options.env, environ));
  if (options.working_dir.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("working_dir contains a NUL character");
  }
  std::vector<char*> argv = process_internal::ToCStringArray(plan.argv);
  std::vector<char*> envp = process_internal::ToCStringArray(plan.envp);

  // Descriptors for the child's output: [0] the parent keeps (pipe read
  // ends), [1] the child gets.
  int out_pipe[2] = {-1, -1};
  int err_pipe[2] = {-1, -1};
  int log_fd = -1;
  std::unique_ptr<OutputPump> pump;
  if (const auto* log = std::get_if<LogFileOutput>(&options.output)) {
    log_fd = AboveStdio(open(log->path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (log_fd < 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat("opening the log file \"", log->path, "\""));
    }
  } else if (const auto* lines = std::get_if<LineOutput>(&options.output)) {
    absl::Status piped = MakePipe(out_pipe, "stdout");
    if (piped.ok()) piped = MakePipe(err_pipe, "stderr");
    if (piped.ok()) {
      // The pump owns the read ends from here, even on error.
      auto started = OutputPump::Start(out_pipe[0], err_pipe[0], lines->on_line);
      out_pipe[0] = err_pipe[0] = -1;
      if (started.ok()) pump = *std::move(started);
      piped = started.status();
    }
    if (!piped.ok()) {
      for (int* fd : {&out_pipe[0], &out_pipe[1], &err_pipe[0], &err_pipe[1]}) CloseFd(*fd);
      return piped;
    }
  }
  int report_pipe[2];
  if (absl::Status s = MakePipe(report_pipe, "exec report"); !s.ok()) {
    CloseFd(log_fd);
    CloseFd(out_pipe[1]);
    CloseFd(err_pipe[1]);
    return s;
  }

  ChildSetup setup{};
  setup.path = plan.path.c_str();
  setup.argv = argv.data();
  setup.envp = envp.data();
  setup.working_dir = options.working_dir.empty() ? nullptr : options.working_dir.c_str();
  setup.stdout_fd = log_fd >= 0 ? log_fd : out_pipe[1];
  setup.stderr_fd = log_fd >= 0 ? log_fd : err_pipe[1];
  setup.error_fd = report_pipe[1];
  setup.parent = getpid();
  setup.kill_on_parent_death = options.kill_on_parent_death;
  setup.new_process_group = options.new_process_group;

  // No signal handler may run in the child before it resets them.
  sigset_t all, saved;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &saved);
  pid_t pid = fork();
  if (pid == 0) process_internal::RunChild(setup);
  int fork_errno = errno;
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);

  CloseFd(log_fd);
  CloseFd(out_pipe[1]);
  CloseFd(err_pipe[1]);
  CloseFd(report_pipe[1]);
  if (pid < 0) {
    CloseFd(report_pipe[0]);
    return absl::ErrnoToStatus(fork_errno, absl::StrCat("fork for \"", plan.argv[0], "\""));
  }

  // End of file: the child executed its program (the pipe closed on exec).
  ChildError report{};
  ssize_t got;
  do {
    got = read(report_pipe[0], &report, sizeof(report));
  } while (got < 0 && errno == EINTR);
  CloseFd(report_pipe[0]);
  if (got == sizeof(report)) {
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return ChildErrorStatus(report, options, plan);
  }
  return std::unique_ptr<Subprocess>(
      new Subprocess(pid, OpenPidfd(pid), options.new_process_group, std::move(pump)));
}

Subprocess::Subprocess(pid_t pid, int pidfd, bool own_group, std::unique_ptr<OutputPump> pump)
    : pid_(pid), pidfd_(pidfd), own_group_(own_group), pump_(std::move(pump)) {}

Subprocess::~Subprocess() {
  if (!exit_status_.has_value()) Terminate(kDestructorGrace);
  pump_.reset();
  CloseFd(pidfd_);
}

absl::Status Subprocess::Signal(int signo) {
  if (exit_status_.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("process ", pid_, " has already ended (", exit_status_->ToString(), ")"));
  }
  // Until it is reaped, the child (perhaps a zombie) keeps its pid and its
  // group id from being reused. A child that left its group gets the signal
  // alone.
  bool to_group = own_group_ && getpgid(pid_) == pid_;
  if (kill(to_group ? -pid_ : pid_, signo) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("signalling process ", pid_));
  }
  return absl::OkStatus();
}

std::optional<ExitStatus> Subprocess::TryWait() {
  if (exit_status_.has_value()) return exit_status_;
  siginfo_t info;
  memset(&info, 0, sizeof(info));
  int checked;
  do {
    checked = waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT);
  } while (checked < 0 && errno == EINTR);
  if (checked == 0 && info.si_pid != pid_) return std::nullopt;  // still running
  // Terminated but not reaped: its pid and group id are still ours, so what
  // it left in its group can be killed without hitting a stranger.
  if (checked == 0 && own_group_) (void)Signal(SIGKILL);
  int status = 0;
  pid_t got;
  do {
    got = waitpid(pid_, &status, 0);
  } while (got < 0 && errno == EINTR);
  // ECHILD: someone else reaped it (waitpid(-1) elsewhere, or SIGCHLD
  // ignored). Its status is lost; report a failure rather than hang.
  return Reap(got == pid_ ? status : (255 << 8));
}

std::optional<ExitStatus> Subprocess::Wait(absl::Duration timeout) {
  if (exit_status_.has_value()) return exit_status_;
  if (!WaitForTermination(timeout)) return std::nullopt;
  return TryWait();
}

ExitStatus Subprocess::Terminate(absl::Duration grace) {
  if (exit_status_.has_value()) return *exit_status_;
  (void)Signal(SIGTERM);
  if (!WaitForTermination(grace)) (void)Signal(SIGKILL);
  WaitForTermination(absl::InfiniteDuration());
  return *TryWait();
}

bool Subprocess::WaitForTermination(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Duration sleep = absl::Milliseconds(1);
  for (;;) {
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    const bool infinite = timeout == absl::InfiniteDuration();
    int flags = WEXITED | WNOWAIT | (infinite ? 0 : WNOHANG);
    if (waitid(P_PID, static_cast<id_t>(pid_), &info, flags) == 0) {
      if (info.si_pid == pid_) return true;
    } else if (errno == ECHILD) {
      return true;  // reaped elsewhere; TryWait() reports it
    } else if (errno != EINTR) {
      return false;
    }
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    if (pidfd_ >= 0) {
      pollfd pfd{pidfd_, POLLIN, 0};
      int ms = static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left), 1 << 30)) + 1;
      poll(&pfd, 1, ms);
    } else {
      absl::SleepFor(std::min(sleep, left));
      sleep = std::min(sleep * 2, absl::Milliseconds(50));
    }
  }
}

ExitStatus Subprocess::Reap(int wait_status) {
  exit_status_ = ExitStatus::FromWaitStatus(wait_status);
  // Its output is all in the pipes now; deliver it before reporting the end.
  if (pump_ != nullptr) pump_->Finish();
  return *exit_status_;
}

}  // namespace clmae
