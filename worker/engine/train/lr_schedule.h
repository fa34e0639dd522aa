#pragma once

// Learning rate: the scaling rule and the per-iteration warm-up + half-cycle
// cosine of MAE / CL-MAE (docs/method.md §5).

#include <cstdint>

namespace clmae {

// lr = blr * effective_batch / 256.
double ScaledLearningRate(double blr, int64_t effective_batch);

struct LrScheduleOptions {
  double lr = 1e-3 * 64 / 256;  // absolute peak
  double min_lr = 0.0;
  double warmup_epochs = 40;
  int64_t epochs = 200;
};

// lr at fractional epoch `epoch` (epoch + iteration / iterations per epoch):
// linear warm-up from 0, then cosine from lr to min_lr at `epochs`.
double LearningRateAt(const LrScheduleOptions& options, double epoch);

}  // namespace clmae
