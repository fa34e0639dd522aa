#pragma once

// Reading and writing small files in tests, and waiting for one to appear.

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace clmae::testing {

// The whole file, or "" when it cannot be read.
inline std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Replaces `path` with `text` (not atomically: for test fixtures).
inline void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// Waits up to `timeout` (a safety net against hangs, not a measured bound)
// for `path` to exist with content.
inline bool WaitForFile(const std::string& path, absl::Duration timeout = absl::Seconds(30)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    std::error_code ec;
    if (std::filesystem::file_size(path, ec) > 0 && !ec) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return false;
}

}  // namespace clmae::testing
