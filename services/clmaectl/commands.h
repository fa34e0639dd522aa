#pragma once

// clmaectl's commands as functions: each takes its options, the global
// options, a Coordinator stub and the output streams, and returns the
// process exit code (error_report.h). In-process tests give them a stub on
// a fake coordinator and string streams.

#include <functional>
#include <memory>
#include <ostream>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clmae/v1/coordinator.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "services/clmaectl/ctl_options.h"
#include "services/clmaectl/error_report.h"

namespace clmae::ctl {

// What a command runs against. The referenced objects outlive the command.
struct CommandEnv {
  const GlobalOptions& global;
  v1::Coordinator::StubInterface& stub;
  std::ostream& out;  // results (what -o formats)
  std::ostream& err;  // errors, notices and hints
  // Whether `out` is a terminal: `watch` then redraws its lines in place.
  bool out_is_tty = false;
  // Whether `err` is a terminal: `download` then draws a progress bar.
  bool err_is_tty = false;
  // The terminal's columns (live lines are cut to fit); 0: unknown.
  int terminal_width = 0;
  // The current time, for ages.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
};

// A context for one call: the bearer token, and --timeout as the deadline
// unless `streaming`.
std::unique_ptr<grpc::ClientContext> NewCallContext(const GlobalOptions& global, bool streaming);

// Loads and validates the spec (line/column errors, exit 1, nothing sent),
// prints the request id to `err` before sending (so a retry can reuse it),
// submits, and prints the job.
ExitCode RunSubmit(const SubmitOptions& options, const CommandEnv& env);

// Prints one job (table: a detailed, labelled block).
ExitCode RunGet(const GetOptions& options, const CommandEnv& env);

// Pages through ListJobs and prints the jobs (table: one row each).
ExitCode RunList(const ListOptions& options, const CommandEnv& env);

// Cancels a job and prints it.
ExitCode RunCancel(const CancelOptions& options, const CommandEnv& env);

// Prints the node agents.
ExitCode RunWorkers(const WorkersOptions& options, const CommandEnv& env);

// Drains a node (no new ranks; its jobs checkpoint, stop and move to other
// nodes as preemptions) or, with --undo, lets it take ranks again; prints
// the worker.
ExitCode RunDrain(const DrainOptions& options, const CommandEnv& env);

// Follows jobs until each reaches a terminal state (or forever with --all),
// then prints each job's outcome and result metrics. kExitOk when every job
// SUCCEEDED, kExitFailed when one did not.
ExitCode RunWatch(const WatchOptions& options, const CommandEnv& env);

// Prints a job's committed checkpoints (table: one row each, oldest first).
ExitCode RunCheckpoints(const CheckpointsOptions& options, const CommandEnv& env);

// Downloads one checkpoint to options.path, resuming a partial download of
// the same checkpoint, verifying size and SHA-256 before the file appears.
// Progress goes to `err`; the verified digest and path to `out`.
ExitCode RunDownload(const DownloadCheckpointOptions& options, const CommandEnv& env);

// A random request id (UUID version 4 form), for SubmitJob's idempotency.
std::string NewRequestId();

}  // namespace clmae::ctl
