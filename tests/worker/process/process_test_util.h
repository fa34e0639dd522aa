#pragma once

// Helpers shared by the process tests: waiting for a pid to disappear (and
// the shared test helpers of tests/testing/).

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <optional>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/testing/files.h"
#include "tests/testing/temp_dir.h"

namespace clmae::testing {

// True when no process has `pid` (any zombie of ours is reaped first; with
// PR_SET_CHILD_SUBREAPER orphaned grandchildren are ours too). Waits up to
// `timeout` for it to go. `status` receives the wait status when we reaped it.
inline bool PidGone(pid_t pid, absl::Duration timeout = absl::Seconds(30), int* status = nullptr) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    int wait_status = 0;
    if (waitpid(pid, &wait_status, WNOHANG) == pid) {
      if (status != nullptr) *status = wait_status;
      return true;
    }
    if (kill(pid, 0) != 0 && errno == ESRCH) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
}

}  // namespace clmae::testing
