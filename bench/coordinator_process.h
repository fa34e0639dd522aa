#pragma once

// A `clmae-coordinator` child process for clmae-bench-coordinator: started on
// loopback with a port file and bearer tokens from the environment, timed
// to readiness, measured (/proc/<pid>/status) and killed.

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "worker/process/subprocess.h"

namespace clmae::bench {

struct CoordinatorProcessOptions {
  std::string binary;
  std::string data_dir;
  std::string log_path;  // the child's stdout + stderr, appended
  std::string client_token;
  std::string worker_token;
  std::vector<std::string> extra_flags;  // e.g. --heartbeat_interval=1s
};

// Seconds from exec to each readiness step.
struct ReadyTimes {
  double port_file = 0;  // the port file appeared (the server is bound)
  double health = 0;     // grpc.health.v1 Check answered SERVING
  int64_t exec_ns = 0;   // NowNs() just before the exec
};

struct MemoryFigures {
  int64_t rss_kib = 0;  // VmRSS
  int64_t hwm_kib = 0;  // VmHWM (peak RSS)
};

class CoordinatorProcess {
 public:
  // Starts the binary (removing a stale port file first) and waits up to
  // `timeout` for its port file and a SERVING health answer.
  static absl::StatusOr<std::unique_ptr<CoordinatorProcess>> Start(
      const CoordinatorProcessOptions& options, absl::Duration timeout);

  int port() const { return port_; }
  pid_t pid() const { return child_->pid(); }
  std::string address() const;
  const ReadyTimes& ready() const { return ready_; }
  // A channel of its own (not shared with other channels' connections).
  std::shared_ptr<grpc::Channel> NewChannel() const;

  absl::StatusOr<MemoryFigures> Memory() const;
  // kill -9 and reap.
  void Kill();
  // SIGTERM, wait for a clean exit; the exit status as text.
  std::string Terminate();

 private:
  explicit CoordinatorProcess(std::unique_ptr<Subprocess> child) : child_(std::move(child)) {}

  std::unique_ptr<Subprocess> child_;
  int port_ = 0;
  ReadyTimes ready_;
};

// grpc.health.v1.Health/Check for the whole server: true when SERVING.
bool HealthServing(const std::shared_ptr<grpc::Channel>& channel, absl::Duration deadline);

// The last `bytes` of a text file (for a coordinator's log on failure).
std::string FileTail(const std::string& path, size_t bytes);

}  // namespace clmae::bench
