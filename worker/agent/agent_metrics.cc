#include "worker/agent/agent_metrics.h"

#include <algorithm>
#include <utility>

#include "prometheus/client_metric.h"
#include "prometheus/metric_family.h"

namespace clmae {
namespace {

int KindIndex(const v1::Task& task) { return task.device_kind() == "cuda" ? 0 : 1; }

}  // namespace

AgentMetrics::AgentMetrics(prometheus::Registry& registry, const std::string& worker_id)
    : worker_id_(worker_id),
      starting_(prometheus::BuildGauge()
                    .Name("clmae_agent_trainers")
                    .Help("Trainer processes of this agent by state (starting: assigned, not "
                          "yet spawned)")
                    .Register(registry)
                    .Add({{"worker", worker_id}, {"state", "starting"}})),
      running_(prometheus::BuildGauge()
                   .Name("clmae_agent_trainers")
                   .Help("Trainer processes of this agent by state (starting: assigned, not "
                         "yet spawned)")
                   .Register(registry)
                   .Add({{"worker", worker_id}, {"state", "running"}})),
      starts_(prometheus::BuildCounter()
                  .Name("clmae_agent_trainer_starts_total")
                  .Help("Trainer processes started")
                  .Register(registry)
                  .Add({{"worker", worker_id}})),
      restarts_(prometheus::BuildCounter()
                    .Name("clmae_agent_restarts_total")
                    .Help("Trainer processes started for an attempt > 1 (a job restart)")
                    .Register(registry)
                    .Add({{"worker", worker_id}})) {
  auto& exits = prometheus::BuildCounter()
                    .Name("clmae_agent_trainer_exits_total")
                    .Help(
                        "Trainers that ended, by outcome (a rank that could not be started "
                        "counts as a failure)")
                    .Register(registry);
  const char* outcomes[] = {"success", "failure", "cancelled"};
  for (int i = 0; i < 3; ++i)
    exits_[i] = &exits.Add({{"worker", worker_id}, {"outcome", outcomes[i]}});
  auto& devices = prometheus::BuildGauge()
                      .Name("clmae_agent_devices")
                      .Help("Devices of this agent (CUDA devices or CPU slots) by kind and state")
                      .Register(registry);
  const char* kinds[] = {"cuda", "cpu"};
  const char* states[] = {"free", "busy"};
  for (int k = 0; k < 2; ++k) {
    for (int s = 0; s < 2; ++s) {
      devices_[k][s] =
          &devices.Add({{"worker", worker_id}, {"kind", kinds[k]}, {"state", states[s]}});
    }
  }
}

void AgentMetrics::SetCapacity(int cuda_devices, int cpu_slots) {
  absl::MutexLock lock(&mu_);
  capacity_[0] = cuda_devices;
  capacity_[1] = cpu_slots;
  UpdateLocked();
}

void AgentMetrics::SetConnectedProbe(std::function<bool()> probe) {
  absl::MutexLock lock(&mu_);
  connected_ = std::move(probe);
}

void AgentMetrics::Assigned(const v1::Task& task) {
  absl::MutexLock lock(&mu_);
  ++starting_count_[KindIndex(task)];
  UpdateLocked();
}

void AgentMetrics::Spawned(const v1::Task& task) {
  absl::MutexLock lock(&mu_);
  const int k = KindIndex(task);
  starting_count_[k] = std::max(0, starting_count_[k] - 1);
  ++running_count_[k];
  starts_.Increment();
  if (task.attempt() > 1) restarts_.Increment();
  UpdateLocked();
}

void AgentMetrics::NotSpawned(const v1::Task& task, bool reported_exit) {
  absl::MutexLock lock(&mu_);
  const int k = KindIndex(task);
  starting_count_[k] = std::max(0, starting_count_[k] - 1);
  if (reported_exit) exits_[1]->Increment();
  UpdateLocked();
}

void AgentMetrics::Exited(const v1::Task& task, Outcome outcome) {
  absl::MutexLock lock(&mu_);
  const int k = KindIndex(task);
  running_count_[k] = std::max(0, running_count_[k] - 1);
  exits_[static_cast<int>(outcome)]->Increment();
  UpdateLocked();
}

void AgentMetrics::UpdateLocked() {
  starting_.Set(starting_count_[0] + starting_count_[1]);
  running_.Set(running_count_[0] + running_count_[1]);
  for (int k = 0; k < 2; ++k) {
    const int busy = starting_count_[k] + running_count_[k];
    devices_[k][0]->Set(std::max(0, capacity_[k] - busy));
    devices_[k][1]->Set(busy);
  }
}

std::vector<prometheus::MetricFamily> AgentMetrics::Collect() const {
  bool connected = false;
  {
    // Under the lock, so SetConnectedProbe(nullptr) returning means the old
    // probe is not running and will not run.
    absl::MutexLock lock(&mu_);
    connected = connected_ && connected_();
  }
  prometheus::MetricFamily family;
  family.name = "clmae_agent_connected";
  family.help = "1 while the Attach stream to the coordinator is up (registered)";
  family.type = prometheus::MetricType::Gauge;
  prometheus::ClientMetric metric;
  metric.label = {{"worker", worker_id_}};
  metric.gauge.value = connected ? 1 : 0;
  family.metric.push_back(std::move(metric));
  return {std::move(family)};
}

}  // namespace clmae
