#pragma once

// `promtool check metrics` on an exposition text, for the metrics tests of
// every process (skipped where promtool is not installed).

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <optional>
#include <string>

#include "gtest/gtest.h"

namespace clmae {

struct PromtoolResult {
  int exit_code = -1;
  std::string output;  // its lint findings
};

// nullopt when promtool is not on PATH.
inline std::optional<PromtoolResult> PromtoolCheckMetrics(const std::string& text) {
  if (system("command -v promtool >/dev/null 2>&1") != 0) return std::nullopt;
  std::string path = ::testing::TempDir() + "/clmae_metrics_XXXXXX";
  const int fd = mkstemp(path.data());
  if (fd < 0) return PromtoolResult{-1, "cannot create a temporary file"};
  close(fd);
  std::ofstream(path) << text;
  PromtoolResult result;
  FILE* pipe = popen(("promtool check metrics < '" + path + "' 2>&1").c_str(), "r");
  if (pipe == nullptr) return PromtoolResult{-1, "cannot run promtool"};
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  unlink(path.c_str());
  return result;
}

}  // namespace clmae
