#include "services/clmaectl/error_report.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "services/clmaectl/job_format.h"

namespace clmae::ctl {

ExitCode ExitCodeFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return kExitUnavailable;
    case absl::StatusCode::kNotFound:
      return kExitNotFound;
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      return kExitAuth;
    default:
      return kExitFailed;
  }
}

ExitCode ReportRpcError(const absl::Status& status, const GlobalOptions& global, std::ostream& err,
                        absl::string_view hint) {
  const std::string& address = global.client.address;
  const absl::string_view message = status.message();
  std::string line;
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
      line = absl::StrCat("cannot reach the coordinator at ", address, ": ", message,
                          " (is clmae-coordinator running? set --address or CLMAE_ADDRESS)");
      break;
    case absl::StatusCode::kDeadlineExceeded:
      line = absl::StrCat("the coordinator at ", address, " did not answer within ",
                          ShortDuration(global.timeout), ": ", message,
                          " (is it overloaded or unreachable? raise --timeout, check --address)");
      break;
    case absl::StatusCode::kUnauthenticated:
      line =
          absl::StrCat("the coordinator at ", address, " did not accept the credentials: ", message,
                       global.client.token.empty() ? " (no token given: set --token or CLMAE_TOKEN)"
                                                   : " (set --token or CLMAE_TOKEN to a valid "
                                                     "client token)");
      break;
    case absl::StatusCode::kPermissionDenied:
      // The coordinator names the principal and what was missing: the role
      // (an operator RPC, a worker token) or the job's ownership.
      line = absl::StrCat("permission denied: ", message);
      break;
    case absl::StatusCode::kInvalidArgument:
      line = absl::StrCat("the coordinator rejected the request: ", message);
      break;
    case absl::StatusCode::kNotFound:
      line = absl::StrCat(message, " (see 'clmaectl list')");
      break;
    default:
      line = absl::StrCat(absl::StatusCodeToString(status.code()), ": ", message);
      break;
  }
  err << "error: " << line << '\n';
  if (!hint.empty()) err << hint << '\n';
  return ExitCodeFor(status.code());
}

}  // namespace clmae::ctl
