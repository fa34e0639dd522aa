#pragma once

// How a child process ended, as waitpid() reports it, in the words a user
// reads in a log line and the number a shell would give.

#include <string>

namespace clmae {

// The end of a child process: either it exited with `code`, or a signal
// killed it. A plain value type.
struct ExitStatus {
  bool exited = true;  // true: exited with `code`; false: killed by `signal`
  int code = 0;        // exit code (0..255) when `exited`
  int signal = 0;      // signal number when !exited

  // From a wait status filled in by waitpid() for a child that terminated
  // (WIFEXITED or WIFSIGNALED; stop/continue statuses are not expected).
  static ExitStatus FromWaitStatus(int wait_status);
  static ExitStatus Exited(int code) { return ExitStatus{true, code, 0}; }
  static ExitStatus Signaled(int signal) { return ExitStatus{false, 0, signal}; }

  // True when the process exited with code 0.
  bool success() const { return exited && code == 0; }

  // "exit code 1" or "killed by signal 9 (SIGKILL)".
  std::string ToString() const;

  // The code a POSIX shell reports for this end: `code`, or 128 + `signal`.
  int ShellCode() const { return exited ? code : 128 + signal; }

  friend bool operator==(const ExitStatus&, const ExitStatus&) = default;
};

// "SIGTERM" for 15; "SIGRTMIN+3" for real-time signals; "signal 99" for
// numbers Linux does not define.
std::string SignalName(int signal);

}  // namespace clmae
