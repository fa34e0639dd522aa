#pragma once

// Simulated node agents for clmae-bench-coordinator: N WorkerControl.Attach
// streams driven by gRPC's callback API (no thread per agent) plus one
// ticker thread that sends heartbeats and the delayed task exits.
//
// Each agent registers with `gpus_per_agent` CUDA devices, answers every
// Assign with TaskStatus RUNNING at once and, unless holding, EXITED 0 after
// the job spec's resources.estimated_seconds (when set) or `task_time`, and answers a Cancel with
// EXITED by SIGTERM. The arrival time of every Assign is recorded by job id, for
// submit-to-assignment latency.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "clmae/v1/worker_control.grpc.pb.h"
#include "grpcpp/channel.h"

namespace clmae::bench {

struct FleetOptions {
  std::string address;  // host:port of the coordinator
  std::string token;    // worker-role bearer token
  int agents = 1000;
  int gpus_per_agent = 8;
  // TCP connections shared round-robin by the agents; 0 = one per agent (as
  // real nodes would have).
  int connections = 0;
  // Heartbeat period; zero = the interval the coordinator returns.
  absl::Duration heartbeat_interval = absl::ZeroDuration();
  absl::Duration task_time = absl::Milliseconds(500);  // RUNNING -> EXITED 0
};

// One Assign an agent received.
struct AssignedRank {
  int attempt = 0;
  int rank = 0;
  std::string worker_id;
  int device_index = 0;
};

// When the ranks of one job were assigned, in steady-clock nanoseconds, and
// every Assign of it, in arrival order.
struct AssignRecord {
  int count = 0;
  int64_t first_ns = 0;
  int64_t last_ns = 0;
  std::vector<AssignedRank> ranks;
};

class AgentReactor;

// Thread-safe. Start() once, Stop() once (the destructor stops too).
class SimAgentFleet {
 public:
  explicit SimAgentFleet(FleetOptions options);
  ~SimAgentFleet();

  // Opens every stream and waits up to `timeout` for every `registered`.
  // DEADLINE_EXCEEDED names how many registered; UNAVAILABLE when a stream
  // ended before registering.
  absl::Status Start(absl::Duration timeout);

  // Cancels every stream and waits for them to end (e.g. before the
  // coordinator is killed, or after it was).
  void Stop();

  // The streams are about to break (the coordinator is being killed): their
  // ends are not counted as broken.
  void ExpectEnd() { stopping_.store(true); }

  // While holding, assigned tasks keep running (no EXITED): capacity fills.
  void SetHold(bool hold) { hold_.store(hold); }
  // Heartbeats on the timer on or off (off during the flood probe).
  void SetHeartbeats(bool on) { heartbeats_on_.store(on); }

  // Heartbeat capacity: every agent writes `per_agent` heartbeats back to
  // back, then a TaskStatus for a task that does not exist; the coordinator
  // handles a stream's messages in order and answers that one with a
  // Cancel, so when every probe is answered every heartbeat before it was
  // handled. Returns the seconds from the first write to the last answer.
  absl::StatusOr<double> FloodHeartbeats(int per_agent, absl::Duration timeout);

  // Heartbeat writes completed (accepted by the transport), all agents.
  int64_t heartbeats_sent() const { return heartbeats_sent_.load(); }
  // Streams that ended with an error while not being stopped.
  int64_t broken_streams() const { return broken_streams_.load(); }
  int64_t assigns() const { return assigns_.load(); }
  int64_t cancels() const { return cancels_.load(); }
  absl::Duration coordinator_heartbeat_interval() const;

  // The Assign record of `job_id`, if any arrived.
  bool Lookup(const std::string& job_id, AssignRecord* out);

  // The worker id agent number `agent` registers as.
  static std::string WorkerId(int agent);

 private:
  friend class AgentReactor;
  struct Shard {
    absl::Mutex mu;
    absl::flat_hash_map<std::string, AssignRecord> records ABSL_GUARDED_BY(mu);
  };
  struct PendingExit {
    int64_t due_ns;
    int agent;
    v1::TaskAssignment task;
  };

  // Called by reactors (gRPC threads).
  void OnRegistered(absl::Duration interval);
  void OnAssign(int agent, const v1::TaskAssignment& task);
  void OnProbeAnswered();
  void OnStreamEnded(bool error);
  void TickLoop();

  const FleetOptions options_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<v1::WorkerControl::Stub>> stubs_;
  std::vector<std::unique_ptr<AgentReactor>> agents_;
  Shard shards_[64];

  std::atomic<bool> hold_{false};
  std::atomic<bool> heartbeats_on_{true};
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> heartbeats_sent_{0};
  std::atomic<int64_t> broken_streams_{0};
  std::atomic<int64_t> assigns_{0};
  std::atomic<int64_t> cancels_{0};

  absl::Mutex mu_;
  int registered_ ABSL_GUARDED_BY(mu_) = 0;
  int ended_ ABSL_GUARDED_BY(mu_) = 0;
  int probes_answered_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration interval_ ABSL_GUARDED_BY(mu_);
  std::vector<PendingExit> exits_ ABSL_GUARDED_BY(mu_);  // min-heap on due_ns
  bool ticker_stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread ticker_;
  bool started_ = false;
  bool stopped_ = false;
};

// Steady-clock nanoseconds (comparable across threads of this process).
int64_t NowNs();

}  // namespace clmae::bench
