#pragma once

// Process-wide signal handling without work in a signal handler: the handler
// only write()s the signal number to a self-pipe (async-signal-safe), and
// the owner polls the pipe's read end from an ordinary thread.

#include <signal.h>

#include <memory>
#include <vector>

#include "absl/status/statusor.h"

namespace clmae {

// While alive, catches the given signals for the whole process (whichever
// thread the kernel delivers them to) and queues them for TakePending().
// At most one SignalCatcher exists at a time in a process. The previous
// dispositions come back on destruction. Thread-compatible.
class SignalCatcher {
 public:
  // Installs handlers for `signals` (SIGKILL and SIGSTOP cannot be caught).
  // FAILED_PRECONDITION if another SignalCatcher is alive; INVALID_ARGUMENT
  // for a signal that cannot be caught; INTERNAL when the pipe or a handler
  // cannot be set up.
  static absl::StatusOr<std::unique_ptr<SignalCatcher>> Install(const std::vector<int>& signals);

  SignalCatcher(const SignalCatcher&) = delete;
  SignalCatcher& operator=(const SignalCatcher&) = delete;
  ~SignalCatcher();

  // Polls readable while signals are pending.
  int fd() const { return read_fd_; }

  // The signals caught since the last call, in arrival order; never blocks.
  // (The pipe holds thousands; a signal beyond that is dropped.)
  std::vector<int> TakePending();

 private:
  SignalCatcher(int read_fd, int write_fd) : read_fd_(read_fd), write_fd_(write_fd) {}

  int read_fd_;
  int write_fd_;
  std::vector<std::pair<int, struct sigaction>> previous_;
};

}  // namespace clmae
