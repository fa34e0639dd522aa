#pragma once

// Every metric family of clmae-worker (docs/metrics.md, "Agent"): trainers
// by state, starts, restarts, exits by outcome, devices by state and the
// Attach stream's state, labelled with the worker id.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "clmae/v1/worker.pb.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace clmae {

// Thread-safe. The supervisor reports each rank's way from assignment to
// exit; `connected` is read at scrape time. Register the object (a
// Collectable, for clmae_agent_connected) beside the registry.
class AgentMetrics : public prometheus::Collectable {
 public:
  enum class Outcome { kSuccess, kFailure, kCancelled };

  // Declares the families in `registry` (which must outlive this object).
  AgentMetrics(prometheus::Registry& registry, const std::string& worker_id);

  // What the node offers: CUDA devices or CPU slots.
  void SetCapacity(int cuda_devices, int cpu_slots);
  // Whether the Attach stream is up (registered); called at each scrape.
  // Unset: reported 0. Called under this object's lock: the probe must not
  // call back into it. After SetConnectedProbe(nullptr) returns, the old
  // probe is not called any more.
  void SetConnectedProbe(std::function<bool()> probe);

  // An assignment was accepted: the rank is starting (its device is busy).
  void Assigned(const v1::Task& task);
  // Its trainer process was spawned: running (attempt > 1: a restart).
  void Spawned(const v1::Task& task);
  // It was never spawned; `reported_exit`: it is reported as a failed exit.
  void NotSpawned(const v1::Task& task, bool reported_exit);
  // A spawned trainer ended.
  void Exited(const v1::Task& task, Outcome outcome);

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  void UpdateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  prometheus::Counter& ExitCounter(Outcome outcome);

  const std::string worker_id_;
  prometheus::Gauge& starting_;
  prometheus::Gauge& running_;
  prometheus::Counter& starts_;
  prometheus::Counter& restarts_;
  prometheus::Counter* exits_[3];
  prometheus::Gauge* devices_[2][2];  // [cuda, cpu][free, busy]

  mutable absl::Mutex mu_;
  int capacity_[2] ABSL_GUARDED_BY(mu_) = {0, 0};
  int starting_count_[2] ABSL_GUARDED_BY(mu_) = {0, 0};
  int running_count_[2] ABSL_GUARDED_BY(mu_) = {0, 0};
  std::function<bool()> connected_ ABSL_GUARDED_BY(mu_);
};

}  // namespace clmae
