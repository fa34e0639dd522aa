#pragma once

// The job lifecycle of ARCHITECTURE.md as data: which state changes are
// legal. Pure functions; thread-safe.
//
//   PENDING -> SCHEDULED -> RUNNING -> SUCCEEDED
//   SCHEDULED | RUNNING -> RESTARTING -> PENDING   (attempt + 1)
//   SCHEDULED | RUNNING | RESTARTING -> FAILED     (no restarts left)
//   any non-terminal -> CANCELLED

#include <string>

#include "absl/status/status.h"
#include "clmae/v1/job.pb.h"

namespace clmae {

// SUCCEEDED, FAILED and CANCELLED: nothing leaves them.
bool IsTerminal(v1::JobState state);

// SCHEDULED and RUNNING: the current attempt holds a placement on workers.
bool IsPlaced(v1::JobState state);

// Whether `from -> to` is a legal transition.
bool IsLegalTransition(v1::JobState from, v1::JobState to);

// OK for a legal transition; FAILED_PRECONDITION naming both states
// ("job state RUNNING cannot change to PENDING") otherwise.
absl::Status CheckTransition(v1::JobState from, v1::JobState to);

// "RUNNING" for JOB_STATE_RUNNING (the name without the enum's prefix);
// "UNKNOWN(n)" for a value outside the enum.
std::string JobStateName(v1::JobState state);

}  // namespace clmae
