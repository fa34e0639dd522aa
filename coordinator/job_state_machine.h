#pragma once

// The job lifecycle (docs/README.md) as data: which state changes are
// legal. Pure functions; thread-safe.
//
//   PENDING -> SCHEDULED -> RUNNING -> SUCCEEDED
//   SCHEDULED | RUNNING -> RESTARTING -> PENDING   (attempt + 1)
//   SCHEDULED | RUNNING | RESTARTING -> FAILED     (no restarts left)
//   PENDING -> SUCCEEDED   (the previous attempt, failed for a late rank, finished after all)
//   any non-terminal -> CANCELLED

#include <string>

#include "absl/status/status.h"
#include "clmae/v1/job.pb.h"
#include "common/proto_enums.h"  // IsTerminal, IsPlaced, JobStateName

namespace clmae {

// Whether `from -> to` is a legal transition.
bool IsLegalTransition(v1::JobState from, v1::JobState to);

// OK for a legal transition; FAILED_PRECONDITION naming both states
// ("job state RUNNING cannot change to PENDING") otherwise.
absl::Status CheckTransition(v1::JobState from, v1::JobState to);

}  // namespace clmae
