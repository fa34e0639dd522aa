#pragma once

// What the control plane needs from a job spec (its `resources` section with
// defaults applied). The full field-by-field validation is ValidateJobSpec
// in services/, which the gRPC edge runs first.

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clmae/v1/job_spec.pb.h"

namespace clmae {

struct JobResources {
  int world_size = 1;
  std::string device_kind;  // "cpu" or "cuda"
  int max_restarts = 3;
  int priority = 0;
  // resources.estimated_seconds when set and positive: how long one attempt
  // is expected to run.
  std::optional<absl::Duration> estimate;
};

// Applies the defaults of job_spec.proto: device_kind from train.device when
// unset. INVALID_ARGUMENT names the field for a world size below 1, an
// unknown device kind, or negative max_restarts.
absl::StatusOr<JobResources> ResolveJobResources(const v1::JobSpec& spec);

}  // namespace clmae
