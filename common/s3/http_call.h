#pragma once

// One HTTP request through libcurl, for the S3 client (requests signed by
// libcurl's own SigV4, CURLOPT_AWS_SIGV4) and for transfers to and from
// presigned URLs. Not an HTTP client of our own: libcurl does the protocol,
// this file only maps a request struct onto an easy handle and curl's errors
// onto absl::Status.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace clmae {

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  // The body from memory (PUT/POST), or from `body_fd` at [body_offset,
  // body_offset + body_length) when body_fd >= 0; `on_body` sees each block
  // of that file as it is sent (to hash it on the way).
  std::string body;
  int body_fd = -1;
  int64_t body_offset = 0;
  int64_t body_length = 0;
  std::function<void(absl::string_view)> on_body;
  // Receives the response body instead of HttpResponse::body when set (only
  // for a 2xx status; error bodies are kept for the message). A non-OK
  // return aborts the transfer with that status.
  std::function<absl::Status(absl::string_view)> sink;
  // Only a body of this status goes to the sink (206 for a ranged GET, so
  // that a server ignoring the range never appends the whole object); 0:
  // any 2xx.
  long sink_status = 0;
  // Signs the request with libcurl's SigV4 ("aws:amz:<region>:s3") when set.
  std::string aws_sigv4;
  std::string user;  // "access_key:secret_key" for aws_sigv4
  absl::Duration connect_timeout = absl::Seconds(10);
  // Fails the transfer (UNAVAILABLE) when no byte moves for this long: a
  // store that went away mid-transfer is an error, never a hang.
  absl::Duration stall_timeout = absl::Seconds(30);
};

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // names in lowercase; the last of each
  std::string body;
};

// Performs the request. UNAVAILABLE naming the method, the URL without its
// query (which may hold a signature) and curl's reason when no response came
// back (connection refused or reset, DNS, TLS, a stalled transfer); the
// sink's or on_body's status when they aborted it; INTERNAL when the body
// file cannot be read. Any HTTP status is a response, not an error.
// Thread-safe (one easy handle per call).
absl::StatusOr<HttpResponse> PerformHttp(const HttpRequest& request);

// `url` without its query string, for messages.
std::string UrlForMessage(absl::string_view url);

// The status for a non-2xx response: 404 NOT_FOUND, 403/401
// PERMISSION_DENIED, 400/409/411/412/416 FAILED_PRECONDITION, 5xx and 429
// UNAVAILABLE, others UNKNOWN; the message names `what`, the status and the
// S3 error code and message when the body is an S3 error document.
absl::Status HttpError(absl::string_view what, const HttpResponse& response);

// The text of the first <tag>...</tag> in `xml` (entities &amp; &lt; &gt;
// &quot; &apos; decoded), or empty. Enough for the flat replies of S3.
std::string XmlField(absl::string_view xml, absl::string_view tag);
// The inner texts of every <tag>...</tag> in `xml`, in order.
std::vector<std::string> XmlElements(absl::string_view xml, absl::string_view tag);

}  // namespace clmae
