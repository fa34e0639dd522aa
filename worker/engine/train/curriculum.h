#pragma once

// The curriculum factor lambda_cl of docs/method.md §4.

#include <cstdint>

namespace clmae {

struct CurriculumOptions {
  enum class Shape {
    kPerEpochLinear,  // the reference: start + (end - start) * e/E before E/2, (e+1)/E after
    kPerStepLinear,   // start + (end - start) * s / (S - 1)
    kCosine,          // end + (start - end) * (1 + cos(pi * s / (S - 1))) / 2
    kConstant,        // start
  };
  Shape shape = Shape::kPerEpochLinear;
  double start = 1.0;  // partner
  double end = -1.0;   // adversary
};

// Maps training progress to lambda_cl. Stateless: the value depends only on
// (epoch, step), so a resumed run continues the same curve.
class CurriculumSchedule {
 public:
  // `epochs` (E) and `total_steps` (S: iterations over the whole run) > 0.
  CurriculumSchedule(CurriculumOptions options, int64_t epochs, int64_t total_steps);

  // lambda_cl for 0-based `epoch` and global iteration `step`.
  double Value(int64_t epoch, int64_t step) const;

 private:
  CurriculumOptions options_;
  int64_t epochs_;
  int64_t total_steps_;
};

}  // namespace clmae
