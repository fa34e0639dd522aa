#include "coordinator/worker_registry.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/text.h"
#include "coordinator/proto_time.h"

namespace clmae {

std::string TaskName(const TaskKey& key) {
  return absl::StrCat(key.job_id, "/attempt ", key.attempt, "/rank ", key.rank);
}

absl::Status WorkerRegistry::Register(const v1::Register& registration, absl::Time now) {
  if (registration.worker_id().empty()) {
    return absl::InvalidArgumentError("register.worker_id: empty; give the node's name");
  }
  if (registration.address().empty()) {
    return absl::InvalidArgumentError(
        "register.address: empty; give the host other nodes reach this one at");
  }
  if (registration.cpu_slots() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("register.cpu_slots: ", registration.cpu_slots(), " is negative"));
  }
  std::set<int> indices;
  for (const v1::Device& device : registration.devices()) {
    if (device.kind() != kDeviceCuda) {
      return absl::InvalidArgumentError(absl::StrCat("register.devices: kind '", device.kind(),
                                                     "' is not 'cuda' (CPU ranks are cpu_slots)"));
    }
    if (device.index() < 0 || !indices.insert(device.index()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("register.devices: index ", device.index(), " is negative or listed twice"));
    }
  }
  ReleaseWorker(registration.worker_id());
  Record& record = workers_[registration.worker_id()];
  record.registration = registration;
  record.registration.clear_running_tasks();  // tracked in cuda/cpu instead
  record.state = record.drained_by_operator ? v1::WORKER_STATE_DRAINING : v1::WORKER_STATE_READY;
  record.registered = now;
  record.last_heartbeat = now;
  Reindex(registration.worker_id());
  return absl::OkStatus();
}

absl::Status WorkerRegistry::Heartbeat(const std::string& worker_id, absl::Time now) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) {
    return absl::NotFoundError(absl::StrCat("worker '", Clip(worker_id), "' is not registered"));
  }
  if (it->second.state == v1::WORKER_STATE_LOST) {
    return absl::FailedPreconditionError(
        absl::StrCat("worker '", worker_id, "' lost its lease; register again"));
  }
  it->second.last_heartbeat = std::max(it->second.last_heartbeat, now);
  return absl::OkStatus();
}

absl::Status WorkerRegistry::SetDraining(const std::string& worker_id, bool draining, bool sticky) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) {
    return absl::NotFoundError(absl::StrCat("worker '", Clip(worker_id), "' is not registered"));
  }
  if (it->second.state == v1::WORKER_STATE_LOST) {
    return absl::FailedPreconditionError(absl::StrCat("worker '", worker_id, "' is lost"));
  }
  it->second.state = draining ? v1::WORKER_STATE_DRAINING : v1::WORKER_STATE_READY;
  if (sticky || !draining) it->second.drained_by_operator = draining && sticky;
  Reindex(worker_id);
  return absl::OkStatus();
}

std::vector<std::string> WorkerRegistry::ExpireLeases(absl::Time now) {
  std::vector<std::string> lost;
  for (auto& [id, record] : workers_) {
    if (record.state != v1::WORKER_STATE_LOST && now - record.last_heartbeat > options_.lease) {
      record.state = v1::WORKER_STATE_LOST;
      lost.push_back(id);
    }
  }
  for (const std::string& id : lost) with_room_.erase(id);
  return lost;
}

void WorkerRegistry::MarkLost(const std::string& worker_id) {
  auto it = workers_.find(worker_id);
  if (it != workers_.end()) it->second.state = v1::WORKER_STATE_LOST;
  with_room_.erase(worker_id);
}

absl::Status WorkerRegistry::Occupy(const TaskKey& task, const std::string& worker_id,
                                    const std::string& kind, int index,
                                    std::optional<int> master_port) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end() || it->second.state == v1::WORKER_STATE_LOST) {
    return absl::FailedPreconditionError(
        absl::StrCat("worker '", worker_id, "' is not attached; cannot place ", TaskName(task)));
  }
  Record& record = it->second;
  bool exists = false;
  if (kind == kDeviceCuda) {
    for (const v1::Device& d : record.registration.devices()) exists |= d.index() == index;
  } else if (kind == kDeviceCpu) {
    exists = index >= 0 && index < record.registration.cpu_slots();
  }
  if (!exists) {
    return absl::FailedPreconditionError(
        absl::StrCat("worker '", worker_id, "' has no ", kind, " device ", index));
  }
  std::map<int, TaskKey>& used = kind == kDeviceCuda ? record.cuda : record.cpu;
  if (auto held = used.find(index); held != used.end() && held->second != task) {
    return absl::FailedPreconditionError(absl::StrCat("worker '", worker_id, "' ", kind, " device ",
                                                      index, " runs ", TaskName(held->second)));
  }
  if (master_port.has_value()) {
    if (auto held = record.ports.find(*master_port);
        held != record.ports.end() && held->second != task) {
      return absl::FailedPreconditionError(absl::StrCat(
          "worker '", worker_id, "' port ", *master_port, " is used by ", TaskName(held->second)));
    }
    record.ports[*master_port] = task;
  }
  if (used.emplace(index, task).second) ++attempt_devices_[{task.job_id, task.attempt}];
  Reindex(worker_id);
  return absl::OkStatus();
}

bool WorkerRegistry::Release(const std::string& worker_id, const TaskKey& task) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return false;
  bool released = false;
  for (auto* used : {&it->second.cuda, &it->second.cpu}) {
    for (auto slot = used->begin(); slot != used->end();) {
      if (slot->second == task) {
        slot = used->erase(slot);
        released = true;
        auto count = attempt_devices_.find({task.job_id, task.attempt});
        if (count != attempt_devices_.end() && --count->second == 0) attempt_devices_.erase(count);
      } else {
        ++slot;
      }
    }
  }
  const size_t ports =
      std::erase_if(it->second.ports, [&](const auto& port) { return port.second == task; });
  if (released || ports > 0) Reindex(worker_id);
  return released;
}

std::vector<TaskKey> WorkerRegistry::ReleaseWorker(const std::string& worker_id) {
  std::vector<TaskKey> tasks = TasksOn(worker_id);
  for (const TaskKey& task : tasks) Release(worker_id, task);
  return tasks;
}

std::vector<TaskKey> WorkerRegistry::TasksOn(const std::string& worker_id) const {
  std::vector<TaskKey> tasks;
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return tasks;
  for (const auto* used : {&it->second.cuda, &it->second.cpu}) {
    for (const auto& [index, task] : *used) tasks.push_back(task);
  }
  return tasks;
}

bool WorkerRegistry::AttemptHoldsDevices(const std::string& job_id, int attempt) const {
  return attempt_devices_.contains({job_id, attempt});
}

bool WorkerRegistry::IsReady(const std::string& worker_id) const {
  auto it = workers_.find(worker_id);
  return it != workers_.end() && it->second.state == v1::WORKER_STATE_READY;
}

bool WorkerRegistry::IsAlive(const std::string& worker_id) const {
  auto it = workers_.find(worker_id);
  return it != workers_.end() && it->second.state != v1::WORKER_STATE_LOST;
}

std::optional<std::string> WorkerRegistry::Address(const std::string& worker_id) const {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return std::nullopt;
  return it->second.registration.address();
}

void WorkerRegistry::HoldPort(const std::string& worker_id, int port, absl::Time until) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end() || port <= 0) return;
  absl::Time& held = it->second.held_ports[port];
  held = std::max(held, until);
  Reindex(worker_id);
}

void WorkerRegistry::Reindex(const std::string& worker_id) {
  auto it = workers_.find(worker_id);
  // Occupy admits only existing devices and slots, so equal sizes mean full.
  if (it == workers_.end() || it->second.state != v1::WORKER_STATE_READY ||
      (static_cast<int>(it->second.cuda.size()) >= it->second.registration.devices_size() &&
       static_cast<int>(it->second.cpu.size()) >= it->second.registration.cpu_slots())) {
    with_room_.erase(worker_id);
    return;
  }
  const Record& record = it->second;
  Room& room = with_room_[worker_id];
  NodeCapacity& node = room.node;
  node = NodeCapacity{.worker_id = worker_id, .address = record.registration.address()};
  for (const v1::Device& d : record.registration.devices()) {
    if (!record.cuda.contains(d.index())) node.free_cuda.push_back(d.index());
  }
  std::sort(node.free_cuda.begin(), node.free_cuda.end());
  for (int slot = 0; slot < record.registration.cpu_slots(); ++slot) {
    if (!record.cpu.contains(slot)) node.free_cpu.push_back(slot);
  }
  for (const auto& [port, task] : record.ports) node.used_ports.push_back(port);
  room.held_ports.assign(record.held_ports.begin(), record.held_ports.end());
}

std::vector<NodeCapacity> WorkerRegistry::Capacity(absl::Time now) const {
  // Kept up to date by every change of a worker (Reindex): a copy of the
  // workers with room, not a walk over every worker and device.
  std::vector<NodeCapacity> nodes;
  nodes.reserve(with_room_.size());
  for (const auto& [id, room] : with_room_) {
    NodeCapacity& node = nodes.emplace_back(room.node);
    for (const auto& [port, until] : room.held_ports) {
      if (until > now) node.used_ports.push_back(port);
    }
  }
  return nodes;
}

v1::Worker WorkerRegistry::ToProto(const Record& record) const {
  v1::Worker worker;
  worker.set_id(record.registration.worker_id());
  worker.set_address(record.registration.address());
  *worker.mutable_devices() = record.registration.devices();
  worker.set_cpu_slots(record.registration.cpu_slots());
  worker.set_state(record.state);
  *worker.mutable_last_heartbeat_time() = ToProtoTime(record.last_heartbeat);
  *worker.mutable_register_time() = ToProtoTime(record.registered);
  worker.set_free_devices(record.registration.devices_size() -
                          static_cast<int>(record.cuda.size()));
  worker.set_free_cpu_slots(record.registration.cpu_slots() - static_cast<int>(record.cpu.size()));
  for (const auto& [kind, used] :
       {std::pair{kDeviceCuda, &record.cuda}, {kDeviceCpu, &record.cpu}}) {
    for (const auto& [index, task] : *used) {
      v1::Task* out = worker.add_running_tasks();
      out->set_job_id(task.job_id);
      out->set_attempt(task.attempt);
      out->set_rank(task.rank);
      out->set_device_index(index);
      out->set_device_kind(kind);
    }
  }
  return worker;
}

std::vector<v1::Worker> WorkerRegistry::List() const {
  std::vector<v1::Worker> out;
  for (const auto& [id, record] : workers_) out.push_back(ToProto(record));
  return out;
}

std::optional<v1::Worker> WorkerRegistry::Get(const std::string& worker_id) const {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return std::nullopt;
  return ToProto(it->second);
}

}  // namespace clmae
