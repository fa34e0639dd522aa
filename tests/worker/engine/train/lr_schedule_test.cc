#include "worker/engine/train/lr_schedule.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

namespace clmae {
namespace {

TEST(LrScheduleTest, ScalingRule) {
  EXPECT_DOUBLE_EQ(ScaledLearningRate(1e-3, 256), 1e-3);
  EXPECT_DOUBLE_EQ(ScaledLearningRate(1.5e-4, 4096), 2.4e-3);
}

TEST(LrScheduleTest, WarmupThenHalfCosine) {
  LrScheduleOptions o;
  o.lr = 1.0;
  o.min_lr = 0.1;
  o.warmup_epochs = 10;
  o.epochs = 110;
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 0), 0.0);
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 2.5), 0.25);  // per-iteration (fractional epoch)
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 10), 1.0);
  EXPECT_NEAR(LearningRateAt(o, 60), 0.1 + 0.9 * 0.5, 1e-12);
  EXPECT_NEAR(LearningRateAt(o, 35), 0.1 + 0.9 * 0.5 * (1 + std::cos(std::numbers::pi * 0.25)),
              1e-12);
  EXPECT_NEAR(LearningRateAt(o, 110), 0.1, 1e-12);
}

}  // namespace
}  // namespace clmae
