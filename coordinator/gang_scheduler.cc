#include "coordinator/gang_scheduler.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <utility>

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

Reservation GangScheduler::Reserve(const PendingJob& head, int free_now,
                                   std::vector<RunningJob> running, absl::Time now) {
  Reservation reservation;
  reservation.head_devices = head.world_size;
  // A job without an estimated end may end at any moment: for the earliest
  // start it counts as ending now, but its devices are never counted on.
  int unknown = 0;
  for (const RunningJob& r : running) {
    if (!r.estimated_end.has_value()) unknown += r.devices;
  }
  std::erase_if(running, [](const RunningJob& r) { return !r.estimated_end.has_value(); });
  std::sort(running.begin(), running.end(), [](const RunningJob& a, const RunningJob& b) {
    return *a.estimated_end < *b.estimated_end;
  });
  int certain = free_now;  // free by `start` whatever the unknown jobs do
  size_t next = 0;
  if (free_now + unknown >= head.world_size) {
    reservation.start = now;
  } else {
    int possible = free_now + unknown;
    for (; next < running.size() && possible < head.world_size; ++next) {
      possible += running[next].devices;
      certain += running[next].devices;
      reservation.start = std::max(now, *running[next].estimated_end);
    }
    if (possible < head.world_size) {
      return Reservation{.head_devices = head.world_size};  // more than there is: no start
    }
  }
  // Jobs ending at the same moment free their devices by then too.
  for (; next < running.size() && *running[next].estimated_end <= reservation.start; ++next) {
    certain += running[next].devices;
  }
  reservation.spare = std::max(0, certain - head.world_size);
  return reservation;
}

bool GangScheduler::MayBackfill(const Reservation& reservation, const PendingJob& job,
                                absl::Time now) {
  if (job.estimate.has_value() && reservation.start != absl::InfiniteFuture() &&
      now + *job.estimate <= reservation.start) {
    return true;
  }
  return job.world_size <= reservation.spare;
}

void GangScheduler::Backfilled(Reservation& reservation, const PendingJob& job, absl::Time now) {
  const bool ends_first = job.estimate.has_value() && reservation.start != absl::InfiniteFuture() &&
                          now + *job.estimate <= reservation.start;
  if (!ends_first) reservation.spare = std::max(0, reservation.spare - job.world_size);
}

std::vector<GangPlacement> GangScheduler::Schedule(
    std::vector<PendingJob> pending, std::vector<NodeCapacity> nodes,
    const std::map<std::string, std::vector<RunningJob>>& running, absl::Time now) const {
  std::stable_sort(pending.begin(), pending.end(), [](const PendingJob& a, const PendingJob& b) {
    if (a.priority != b.priority) return a.priority > b.priority;
    if (a.submit_time != b.submit_time) return a.submit_time < b.submit_time;
    return a.order < b.order;
  });
  std::vector<GangPlacement> placements;
  std::map<std::string, SchedulingPass> passes;
  std::set<std::string> done_kinds;
  for (const PendingJob& job : pending) {
    if (done_kinds.contains(job.device_kind)) continue;
    auto pass = passes.find(job.device_kind);
    if (pass == passes.end()) {
      const auto of_kind = running.find(job.device_kind);
      std::vector<RunningJob> placed =
          of_kind == running.end() ? std::vector<RunningJob>() : of_kind->second;
      pass =
          passes
              .try_emplace(
                  job.device_kind, *this, job.device_kind, nodes, [placed] { return placed; }, now)
              .first;
    }
    GangPlacement placement;
    switch (pass->second.Offer(job, placement)) {
      case SchedulingPass::Verdict::kPlaced:
        placements.push_back(std::move(placement));
        break;
      case SchedulingPass::Verdict::kSkipped:
        break;
      case SchedulingPass::Verdict::kDone:
        done_kinds.insert(job.device_kind);
        break;
    }
  }
  return placements;
}

SchedulingPass::SchedulingPass(const GangScheduler& scheduler, std::string device_kind,
                               std::vector<NodeCapacity>& nodes,
                               std::function<std::vector<RunningJob>()> running, absl::Time now)
    : scheduler_(scheduler),
      kind_(std::move(device_kind)),
      nodes_(nodes),
      running_(std::move(running)),
      now_(now) {}

SchedulingPass::Verdict SchedulingPass::Offer(const PendingJob& job, GangPlacement& out) {
  if (!head_.has_value()) {
    if (scheduler_.PlaceOne(job, nodes_, out)) {
      // Not among `running_` yet, but holding devices from now on.
      placed_.push_back(RunningJob{.devices = job.world_size,
                                   .estimated_end = job.estimate.has_value()
                                                        ? std::optional(now_ + *job.estimate)
                                                        : std::nullopt});
      return Verdict::kPlaced;
    }
    head_ = job;
    if (!scheduler_.options_.backfill) return Verdict::kDone;
    for (NodeCapacity& node : nodes_) free_ += static_cast<int>(FreeOf(node, kind_).size());
    return free_ > 0 ? Verdict::kSkipped : Verdict::kDone;
  }
  if (free_ <= 0 || ++tried_ > scheduler_.options_.backfill_depth) return Verdict::kDone;
  if (job.world_size > free_) return Verdict::kSkipped;
  if (!reservation_.has_value()) {
    std::vector<RunningJob> running = running_();
    running.insert(running.end(), placed_.begin(), placed_.end());
    reservation_ = GangScheduler::Reserve(*head_, free_, std::move(running), now_);
  }
  if (!GangScheduler::MayBackfill(*reservation_, job, now_)) return Verdict::kSkipped;
  if (!scheduler_.PlaceOne(job, nodes_, out)) return Verdict::kSkipped;
  GangScheduler::Backfilled(*reservation_, job, now_);
  free_ -= job.world_size;
  return Verdict::kPlaced;
}

}  // namespace clmae
