#include "coordinator/job_state_machine.h"

#include "absl/strings/str_cat.h"

namespace clmae {

bool IsLegalTransition(v1::JobState from, v1::JobState to) {
  if (IsTerminal(from) || from == v1::JOB_STATE_UNSPECIFIED) return false;
  if (to == v1::JOB_STATE_CANCELLED) return true;
  switch (from) {
    case v1::JOB_STATE_PENDING:
      // SUCCEEDED: the previous attempt was failed for a rank that was only
      // late, and every rank of it then exited 0 before another was placed.
      return to == v1::JOB_STATE_SCHEDULED || to == v1::JOB_STATE_SUCCEEDED;
    case v1::JOB_STATE_SCHEDULED:
      // A gang whose ranks all exit before every RUNNING report arrived still
      // goes through RUNNING (two events), so SCHEDULED -> SUCCEEDED is absent.
      return to == v1::JOB_STATE_RUNNING || to == v1::JOB_STATE_RESTARTING ||
             to == v1::JOB_STATE_FAILED;
    case v1::JOB_STATE_RUNNING:
      return to == v1::JOB_STATE_SUCCEEDED || to == v1::JOB_STATE_RESTARTING ||
             to == v1::JOB_STATE_FAILED;
    case v1::JOB_STATE_RESTARTING:
      return to == v1::JOB_STATE_PENDING || to == v1::JOB_STATE_FAILED;
    default:
      return false;
  }
}

absl::Status CheckTransition(v1::JobState from, v1::JobState to) {
  if (IsLegalTransition(from, to)) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("job state ", JobStateName(from), " cannot change to ", JobStateName(to)));
}

}  // namespace clmae
