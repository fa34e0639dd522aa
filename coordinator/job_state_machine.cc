#include "coordinator/job_state_machine.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace clmae {

bool IsTerminal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

bool IsPlaced(v1::JobState state) {
  return state == v1::JOB_STATE_SCHEDULED || state == v1::JOB_STATE_RUNNING;
}

bool IsLegalTransition(v1::JobState from, v1::JobState to) {
  if (IsTerminal(from) || from == v1::JOB_STATE_UNSPECIFIED) return false;
  if (to == v1::JOB_STATE_CANCELLED) return true;
  switch (from) {
    case v1::JOB_STATE_PENDING:
      return to == v1::JOB_STATE_SCHEDULED;
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

std::string JobStateName(v1::JobState state) {
  if (!v1::JobState_IsValid(state)) return absl::StrCat("UNKNOWN(", static_cast<int>(state), ")");
  std::string name = v1::JobState_Name(state);
  constexpr absl::string_view kPrefix = "JOB_STATE_";
  if (absl::StartsWith(name, kPrefix)) name.erase(0, kPrefix.size());
  return name;
}

}  // namespace clmae
