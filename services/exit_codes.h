#pragma once

// Exit codes of clmae-train that the agent and the coordinator act on
// (header-only: the coordinator's domain includes it without linking
// services/).

namespace clmae {

inline constexpr int kTrainerExitOk = 0;
inline constexpr int kTrainerExitFailed = 1;    // training failed
inline constexpr int kTrainerExitBadInput = 2;  // bad command line or spec
// Stopped on request (SIGTERM or SIGINT, e.g. a node drained or a pod
// evicted) after every rank agreed on the step and rank 0 wrote and uploaded
// a checkpoint there: the coordinator requeues the job as a preemption,
// which does not count against resources.max_restarts. (EX_TEMPFAIL.)
inline constexpr int kTrainerExitStopped = 75;

}  // namespace clmae
