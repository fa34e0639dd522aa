#pragma once

// JobSpec (proto) -> the engine's TrainerOptions, with the spec's defaults.

#include <string>

#include "absl/status/statusor.h"
#include "clmae/v1/job_spec.pb.h"
#include "worker/engine/train/trainer.h"

namespace clmae {

// Validates `spec` (ValidateJobSpec) and maps it onto TrainerOptions; the
// checkpoint records `spec` as YAML.
absl::StatusOr<TrainerOptions> TrainerOptionsFromSpec(const clmae::v1::JobSpec& spec);

}  // namespace clmae
