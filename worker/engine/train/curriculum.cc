#include "worker/engine/train/curriculum.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace clmae {

CurriculumSchedule::CurriculumSchedule(CurriculumOptions options, int64_t epochs,
                                       int64_t total_steps)
    : options_(options),
      epochs_(std::max<int64_t>(epochs, 1)),
      total_steps_(std::max<int64_t>(total_steps, 1)) {}

double CurriculumSchedule::Value(int64_t epoch, int64_t step) const {
  const double start = options_.start, end = options_.end;
  // Progress through the run in [0, 1].
  const double s =
      total_steps_ > 1 ? std::clamp(static_cast<double>(step) / (total_steps_ - 1), 0.0, 1.0) : 1.0;
  switch (options_.shape) {
    case CurriculumOptions::Shape::kPerEpochLinear: {
      // Integer comparison e < E/2 as in the reference (E/2 may be fractional).
      const double e = static_cast<double>(epoch);
      const double t = 2 * epoch < epochs_ ? e / epochs_ : (e + 1) / epochs_;
      return start + (end - start) * std::min(t, 1.0);
    }
    case CurriculumOptions::Shape::kPerStepLinear:
      return start + (end - start) * s;
    case CurriculumOptions::Shape::kCosine:
      return end + (start - end) * (1.0 + std::cos(std::numbers::pi * s)) / 2.0;
    case CurriculumOptions::Shape::kConstant:
      return start;
  }
  return start;
}

}  // namespace clmae
