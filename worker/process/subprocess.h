#pragma once

// One child process, started with fork + execve, supervised until it is
// reaped: signals, waits with timeouts, SIGTERM-then-SIGKILL termination.
// Shared by the node agent (one per trainer) and clmae-train's local
// launcher (one per rank). No LibTorch, no gRPC.

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/process/exit_status.h"
#include "worker/process/output_pump.h"

namespace clmae {

// The child writes to the parent's stdout and stderr.
struct InheritOutput {};

// The child's stdout and stderr are both appended to the file at `path`,
// created with mode 0644 (less the umask) if missing.
struct LogFileOutput {
  std::string path;
};

// The child's stdout and stderr go to pipes whose lines are handed to
// `on_line` on a thread owned by the Subprocess (see LineCallback).
struct LineOutput {
  LineCallback on_line;
};

struct SpawnOptions {
  // The command: argv[0] is the executable, found on PATH (the child's PATH
  // when `env` sets one) when it has no '/'. Required, non-empty.
  std::vector<std::string> argv;
  // Variables added to, or overriding, the parent's environment.
  std::vector<std::pair<std::string, std::string>> env;
  // The child's working directory; empty keeps the parent's.
  std::string working_dir;
  std::variant<InheritOutput, LogFileOutput, LineOutput> output = InheritOutput{};
  // Linux PR_SET_PDEATHSIG: the child gets SIGKILL when its parent dies.
  // Caveat: the kernel's "parent" is the THREAD that called Spawn(), so
  // spawn from a thread that outlives the child (the main thread, or a
  // long-lived supervisor thread), not from a short-lived worker thread.
  // Only the child itself gets it: processes it started in its group
  // survive a SIGKILLed parent (nobody is left to clean up after one).
  bool kill_on_parent_death = true;
  // The child leads a new process group, so a terminal's Ctrl-C reaches
  // only the parent (which decides what to forward), Signal() and
  // Terminate() reach the child's own children too, and whatever the child
  // leaves running in its group when it ends is killed (SIGKILL) before it
  // is reaped: nothing it started outlives it unless it leaves the group.
  bool new_process_group = true;
};

// A running, then reaped, child process. Thread-compatible: one thread (or
// external locking) at a time. The destructor never leaves the child behind:
// a child still running is terminated (SIGTERM, kDestructorGrace, SIGKILL)
// and reaped.
class Subprocess {
 public:
  static constexpr absl::Duration kDestructorGrace = absl::Seconds(2);

  // Starts the child and returns once it has executed its program. A program
  // that cannot be started is an error here, not an exit code later:
  // INVALID_ARGUMENT (empty argv, a NUL in an argument or variable),
  // NOT_FOUND (no such program, or `working_dir` missing), PERMISSION_DENIED
  // (not executable), FAILED_PRECONDITION (not a valid executable format)
  // or another code carrying the errno text, with the program named.
  // Safe to call from a multithreaded process: the child only makes
  // async-signal-safe calls between fork and exec. The child starts with no
  // blocked signals and default dispositions for signals the parent handles
  // or that are commonly ignored (SIGPIPE, SIGXFSZ).
  static absl::StatusOr<std::unique_ptr<Subprocess>> Spawn(const SpawnOptions& options);

  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;
  ~Subprocess();

  pid_t pid() const { return pid_; }

  // A descriptor that polls readable once the child has terminated (a Linux
  // pidfd), for waiting on several children in one poll(); -1 if the kernel
  // has none. Owned by this object; reading it is meaningless.
  int exit_fd() const { return pidfd_; }

  // Sends `signo` to the child's process group (or to the child alone
  // without new_process_group). FAILED_PRECONDITION once the child has been
  // reaped (its pid may belong to another process by then).
  absl::Status Signal(int signo);

  // The exit status if the child has terminated (reaping it, after killing
  // what it left in its group), else nullopt. After a child is reaped its
  // status is remembered and returned again. A child reaped behind this
  // object's back (waitpid(-1) elsewhere, SIGCHLD ignored) reads as exit
  // code 255.
  std::optional<ExitStatus> TryWait();

  // Like TryWait(), blocking up to `timeout` (absl::InfiniteDuration() for
  // no limit) for the child to terminate.
  std::optional<ExitStatus> Wait(absl::Duration timeout);

  // Stops the child: SIGTERM (to its group with new_process_group), up to
  // `grace` for it to exit, then SIGKILL, then reaps it as TryWait() does.
  // Returns the child's exit status (its own, if it exited before being
  // killed). Blocks at most about `grace` unless the child is stuck in the
  // kernel (uninterruptible sleep).
  ExitStatus Terminate(absl::Duration grace);

 private:
  Subprocess(pid_t pid, int pidfd, bool own_group, std::unique_ptr<OutputPump> pump);

  // Blocks until the child has terminated, without reaping it, up to
  // `timeout`. Returns whether it has.
  bool WaitForTermination(absl::Duration timeout);
  // Records the reaped child's status and finishes its output.
  ExitStatus Reap(int wait_status);

  pid_t pid_;
  int pidfd_;
  bool own_group_;
  std::unique_ptr<OutputPump> pump_;
  std::optional<ExitStatus> exit_status_;
};

}  // namespace clmae
