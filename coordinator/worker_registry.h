#pragma once

// The coordinator's view of its node agents: who is attached, their
// capacity, which device runs which rank, and their heartbeat leases.
// Time is passed in, so tests drive leases without sleeping.

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clmae/v1/worker.pb.h"
#include "clmae/v1/worker_control.pb.h"

namespace clmae {

inline constexpr char kDeviceCuda[] = "cuda";
inline constexpr char kDeviceCpu[] = "cpu";

// One rank of one attempt of one job.
struct TaskKey {
  std::string job_id;
  int attempt = 0;
  int rank = 0;

  friend bool operator==(const TaskKey&, const TaskKey&) = default;
  friend auto operator<=>(const TaskKey&, const TaskKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const TaskKey& key) {
    return H::combine(std::move(h), key.job_id, key.attempt, key.rank);
  }
};
// "job-1a2b/attempt 2/rank 0", for messages.
std::string TaskName(const TaskKey& key);

// What the scheduler may use on one READY worker.
struct NodeCapacity {
  std::string worker_id;
  std::string address;
  std::vector<int> free_cuda;   // free CUDA device indices, ascending
  std::vector<int> free_cpu;    // free CPU slot indices, ascending
  std::vector<int> used_ports;  // master ports of ranks 0 running here
};

struct WorkerRegistryOptions {
  absl::Duration lease = absl::Seconds(15);  // lost after this long without a heartbeat
};

// Not thread-safe: the Coordinator calls it under its own lock.
class WorkerRegistry {
 public:
  explicit WorkerRegistry(WorkerRegistryOptions options) : options_(options) {}

  // Registers a worker, or re-registers one (after a reconnect or a lost
  // lease): its capacity is replaced, its state becomes READY with a fresh
  // lease, and the tasks it held are forgotten (the caller re-adds those the
  // agent reports, through Occupy). INVALID_ARGUMENT names a bad field
  // (empty id or address, negative cpu_slots, a device index repeated or
  // negative, a device kind other than "cuda").
  absl::Status Register(const v1::Register& registration, absl::Time now);

  // Renews the lease. NOT_FOUND for an unknown worker; FAILED_PRECONDITION
  // for a LOST one (it must register again).
  absl::Status Heartbeat(const std::string& worker_id, absl::Time now);

  // A draining worker keeps its tasks and lease but gets no new ranks. An
  // operator's drain (`sticky`) outlasts the agent registering again (a
  // reconnect or a restart); an agent's own (it is leaving) does not.
  absl::Status SetDraining(const std::string& worker_id, bool draining, bool sticky = true);

  // Marks every READY/DRAINING worker whose lease ran out before `now` as
  // LOST and returns their ids. Their tasks stay until ReleaseWorker.
  std::vector<std::string> ExpireLeases(absl::Time now);

  // Marks the worker LOST now (e.g. it told us it is going away).
  void MarkLost(const std::string& worker_id);

  // Records that `task` holds device `index` of `kind` on the worker, and,
  // when `master_port` is set, that port for the task's TCPStore.
  // FAILED_PRECONDITION when the device is taken or does not exist, or the
  // worker is unknown or LOST.
  absl::Status Occupy(const TaskKey& task, const std::string& worker_id, const std::string& kind,
                      int index, std::optional<int> master_port = std::nullopt);

  // Frees what `task` holds on the worker; false when it held nothing.
  bool Release(const std::string& worker_id, const TaskKey& task);

  // Frees everything on the worker and returns the tasks that held it.
  std::vector<TaskKey> ReleaseWorker(const std::string& worker_id);

  // The tasks placed on the worker (empty for an unknown one).
  std::vector<TaskKey> TasksOn(const std::string& worker_id) const;
  // Whether any rank of the job's attempt still holds a device anywhere.
  bool AttemptHoldsDevices(const std::string& job_id, int attempt) const;

  bool IsReady(const std::string& worker_id) const;
  bool IsAlive(const std::string& worker_id) const;  // READY or DRAINING
  std::optional<std::string> Address(const std::string& worker_id) const;

  // Free capacity of READY workers that have a free CUDA device or CPU slot
  // (a full worker can take no rank), by worker id. Maintained as workers
  // change, so this costs the workers with room only.
  // Ports held (HoldPort) until after `now` count as used.
  std::vector<NodeCapacity> Capacity(absl::Time now = absl::InfinitePast()) const;

  // Something other than a rank of ours holds `port` on the worker (a rank 0
  // could not bind it): it is not handed out there before `until`. Kept
  // across the worker registering again; ignored for an unknown worker.
  void HoldPort(const std::string& worker_id, int port, absl::Time until);

  // Every worker as the ListWorkers RPC shows it, by id.
  std::vector<v1::Worker> List() const;
  std::optional<v1::Worker> Get(const std::string& worker_id) const;

 private:
  struct Record {
    v1::Register registration;
    v1::WorkerState state = v1::WORKER_STATE_READY;
    bool drained_by_operator = false;
    absl::Time registered;
    absl::Time last_heartbeat;
    std::map<int, TaskKey> cuda;  // device index -> task
    std::map<int, TaskKey> cpu;   // slot index -> task
    std::map<int, TaskKey> ports;
    std::map<int, absl::Time> held_ports;  // port -> until
  };
  // A READY worker with a free device or slot, as Capacity hands it out
  // (before the ports held until some time are added).
  struct Room {
    NodeCapacity node;
    std::vector<std::pair<int, absl::Time>> held_ports;  // port, until
  };
  v1::Worker ToProto(const Record& record) const;
  // Brings the worker's entry in with_room_ in step with its record: called
  // by every method that changes a worker's state, tasks or ports, so
  // Capacity costs the workers with room, not every worker.
  void Reindex(const std::string& worker_id);

  WorkerRegistryOptions options_;
  std::map<std::string, Record> workers_;  // ordered: stable listings
  std::map<std::string, Room> with_room_;  // by worker id, as Capacity lists them
  // How many devices each (job, attempt) holds, over all workers.
  absl::flat_hash_map<std::pair<std::string, int>, int> attempt_devices_;
};

}  // namespace clmae
