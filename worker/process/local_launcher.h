#pragma once

// `clmae-train --nproc N`: N ranks of one command on this machine, like
// `torchrun --standalone`. Starts them with the rendezvous variables, merges
// their output, forwards the launcher's signals, and fails as a group.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace clmae {

struct LocalLauncherOptions {
  // Number of ranks, at least 1.
  int nproc = 1;
  // The child command line: executable + arguments (without --nproc). Each
  // rank runs it with RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
  // MASTER_ADDR and MASTER_PORT set in its environment.
  std::vector<std::string> argv;
  std::string master_addr = "127.0.0.1";
  // 0: pick a free port (PickFreeLocalPort()).
  int master_port = 0;
  // How long ranks get between SIGTERM (or a forwarded signal) and SIGKILL.
  absl::Duration grace = absl::Seconds(10);
  // Names the launcher in its own messages ("clmae-train: rank 1 failed ...").
  std::string program_name = "clmae-train";
};

// Runs the ranks to the end and returns the launcher's exit code:
// - 0 when every rank exits 0;
// - the first failing rank's ExitStatus::ShellCode() when one exits non-zero
//   or is killed (the launcher prints "<program>: rank R failed (exit code
//   C); stopping the other ranks" to stderr, sends them SIGTERM, and SIGKILL
//   after `grace`);
// - 128 + the signal (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP) when
//   the launcher itself receives SIGINT, SIGTERM or SIGHUP: the signal is
//   forwarded to every rank (again for each repeat), and ranks still running
//   after `grace` are killed;
// - 2 for invalid options, 127 (126) when a rank's program is missing (not
//   executable), 1 for other start-up errors, each with a message on stderr.
// Output: every rank's stdout and stderr lines go to the launcher's stdout
// and stderr, whole lines at a time (a line of one rank never lands inside
// a line of another); rank 0's unchanged, the others' prefixed "[rank R] ".
// The ranks then write to pipes, not to the terminal, so a rank should
// flush its progress lines (clmae-train's console does). With nproc 1 the
// rank writes to the launcher's streams directly.
// Ranks lead their own process groups and die with the launcher (see
// SpawnOptions). While it runs, the launcher owns the process's SIGINT,
// SIGTERM and SIGHUP dispositions (restored on return), so at most one runs
// at a time, and the process must not reap children with waitpid(-1).
int RunLocalLauncher(const LocalLauncherOptions& options);

// A TCP port that was free on 127.0.0.1 a moment ago (bind to port 0, read
// the port, close). Another process may take it before the ranks bind it,
// as with torchrun's standalone mode. INTERNAL when no socket can be bound.
absl::StatusOr<int> PickFreeLocalPort();

}  // namespace clmae
