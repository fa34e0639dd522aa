#pragma once

// Gang placement (docs/README.md, "Job lifecycle"): every rank of a job at once
// or none, on as few nodes as possible, with rank 0's node hosting the
// job's c10d TCPStore at a port from a configured range. Pure: it reads a
// snapshot of free capacity and returns placements; the caller commits them.

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "clmae/v1/job.pb.h"
#include "coordinator/worker_registry.h"

namespace clmae {

struct SchedulerOptions {
  int master_port_min = 29500;  // inclusive range for MASTER_PORT
  int master_port_max = 29999;
};

// A PENDING job as the scheduler needs it.
struct PendingJob {
  std::string job_id;
  int priority = 0;  // higher first
  absl::Time submit_time;
  int64_t order = 0;  // submission order; breaks ties of equal submit times
  int world_size = 1;
  std::string device_kind = kDeviceCpu;  // "cpu" or "cuda"
  int attempt = 1;
  // Rendezvous ports of the job's latest attempts: the next gets another one,
  // so a port something else took meanwhile is not tried again and again.
  std::vector<int> avoid_ports;
};

struct GangPlacement {
  std::string job_id;
  v1::Placement placement;  // ranks in rank order, with master addr/port
};

// Thread-compatible (const methods only after construction).
class GangScheduler {
 public:
  explicit GangScheduler(SchedulerOptions options) : options_(options) {}

  // Places `pending` in order (priority descending, then submit time and
  // order ascending) on `nodes`, consuming capacity as it goes.
  //
  // Strict order, no backfill: when a job does not fit, no later job of the
  // same device kind is placed in this pass, so a large job cannot starve
  // behind a stream of small ones. CPU and CUDA jobs use disjoint capacity,
  // so each kind has its own queue and one never blocks the other.
  std::vector<GangPlacement> Schedule(std::vector<PendingJob> pending,
                                      std::vector<NodeCapacity> nodes) const;

  // Places one job on `nodes` (consuming capacity there) or returns false and
  // leaves `nodes` unchanged. Node choice: the fullest single node that fits
  // all ranks (best fit keeps large holes for large jobs); else nodes by free
  // capacity descending (ties by worker id) until the ranks fit, which uses
  // the fewest nodes. Ranks fill nodes in that order, lowest device first.
  // Rank 0's node gets a port of the range it does not use or hold, and not
  // one of the job's `avoid_ports` while another is free: the search starts
  // at a point derived from the job id and attempt, so attempts (and
  // coordinators sharing nodes) spread over the range.
  bool PlaceOne(const PendingJob& job, std::vector<NodeCapacity>& nodes, GangPlacement& out) const;

 private:
  // The rendezvous port for `job` on rank 0's `node`; -1 when none is free.
  int ChoosePort(const PendingJob& job, const NodeCapacity& node) const;

  SchedulerOptions options_;
};

}  // namespace clmae
