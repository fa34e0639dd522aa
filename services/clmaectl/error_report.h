#pragma once

// clmaectl's exit codes and the error messages that say what to do next.

#include <ostream>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "services/clmaectl/ctl_options.h"

namespace clmae::ctl {

// The process exit codes, documented in `clmaectl help`.
enum ExitCode : int {
  kExitOk = 0,
  kExitFailed = 1,       // the request failed (bad spec, server error) or a job did not succeed
  kExitUsage = 2,        // unknown command or flag, missing or malformed argument
  kExitUnavailable = 3,  // the coordinator cannot be reached or did not answer in time
  kExitNotFound = 4,     // no such job
  kExitAuth = 5,         // token missing or wrong, or the call not allowed
};

// The exit code for an error from the coordinator (or the channel to it).
ExitCode ExitCodeFor(absl::StatusCode code);

// Writes "error: ..." for an RPC's failure `status` to `err`, with the
// address it went to and what the user can do (start the coordinator, set
// the token, raise --timeout, ...), and returns ExitCodeFor(status.code()).
// `hint` (may be empty) is appended on its own line, e.g. how to retry.
ExitCode ReportRpcError(const absl::Status& status, const GlobalOptions& global, std::ostream& err,
                        absl::string_view hint = "");

}  // namespace clmae::ctl
