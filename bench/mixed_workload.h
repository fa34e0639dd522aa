#pragma once

// The mixed-size workload of clmae-bench-coordinator: a fresh coordinator
// with backfill off or on, a small simulated fleet, and a seeded mix of wide
// long jobs and narrow short ones, all submitted at once. Each job carries
// its run time as resources.estimated_seconds and the simulated agents run
// it exactly that long, so the estimates are right.

#include <string>

#include "absl/status/statusor.h"
#include "bench/coordinator_process.h"

namespace clmae::bench {

struct MixedWorkloadOptions {
  CoordinatorProcessOptions process;  // data_dir/log_path set per run
  int agents = 8;                     // x gpus_per_agent devices
  int gpus_per_agent = 8;
  int jobs = 48;
  unsigned seed = 1;
};

struct MixedWorkloadFigures {
  bool backfill = false;
  int devices = 0;
  int jobs = 0;
  double makespan_s = 0;        // first submission to the last job's end
  double utilisation = 0;       // device-seconds used / (devices x makespan)
  double mean_wait_s = 0;       // submission -> first Assign, every job
  double mean_wait_wide_s = 0;  // the same, jobs wider than one node
  double max_wait_wide_s = 0;
};

// Runs the workload once (a coordinator started with --backfill=`backfill`
// in `dir`); errors name what failed (start, attach, submit, a job that did
// not run within its time).
absl::StatusOr<MixedWorkloadFigures> RunMixedWorkload(const MixedWorkloadOptions& options,
                                                      const std::string& dir, bool backfill);

// RunMixedWorkload with backfill off, then on: prints the utilisation and
// waits of each and a JSON line. Errors are RunMixedWorkload's.
absl::Status MeasureBackfill(const MixedWorkloadOptions& options, const std::string& dir);

}  // namespace clmae::bench
