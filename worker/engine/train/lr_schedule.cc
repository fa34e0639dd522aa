#include "worker/engine/train/lr_schedule.h"

#include <cmath>
#include <numbers>

namespace clmae {

double ScaledLearningRate(double blr, int64_t effective_batch) {
  return blr * static_cast<double>(effective_batch) / 256.0;
}

double LearningRateAt(const LrScheduleOptions& o, double epoch) {
  if (epoch < o.warmup_epochs) return o.lr * epoch / o.warmup_epochs;
  const double span = static_cast<double>(o.epochs) - o.warmup_epochs;
  if (span <= 0) return o.lr;
  const double t = (epoch - o.warmup_epochs) / span;
  return o.min_lr + (o.lr - o.min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * t));
}

}  // namespace clmae
