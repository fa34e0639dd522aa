#pragma once

// Gang placement (docs/README.md, "Job lifecycle"): every rank of a job at once
// or none, on as few nodes as possible, with rank 0's node hosting the
// job's c10d TCPStore at a port from a configured range. Pure: it reads a
// snapshot of free capacity and returns placements; the caller commits them.

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "clmae/v1/job.pb.h"
#include "coordinator/worker_registry.h"

namespace clmae {

struct SchedulerOptions {
  int master_port_min = 29500;  // inclusive range for MASTER_PORT
  int master_port_max = 29999;
  // Conservative backfill behind a blocked head job (SchedulingPass); off:
  // strict order, nothing behind a blocked job is placed.
  bool backfill = true;
  // At most this many jobs behind a blocked head are tried in one pass, so
  // a pass over a long queue stays cheap.
  int backfill_depth = 100;
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
  // How long it is expected to run once started (the spec's
  // resources.estimated_seconds); unset = unknown.
  std::optional<absl::Duration> estimate;
};

// A placed job as backfill needs it: how many devices of its kind it holds
// and when it is expected to free them.
struct RunningJob {
  int devices = 0;
  std::optional<absl::Time> estimated_end;  // unset = unknown
};

// The blocked head job's reservation. `start` is the earliest moment it
// could start: when the free devices, those of the placed jobs without an
// estimated end (they may end at any moment) and those of the jobs estimated
// to end by then reach its size. `spare`: devices free at `start` beyond its
// size even if no job without an estimate has ended; a job that does not end
// by `start` may use only these. start is absl::InfiniteFuture() (and spare
// 0) when every placed job ending would still not free enough.
struct Reservation {
  absl::Time start = absl::InfiniteFuture();
  int head_devices = 0;
  int spare = 0;
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
  // One SchedulingPass per device kind: strict order until a job does not
  // fit, then (with options.backfill) only jobs that cannot delay it, so a
  // large job cannot starve behind a stream of small ones. `running`: the
  // placed jobs of each kind (by kind), for the reservation. CPU and CUDA
  // jobs use disjoint capacity, so each kind has its own queue and one
  // never blocks the other.
  std::vector<GangPlacement> Schedule(
      std::vector<PendingJob> pending, std::vector<NodeCapacity> nodes,
      const std::map<std::string, std::vector<RunningJob>>& running = {},
      absl::Time now = absl::InfinitePast()) const;

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

  // The reservation (see Reservation) of `head`, which does not fit now,
  // with `free_now` of its devices free and `running` the placed jobs of its
  // device kind. An estimated end already past counts as `now`.
  static Reservation Reserve(const PendingJob& head, int free_now, std::vector<RunningJob> running,
                             absl::Time now);

  // Whether `job`, started at `now`, cannot delay `reservation`: it is
  // expected to end by the reservation's start, or it fits in the devices
  // the reservation does not need (the only way for a job without an
  // estimate).
  static bool MayBackfill(const Reservation& reservation, const PendingJob& job, absl::Time now);
  // Records that `job` started at `now` under MayBackfill: when it is not
  // expected to end by the start, it takes its devices from `spare`.
  static void Backfilled(Reservation& reservation, const PendingJob& job, absl::Time now);

 private:
  // The rendezvous port for `job` on rank 0's `node`; -1 when none is free.
  int ChoosePort(const PendingJob& job, const NodeCapacity& node) const;

  friend class SchedulingPass;
  SchedulerOptions options_;
};

// One scheduling pass over one device kind's queue: the caller offers its
// PENDING jobs in queue order (priority descending, then submission) and
// places what is accepted. Until a job does not fit, every job is placed
// if it fits (strict order). The first that does not fit is the head: with
// backfill off, the pass stops there; with it on, the head gets a
// Reservation and a later job is placed only if it fits now and
// MayBackfill (up to options.backfill_depth jobs are tried). So a head job
// never starts later than it would without backfill while the estimates
// hold.
//
// Not thread-safe; `nodes` is consumed as jobs are placed and must outlive
// the pass. `running` (the placed jobs of this kind) is called at most
// once, when a reservation is first needed.
class SchedulingPass {
 public:
  enum class Verdict {
    kPlaced,   // `out` holds its placement
    kSkipped,  // not placed; offer the next job
    kDone,     // not placed, and nothing after it will be: stop offering
  };

  SchedulingPass(const GangScheduler& scheduler, std::string device_kind,
                 std::vector<NodeCapacity>& nodes, std::function<std::vector<RunningJob>()> running,
                 absl::Time now);

  Verdict Offer(const PendingJob& job, GangPlacement& out);

  // Set once a job did not fit: the reservation of the head, when computed.
  const std::optional<Reservation>& reservation() const { return reservation_; }

 private:
  const GangScheduler& scheduler_;
  const std::string kind_;
  std::vector<NodeCapacity>& nodes_;
  std::function<std::vector<RunningJob>()> running_;
  const absl::Time now_;
  std::vector<RunningJob> placed_;  // placed by this pass before the head
  std::optional<PendingJob> head_;  // the first job that did not fit
  int free_ = 0;                    // free devices of the kind, once blocked
  int tried_ = 0;                   // jobs tried behind the head
  std::optional<Reservation> reservation_;
};

}  // namespace clmae
