#pragma once

// The clients of clmae-bench-coordinator: durable submissions back to back
// from a few threads, each on its own connection.

#include <cstdint>
#include <string>
#include <vector>

#include "bench/coordinator_process.h"
#include "clmae/v1/job_spec.pb.h"

namespace clmae::bench {

// One acknowledged SubmitJob: its job, world size, when it was sent and
// answered (steady-clock nanoseconds).
struct Submitted {
  std::string job_id;
  int world = 0;
  int64_t sent_ns = 0;
  int64_t acked_ns = 0;
};

struct SubmitRun {
  std::vector<Submitted> jobs;  // the acknowledged ones
  int64_t errors = 0;
  std::string first_error;
  double seconds = 0;
  double per_second() const { return seconds > 0 ? jobs.size() / seconds : 0; }
};

// A cuda job of `world` ranks, synthetic data.
v1::JobSpec BenchSpec(int world);

// `count` SubmitJob calls (world sizes 1..8, request ids `prefix`-i) from
// `threads` threads, each on its own connection, back to back, with the
// client bearer `token`.
SubmitRun SubmitMany(const CoordinatorProcess& coordinator, const std::string& token, int count,
                     int threads, const std::string& prefix);

// The `p` quantile (0..1] of `values` (nearest rank); NaN when empty.
double Percentile(std::vector<double> values, double p);

}  // namespace clmae::bench
