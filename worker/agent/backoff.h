#pragma once

// Exponential backoff with jitter ("equal jitter") between reconnection attempts.

#include <cstdint>

#include "absl/random/random.h"
#include "absl/time/time.h"

namespace clmae {

// Delays grow as min, 2·min, 4·min, ... up to max; each delay returned is
// drawn uniformly from [cap/2, cap] of the current step so that agents
// restarted together do not reconnect in lockstep. Thread-compatible.
class Backoff {
 public:
  // Requires 0 < min <= max.
  Backoff(absl::Duration min, absl::Duration max);

  // The delay before the next attempt; advances the step.
  absl::Duration Next();
  // Back to the first step (after a connection that worked).
  void Reset() { step_cap_ = min_; }

 private:
  absl::Duration min_;
  absl::Duration max_;
  absl::Duration step_cap_;
  absl::BitGen gen_;
};

}  // namespace clmae
