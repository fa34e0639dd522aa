#pragma once

// The kill -9 step of clmae-bench-coordinator: on the restarted
// coordinator, the first answer, every acknowledged job looked for, and
// every Assign the agents received before the kill checked against what the
// restarted coordinator holds (a placement it does not hold would be made
// again: a duplicate).

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "bench/coordinator_process.h"
#include "bench/sim_agent_fleet.h"
#include "clmae/v1/coordinator.grpc.pb.h"
#include "grpcpp/client_context.h"

namespace clmae::bench {

// Adds the client bearer `token` to `context`.
void Authorize(grpc::ClientContext& context, const std::string& token);

// The figures of the recovery after kill -9.
struct RecoveryFigures {
  double port_file_s = 0;  // from just before the exec
  double serving_s = 0;
  double get_job_s = 0;
  int64_t listed = 0;  // jobs the restarted coordinator lists
  int64_t active = 0;  // of those, not in a terminal state
  int64_t acknowledged = 0;
  // Jobs whose Assigns before the kill show a placement made twice: the
  // same rank of an attempt assigned twice, or two attempts assigned (the
  // bench's tasks never fail, so every job needs one).
  int64_t assigned_twice = 0;
  // Jobs an agent was assigned that the restarted coordinator does not hold
  // as placed there (attempt, worker and device of every assigned rank): it
  // would place them again while their ranks still run.
  int64_t assigned_not_durable = 0;
  int64_t missing() const { return std::max<int64_t>(0, acknowledged - listed); }
  int64_t duplicated() const { return assigned_twice + assigned_not_durable; }
};

// On the `restarted` coordinator: GetJob of `probe_job_id` (the first
// answer), then every job listed and compared with the Assigns `fleet`
// received before the kill; `acknowledged` jobs were answered before it.
// Prints the figures and the recovered memory. Errors name the failed call.
absl::StatusOr<RecoveryFigures> MeasureRecovery(const CoordinatorProcess& restarted,
                                                const std::string& token,
                                                const std::string& probe_job_id,
                                                int64_t acknowledged, SimAgentFleet& fleet);

}  // namespace clmae::bench
