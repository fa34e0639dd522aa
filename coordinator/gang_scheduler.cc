#include "coordinator/gang_scheduler.h"

#include <algorithm>
#include <cstdint>
#include <set>

namespace clmae {
namespace {

// FNV-1a of the job id and attempt: stable across runs and builds (unlike
// absl::Hash, which is seeded per process), so a placement can be replayed.
uint64_t PortSeed(const std::string& job_id, int attempt) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](unsigned char byte) {
    h ^= byte;
    h *= 1099511628211ull;
  };
  for (char c : job_id) mix(static_cast<unsigned char>(c));
  for (int i = 0; i < 4; ++i) mix(static_cast<unsigned char>(attempt >> (8 * i)));
  return h;
}

std::vector<int>& FreeOf(NodeCapacity& node, const std::string& kind) {
  return kind == kDeviceCuda ? node.free_cuda : node.free_cpu;
}

}  // namespace

bool GangScheduler::PlaceOne(const PendingJob& job, std::vector<NodeCapacity>& nodes,
                             GangPlacement& out) const {
  if (job.world_size < 1) return false;
  const auto free_count = [&](size_t i) {
    return static_cast<int>(FreeOf(nodes[i], job.device_kind).size());
  };
  // Candidate node order.
  std::vector<size_t> chosen;
  size_t best = nodes.size();
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (free_count(i) >= job.world_size &&
        (best == nodes.size() || free_count(i) < free_count(best))) {
      best = i;
    }
  }
  if (best != nodes.size()) {
    chosen.push_back(best);
  } else {
    std::vector<size_t> order;
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (free_count(i) > 0) order.push_back(i);
    }
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      if (free_count(a) != free_count(b)) return free_count(a) > free_count(b);
      return nodes[a].worker_id < nodes[b].worker_id;
    });
    int total = 0;
    for (size_t i : order) {
      if (total >= job.world_size) break;
      chosen.push_back(i);
      total += free_count(i);
    }
    if (total < job.world_size) return false;
  }
  // MASTER_PORT on rank 0's node.
  NodeCapacity& master = nodes[chosen.front()];
  const int port = ChoosePort(job, master);
  if (port < 0) return false;  // every port of the range is in use there

  out = GangPlacement{};
  out.job_id = job.job_id;
  out.placement.set_master_addr(master.address);
  out.placement.set_master_port(port);
  master.used_ports.push_back(port);
  int rank = 0;
  for (size_t i : chosen) {
    std::vector<int>& free = FreeOf(nodes[i], job.device_kind);
    size_t taken = 0;
    while (taken < free.size() && rank < job.world_size) {
      v1::RankPlacement* r = out.placement.add_ranks();
      r->set_rank(rank++);
      r->set_worker_id(nodes[i].worker_id);
      r->set_device_index(free[taken++]);
      r->set_device_kind(job.device_kind);
    }
    free.erase(free.begin(), free.begin() + static_cast<std::ptrdiff_t>(taken));
  }
  return true;
}

int GangScheduler::ChoosePort(const PendingJob& job, const NodeCapacity& node) const {
  const std::set<int> used(node.used_ports.begin(), node.used_ports.end());
  const std::set<int> avoid(job.avoid_ports.begin(), job.avoid_ports.end());
  const int size = options_.master_port_max - options_.master_port_min + 1;
  const int start =
      static_cast<int>(PortSeed(job.job_id, job.attempt) % static_cast<uint64_t>(size));
  int fallback = -1;  // a free port the job used recently
  for (int i = 0; i < size; ++i) {
    const int port = options_.master_port_min + (start + i) % size;
    if (used.contains(port)) continue;
    if (!avoid.contains(port)) return port;
    if (fallback < 0) fallback = port;
  }
  return fallback;
}

std::vector<GangPlacement> GangScheduler::Schedule(std::vector<PendingJob> pending,
                                                   std::vector<NodeCapacity> nodes) const {
  std::stable_sort(pending.begin(), pending.end(), [](const PendingJob& a, const PendingJob& b) {
    if (a.priority != b.priority) return a.priority > b.priority;
    if (a.submit_time != b.submit_time) return a.submit_time < b.submit_time;
    return a.order < b.order;
  });
  std::vector<GangPlacement> placements;
  std::set<std::string> blocked_kinds;
  for (const PendingJob& job : pending) {
    if (blocked_kinds.contains(job.device_kind)) continue;
    GangPlacement placement;
    if (PlaceOne(job, nodes, placement)) {
      placements.push_back(std::move(placement));
    } else {
      blocked_kinds.insert(job.device_kind);
    }
  }
  return placements;
}

}  // namespace clmae
