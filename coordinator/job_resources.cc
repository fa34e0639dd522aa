#include "coordinator/job_resources.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
// Header-only constants shared with the validator and the trainer.
#include "common/job_spec/job_spec_defaults.h"

namespace clmae {

absl::StatusOr<JobResources> ResolveJobResources(const v1::JobSpec& spec) {
  const v1::ResourceSpec& r = spec.resources();
  JobResources out;
  out.world_size = r.has_world_size() ? r.world_size() : job_spec_defaults::kWorldSize;
  out.max_restarts = r.has_max_restarts() ? r.max_restarts() : job_spec_defaults::kMaxRestarts;
  out.priority = r.priority();
  if (!r.device_kind().empty()) {
    out.device_kind = r.device_kind();
  } else {
    out.device_kind = absl::StartsWith(spec.train().device(), "cuda") ? "cuda" : "cpu";
  }
  if (r.estimated_seconds() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("resources.estimated_seconds: ", r.estimated_seconds(), " is negative"));
  }
  if (r.estimated_seconds() > 0) out.estimate = absl::Seconds(r.estimated_seconds());
  if (out.world_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("resources.world_size: ", out.world_size, " is below 1"));
  }
  if (out.device_kind != "cpu" && out.device_kind != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("resources.device_kind: '", out.device_kind, "' is not cpu or cuda"));
  }
  if (out.max_restarts < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("resources.max_restarts: ", out.max_restarts, " is negative"));
  }
  return out;
}

}  // namespace clmae
