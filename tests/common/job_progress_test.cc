#include "common/job_progress.h"

#include <gtest/gtest.h>

namespace clmae {
namespace {

TEST(JobProgressTest, EstimateUsesBatchTimesWorldWithDefaults) {
  v1::Job job;
  job.mutable_progress()->set_step(0);
  job.mutable_progress()->set_total_steps(100);
  EXPECT_EQ(EstimateRemaining(job), std::nullopt);  // no throughput yet
  job.mutable_progress()->set_images_per_sec(64);
  // Default batch 64, world 1: one step a second.
  EXPECT_EQ(EstimateRemaining(job), absl::Seconds(100));
  job.mutable_spec()->mutable_resources()->set_world_size(4);
  job.mutable_spec()->mutable_train()->set_batch_size(16);
  EXPECT_EQ(EstimateRemaining(job), absl::Seconds(100));
  job.mutable_progress()->set_step(150);  // past the total after a change
  EXPECT_EQ(EstimateRemaining(job), absl::ZeroDuration());
}

}  // namespace
}  // namespace clmae
