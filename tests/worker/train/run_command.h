#pragma once

// Runs a shell command line for the end-to-end tests of clmae-train and
// returns its exit code and combined stdout + stderr.

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace clmae::train_testing {

struct CommandResult {
  int exit_code = -1;  // -1 when it could not run or was killed by a signal
  std::string output;
};

inline CommandResult RunCommand(const std::string& command) {
  CommandResult r;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) r.output.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace clmae::train_testing
