#pragma once

// Helpers for the agent tests: shell-script trainers, waiting for a
// condition, and checking that a process is gone (plus the process tests' own).

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/worker/process/process_test_util.h"

namespace clmae::agent_testing {

// The process tests' temporary folder and file reading serve here too.
using AgentTempDir = ::clmae::testing::TempDir;
using ::clmae::testing::ReadFileOrEmpty;

// Writes an executable shell script.
inline void WriteScript(const std::string& path, const std::string& body) {
  std::ofstream(path) << "#!/bin/sh\n" << body;
  chmod(path.c_str(), 0755);
}

// Polls `done` until it holds or `timeout` passes (a safety net against a
// hung test, not a measured bound). Returns whether it held.
inline bool WaitUntil(const std::function<bool()>& done,
                      absl::Duration timeout = absl::Seconds(30)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

// True while a process with `pid` exists (a zombie counts as gone).
inline bool ProcessAlive(pid_t pid) {
  if (kill(pid, 0) != 0) return errno != ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const size_t close = text.rfind(')');
  return close == std::string::npos || close + 2 >= text.size() || text[close + 2] != 'Z';
}

}  // namespace clmae::agent_testing
