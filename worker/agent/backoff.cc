#include "worker/agent/backoff.h"

#include <algorithm>

namespace clmae {

Backoff::Backoff(absl::Duration min, absl::Duration max)
    : min_(min), max_(std::max(min, max)), step_cap_(min) {}

absl::Duration Backoff::Next() {
  const absl::Duration cap = step_cap_;
  step_cap_ = std::min(max_, step_cap_ * 2);
  const double fraction = absl::Uniform(gen_, 0.5, 1.0);
  return cap * fraction;
}

}  // namespace clmae
