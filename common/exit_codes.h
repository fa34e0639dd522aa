#pragma once

// Exit codes of the clmae executables (clmae-coordinator, clmae-worker,
// clmae-train; clmaectl documents its own in `clmaectl help`), and the ones
// of clmae-train that the agent and the coordinator act on.

namespace clmae {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the work failed, or a start failed for a reason
                                        // other than the command line
inline constexpr int kExitUsage = 2;    // bad command line (unknown flag, bad value) or spec

inline constexpr int kTrainerExitOk = kExitOk;
inline constexpr int kTrainerExitFailed = kExitFailure;  // training failed
inline constexpr int kTrainerExitBadInput = kExitUsage;  // bad command line or spec
// Stopped on request (SIGTERM or SIGINT, e.g. a node drained or a pod
// evicted) after every rank agreed on the step and rank 0 wrote and uploaded
// a checkpoint there: the coordinator requeues the job as a preemption,
// which does not count against resources.max_restarts. (EX_TEMPFAIL.)
inline constexpr int kTrainerExitStopped = 75;
// The rank could not start for a reason of its node, not of the job; the
// coordinator requeues the job elsewhere without spending a restart:
// - the rendezvous port rank 0 was given is taken on its node (EX_UNAVAILABLE);
inline constexpr int kTaskExitRendezvousBusy = 69;
// - the checkpoint it was to resume from failed verification (EX_DATAERR);
//   the coordinator has quarantined it, and the next attempt resumes from the
//   newest one that verifies.
inline constexpr int kTaskExitCheckpointCorrupt = 65;
// The job asks to read or write a path the node does not allow (output.dir
// outside the job's folder, data.path, eval.path or train.init_from outside
// the agent's --data_roots): the rank was not started, and the coordinator
// fails the job without a restart, since every attempt would be refused
// the same way (EX_NOPERM).
inline constexpr int kTaskExitPathRefused = 77;

}  // namespace clmae
