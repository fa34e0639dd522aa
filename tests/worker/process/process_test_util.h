#pragma once

// Helpers shared by the process tests: a temporary folder, files, and
// waiting for a pid to disappear.

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace clmae::testing {

// A fresh folder under $TMPDIR (or /tmp), removed on destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TMPDIR");
    std::string pattern = std::string(base != nullptr ? base : "/tmp") + "/clmae_test_XXXXXX";
    char* made = mkdtemp(pattern.data());
    if (made != nullptr) path_ = made;
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

inline void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
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
