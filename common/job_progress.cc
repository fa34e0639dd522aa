#include "common/job_progress.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common/job_spec/job_spec_defaults.h"

namespace clmae {

std::optional<absl::Duration> EstimateRemaining(const v1::Job& job) {
  const v1::Progress& p = job.progress();
  if (!(p.images_per_sec() > 0) || !std::isfinite(p.images_per_sec()) || p.total_steps() <= 0) {
    return std::nullopt;
  }
  const int64_t batch = job.spec().train().has_batch_size() ? job.spec().train().batch_size()
                                                            : job_spec_defaults::kBatchSize;
  const int64_t world = job.spec().resources().has_world_size()
                            ? job.spec().resources().world_size()
                            : job_spec_defaults::kWorldSize;
  const int64_t steps_left = std::max<int64_t>(0, p.total_steps() - p.step());
  return absl::Seconds(static_cast<double>(steps_left) * batch * world / p.images_per_sec());
}

}  // namespace clmae
